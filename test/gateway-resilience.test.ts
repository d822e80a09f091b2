// The gateway under failure, as clients and operators see it: who is blamed
// when a request is broken off (a client that resets never opens the circuit
// for everyone, an upstream that resets does), connections bounded fairly
// (handshake timeout, shedding of unfinished connections, a per-source share),
// Host by its grammar with Forwarded quoted, and a draining close.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { createLogger } from '../src/shared/logger.ts';
import {
  startRecordingUpstream,
  startHarness,
  sendRaw,
  parseFirstResponse,
  assertProblem,
  assertUpstreamUnseen,
  upstreamSawOne,
  get,
  sleep,
  type RawTarget,
  type RecordingUpstream,
} from './support/gateway-harness.ts';

// ---------------------------------------------------------------------------
// A gateway over one service `up`, with the limits and breaker a test asks for

interface Gw {
  gateway: RunningGateway;
  port: number;
  ca: Buffer;
  /** The main listener for the harness's raw HTTP/1.1 client (TLS, ALPN http/1.1). */
  target: RawTarget;
  /** The admin listener's Prometheus text. */
  metrics(): Promise<string>;
  close(drainMs?: number): Promise<void>;
}

async function startGw(upstreamUrl: string, o: { limits?: string; failures?: number; gateway?: string } = {}): Promise<Gw> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-resilience-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: resilience.test
zones:
  edge:
    gateway:
      listen: 127.0.0.1:0
      tls: dev
      admin: { listen: 127.0.0.1:0 }
      accessLog: { enabled: false }${o.gateway ? `\n      ${o.gateway}` : ''}
      limits: { maxBodyBytes: 65536, headersTimeoutMs: 2000, requestTimeoutMs: 10000${o.limits ? `, ${o.limits}` : ''} }
    routes:
      - { name: api, path: /api, match: prefix, methods: '*', service: up, auth: anonymous }
      - { name: small, path: /small, match: prefix, methods: [POST], service: up, auth: anonymous, limits: { maxBodyBytes: 10 } }
services:
  up: { zone: edge, upstream: '${upstreamUrl}', circuitBreaker: { failures: ${o.failures ?? 5}, openMs: 10000 } }
`,
  );
  let gateway: RunningGateway;
  try {
    gateway = await startGateway({
      config: file,
      zone: 'edge',
      stateDir: dir,
      accessLog: false,
      logger: createLogger({ name: 'gateway.test', level: 'silent' }),
    });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const port = Number(new URL(gateway.url).port);
  const ca = readFileSync(path.join(dir, 'tls', 'dev-ca.pem'));
  return {
    gateway,
    port,
    ca,
    target: { host: '127.0.0.1', port, tls: true, ca },
    metrics: async () => (await fetch(`${gateway.adminUrl}/metrics`)).text(),
    async close(drainMs) {
      await gateway.close(drainMs);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Sum of the samples of `name` whose labels include `labels` (0 when there is none). */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[l[1]] = l[2];
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > deadline) assert.fail(`timed out after ${ms} ms waiting until ${what}`);
    await sleep(10);
  }
}

/** `promise`, or a failure naming `what` once `ms` have passed. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Clients

/** A connection held open by the test: what it received and when it closed. */
interface Conn {
  socket: net.Socket;
  received(): Buffer;
  isClosed(): boolean;
  /** Resolves with the milliseconds from connect to close. */
  closed: Promise<number>;
}

function track(socket: net.Socket, started: number): Conn {
  const chunks: Buffer[] = [];
  let isClosed = false;
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => {
      isClosed = true;
      resolve(performance.now() - started);
    }),
  );
  return { socket, received: () => Buffer.concat(chunks), isClosed: () => isClosed, closed };
}

/** A TCP connection that sends nothing (no TLS ClientHello). */
function rawTcp(port: number, localAddress?: string): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    const conn = track(socket, started);
    socket.once('connect', () => resolve(conn));
    socket.once('error', reject);
  });
}

/** A TLS connection speaking HTTP/1.1, for bytes the test writes itself. */
function rawTls(gw: Gw): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket = tls.connect({ host: '127.0.0.1', port: gw.port, ca: gw.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    const conn = track(socket, started);
    socket.once('secureConnect', () => resolve(conn));
    socket.once('error', reject);
  });
}

interface Answer {
  status: number;
  headers: Record<string, string>;
  text: string;
}

const flat = (headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Record<string, string> => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : String(v);
  return out;
};

/** One HTTPS request on a connection of its own (fetch-like, but with a chosen source address). */
function httpsRequest(gw: Gw, target: string, o: { method?: string; localAddress?: string } = {}): Promise<Answer> {
  return within(
    new Promise<Answer>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: gw.port, path: target, method: o.method ?? 'GET', ca: gw.ca, servername: 'localhost', agent: false, localAddress: o.localAddress },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: flat(res.headers), text: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    }),
    5000,
    `an answer to ${o.method ?? 'GET'} ${target}`,
  );
}

/** An HTTP/2 request on a session of its own; `body` is written and the stream left open unless `end`. */
function h2Request(gw: Gw, headers: http2.OutgoingHttpHeaders, body: Buffer, end: boolean): Promise<Answer> {
  return within(
    new Promise<Answer>((resolve, reject) => {
      const session = http2.connect(`https://localhost:${gw.port}`, { ca: gw.ca });
      session.on('error', () => undefined);
      const stream = session.request(headers, { endStream: false });
      let status = 0;
      let head: Record<string, string> = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        status = Number(h[':status']);
        head = flat(h);
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', () => undefined);
      // the answer is whole at 'end': the stream itself stays half open while the upload is unfinished
      stream.on('end', () => {
        session.destroy();
        resolve({ status, headers: head, text: Buffer.concat(chunks).toString('utf8') });
      });
      stream.on('close', () => {
        session.destroy();
        reject(new Error(`the stream closed without a whole answer (status ${status}, rst code ${stream.rstCode})`));
      });
      stream.write(body);
      if (end) stream.end();
    }),
    5000,
    'an HTTP/2 answer',
  );
}

// ---------------------------------------------------------------------------

describe('client resets never open the circuit breaker', () => {
  /** Wait until the upstream's side of request `i` is over, one way or the other. */
  const settled = (up: RecordingUpstream, i: number, what: string) => waitFor(() => up.seen[i].complete || up.seen[i].aborted, what);

  it('five HTTP/2 uploads cancelled and five HTTP/1.1 uploads cut off leave the next client served', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { failures: 5 });
    try {
      // HTTP/2: one byte of body, then RST_STREAM(CANCEL) once the upstream is receiving it
      const session = http2.connect(`https://localhost:${gw.port}`, { ca: gw.ca });
      session.on('error', () => undefined);
      for (let i = 0; i < 5; i++) {
        const before = up.seen.length;
        const stream = session.request({ ':method': 'POST', ':path': `/api/upload/h2/${i}`, 'content-type': 'application/octet-stream' }, { endStream: false });
        stream.on('error', () => undefined);
        stream.write(Buffer.from('x'));
        await waitFor(() => up.seen.length > before, `the upstream receives HTTP/2 upload ${i}`);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        await settled(up, before, `the upstream side of cancelled upload ${i} is over`);
      }
      session.close();
      // HTTP/1.1: Content-Length 100, one byte, then the client goes away
      for (let i = 0; i < 5; i++) {
        const before = up.seen.length;
        const conn = await rawTls(gw);
        conn.socket.write(`POST /api/upload/h1/${i} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nx`);
        await waitFor(() => up.seen.length > before, `the upstream receives HTTP/1.1 upload ${i}`);
        conn.socket.destroy();
        await settled(up, before, `the upstream side of cut-off upload ${i} is over`);
        assert.equal(up.seen[before].aborted, true, 'the gateway breaks the upstream request off: the body never completes');
      }
      const res = await httpsRequest(gw, '/api/after');
      assert.equal(res.status, 200, `an innocent request after ten client resets: ${res.status} ${res.text}`);
      const m = await gw.metrics();
      assert.equal(metric(m, 'gatehouse_gateway_circuit_opened_total'), 0, 'the circuit never opened');
      assert.equal(metric(m, 'gatehouse_gateway_circuit_open', { service: 'up' }), 0);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('five HTTP/2 uploads whose connection drops mid-body leave the next client served (the attack run: every client got 503)', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { failures: 5 });
    try {
      for (let i = 0; i < 5; i++) {
        const before = up.seen.length;
        // a fresh session each time: one byte of a declared 100, then the TCP connection is dropped (no END_STREAM, no GOAWAY)
        const session = http2.connect(`https://localhost:${gw.port}`, { ca: gw.ca });
        session.on('error', () => undefined);
        const stream = session.request(
          { ':method': 'POST', ':path': `/api/upload/drop/${i}`, 'content-type': 'application/octet-stream', 'content-length': '100' },
          { endStream: false },
        );
        stream.on('error', () => undefined);
        stream.write(Buffer.from('x'));
        await waitFor(() => up.seen.length > before, `the upstream receives HTTP/2 upload ${i}`);
        session.socket.destroy();
        await settled(up, before, `the upstream side of dropped upload ${i} is over`);
        assert.equal(up.seen[before].complete, false, 'a dropped upload never completes upstream');
      }
      const res = await httpsRequest(gw, '/api/after');
      assert.equal(res.status, 200, `an innocent request after five dropped uploads: ${res.status} ${res.text}`);
      assert.equal(metric(await gw.metrics(), 'gatehouse_gateway_circuit_opened_total'), 0, 'the circuit never opened');
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('an HTTP/1.1 chunked upload the client cuts off never reaches the upstream as a whole request', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url);
    try {
      const conn = await rawTls(gw);
      conn.socket.write('POST /api/upload/chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n');
      await waitFor(() => up.seen.length === 1, 'the upstream receives the upload');
      conn.socket.destroy();
      await settled(up, 0, 'the upstream side of the upload is over');
      assert.deepEqual({ complete: up.seen[0].complete, aborted: up.seen[0].aborted }, { complete: false, aborted: true });
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('five chunked bodies over the route limit get 413 each and leave the circuit closed', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { failures: 5 });
    try {
      for (let i = 0; i < 5; i++) {
        const before = up.seen.length;
        // the route allows 10 bytes; 8 + 8 arrive as separate chunks, the second after the upstream has the head
        const res = await sendRaw(
          gw.target,
          [`POST /small/${i} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n`, '8\r\n12345678\r\n', '0\r\n\r\n'],
          { until: 'response', gapMs: 150, timeoutMs: 3000 },
        );
        assertProblem(res, 413, { code: 'payload_too_large' });
        const seen = await upstreamSawOne(up, before);
        assert.equal(seen.complete, false, 'the upstream never gets a whole over-limit body');
      }
      const res = await httpsRequest(gw, '/api/after');
      assert.equal(res.status, 200, `an innocent request after five over-limit bodies: ${res.status} ${res.text}`);
      assert.equal(metric(await gw.metrics(), 'gatehouse_gateway_circuit_opened_total'), 0, 'the circuit never opened');
    } finally {
      await gw.close();
      await up.close();
    }
  });
});

describe('upstream resets count against the breaker', () => {
  /** An upstream that cuts the connection as soon as the body starts to arrive. */
  async function startResetter(): Promise<{ url: string; requests(): number; close(): Promise<void> }> {
    let requests = 0;
    const server = http.createServer((req) => {
      requests++;
      req.once('data', () => req.socket.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      requests: () => requests,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  }

  const transports: Array<[string, (gw: Gw, i: number) => Promise<Answer & { closed?: boolean }>]> = [
    [
      'HTTP/1.1',
      // half the declared body: the upstream resets while the client is still uploading
      (gw, i) => sendRaw(gw.target, `POST /api/reset/${i} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhello`, { until: 'response', graceMs: 300, timeoutMs: 3000 }),
    ],
    [
      'HTTP/2',
      (gw, i) => h2Request(gw, { ':method': 'POST', ':path': `/api/reset/${i}`, 'content-length': '10' }, Buffer.from('hello'), false),
    ],
  ];
  for (const [name, send] of transports) {
    it(`over ${name}: 502 upstream_reset, and after five the circuit opens (503 + Retry-After, reason upstream_reset)`, async () => {
      const up = await startResetter();
      const gw = await startGw(up.url, { failures: 5 });
      try {
        for (let i = 0; i < 5; i++) {
          const res = await send(gw, i);
          assertProblem(res, 502, { code: 'upstream_reset' });
          if (res.closed !== undefined) assert.equal(res.closed, true, 'the unread rest of the body is never parsed as a request: the connection closes');
        }
        assert.equal(up.requests(), 5);
        const open = await send(gw, 5);
        assertProblem(open, 503, { code: 'upstream_unavailable' });
        assert.ok(Number(open.headers['retry-after']) > 0, `Retry-After: ${open.headers['retry-after']}`);
        assert.equal(up.requests(), 5, 'an open circuit does not even try the upstream');
        const m = await gw.metrics();
        assert.equal(metric(m, 'gatehouse_gateway_circuit_opened_total', { service: 'up', reason: 'upstream_reset' }), 1);
        assert.equal(metric(m, 'gatehouse_gateway_circuit_opened_total'), 1, 'opened once, for no other reason');
        assert.equal(metric(m, 'gatehouse_gateway_circuit_open', { service: 'up' }), 1);
      } finally {
        await gw.close();
        await up.close();
      }
    });
  }
});

describe('connections: handshake timeout, shedding, per-source share', () => {
  it('a TCP connection that sends nothing is closed after handshakeTimeoutMs; TLS requests still work', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { limits: 'handshakeTimeoutMs: 300' });
    try {
      const silent = await rawTcp(gw.port);
      const ms = await within(silent.closed, 1000, 'the gateway closing a silent connection');
      assert.ok(ms >= 200, `closed after ${Math.round(ms)} ms: not before the handshake timeout`);
      assert.equal(silent.received().length, 0, 'nothing is answered on a connection that never said hello');
      const res = await httpsRequest(gw, '/api/ok');
      assert.equal(res.status, 200);
      assert.equal(metric(await gw.metrics(), 'gatehouse_gateway_connections_shed_total', { reason: 'handshake_timeout' }), 1);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it('at maxConnections, the oldest unfinished connection is shed to make room for a real client', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { limits: 'maxConnections: 4, handshakeTimeoutMs: 10000' });
    const silent: Conn[] = [];
    try {
      for (let i = 0; i < 4; i++) silent.push(await rawTcp(gw.port));
      await waitFor(async () => metric(await gw.metrics(), 'gatehouse_gateway_open_connections') === 4, 'the gateway holds the four silent connections');
      const res = await httpsRequest(gw, '/api/ok');
      assert.equal(res.status, 200, `a real client at the connection limit: ${res.status} ${res.text}`);
      await within(silent[0].closed, 1000, 'the oldest silent connection being shed');
      assert.deepEqual(
        silent.slice(1).map((c) => c.isClosed()),
        [false, false, false],
        'only the oldest is shed',
      );
      assert.equal(metric(await gw.metrics(), 'gatehouse_gateway_connections_shed_total', { reason: 'shed' }), 1);
    } finally {
      for (const c of silent) c.socket.destroy();
      await gw.close();
      await up.close();
    }
  });

  it('maxConnectionsPerSource: a third connection from 127.0.0.1 is closed, 127.0.0.2 still gets in', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { limits: 'maxConnectionsPerSource: 2, handshakeTimeoutMs: 10000' });
    const silent: Conn[] = [];
    try {
      for (let i = 0; i < 2; i++) silent.push(await rawTcp(gw.port, '127.0.0.1'));
      await waitFor(async () => metric(await gw.metrics(), 'gatehouse_gateway_open_connections') === 2, 'the gateway holds both connections');
      const third = await rawTcp(gw.port, '127.0.0.1');
      silent.push(third);
      await within(third.closed, 1000, 'the third connection from one source being closed');
      assert.equal(silent[0].isClosed() || silent[1].isClosed(), false, 'the source keeps its first two connections');
      const other = await httpsRequest(gw, '/api/ok', { localAddress: '127.0.0.2' });
      assert.equal(other.status, 200, `another source is served: ${other.status} ${other.text}`);
      assert.equal(metric(await gw.metrics(), 'gatehouse_gateway_connections_shed_total', { reason: 'per_source' }), 1);
    } finally {
      for (const c of silent) c.socket.destroy();
      await gw.close();
      await up.close();
    }
  });
});

describe('connections from a trusted proxy', () => {
  it('a trusted proxy (a load balancer every client comes through) is not held to one source\'s share', async () => {
    const up = await startRecordingUpstream();
    const gw = await startGw(up.url, { limits: 'maxConnectionsPerSource: 2, handshakeTimeoutMs: 10000', gateway: "trustedProxies: ['127.0.0.1']" });
    const silent: Conn[] = [];
    try {
      for (let i = 0; i < 4; i++) silent.push(await rawTcp(gw.port, '127.0.0.1'));
      await waitFor(async () => metric(await gw.metrics(), 'gatehouse_gateway_open_connections') === 4, 'the gateway holds all four');
      assert.equal(silent.some((c) => c.isClosed()), false, 'none was closed for its source');
      assert.equal(metric(await gw.metrics(), 'gatehouse_gateway_connections_shed_total', { reason: 'per_source' }), 0);
      // another source is still held to its share
      const others: Conn[] = [];
      for (let i = 0; i < 3; i++) others.push(await rawTcp(gw.port, '127.0.0.2'));
      silent.push(...others);
      await within(others[2].closed, 1000, 'the third connection from 127.0.0.2 being closed');
    } finally {
      for (const c of silent) c.socket.destroy();
      await gw.close();
      await up.close();
    }
  });
});

describe('Host by its grammar; Forwarded carries it quoted', () => {
  for (const [host, why] of [
    ['[x";for=6.6.6.6;by="y]', 'a bracketed value that is no IPv6 address (and would inject Forwarded parameters)'],
    ['example.com:65536', 'a port above 65535'],
    ['999.1.1.1', 'all-numeric labels that are no IPv4 address'],
  ]) {
    it(`Host: ${host} is refused with 400 (${why}) and never reaches the upstream`, async () => {
      const h = await startHarness({ plaintext: false });
      try {
        const before = h.upstream.seen.length;
        const res = await h.raw(get('/api/public', [], host), { until: 'response' });
        assertProblem(res, 400, { code: 'bad_request' });
        await assertUpstreamUnseen(h.upstream, before, `Host: ${host}`);
      } finally {
        await h.close();
      }
    });
  }

  for (const host of ['[::1]:8443', 'api.example.com:8443']) {
    it(`Host: ${host} is proxied; Forwarded has it quoted and X-Forwarded-Host equals it`, async () => {
      const h = await startHarness({ plaintext: false });
      try {
        const before = h.upstream.seen.length;
        const res = await h.raw(get('/api/public', [], host), { until: 'response' });
        assert.equal(res.status, 200, `got ${res.status} ${res.text}`);
        const seen = await upstreamSawOne(h.upstream, before);
        assert.deepEqual(seen.headers['forwarded'], [`for=127.0.0.1;proto=https;host="${host}"`]);
        assert.deepEqual(seen.headers['x-forwarded-host'], [host]);
      } finally {
        await h.close();
      }
    });
  }
});

describe('draining close', () => {
  interface SlowUpstream {
    url: string;
    /** Each request: when it came, whether it was answered, when the gateway's side of it went away. */
    requests: Array<{ at: number; answered: boolean; closedAt?: number }>;
    close(): Promise<void>;
  }

  /** An upstream that answers `?ms=` milliseconds after the request came. */
  async function startSlow(): Promise<SlowUpstream> {
    const requests: SlowUpstream['requests'] = [];
    const server = http.createServer((req, res) => {
      const record: SlowUpstream['requests'][number] = { at: performance.now(), answered: false };
      requests.push(record);
      const ms = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('ms') ?? 0);
      const timer = setTimeout(() => {
        record.answered = true;
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('late answer');
      }, ms);
      res.on('close', () => {
        record.closedAt = performance.now();
        clearTimeout(timer);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      requests,
      close: () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    };
  }

  /** The code a fresh TCP connection to `port` ends with ('connected' when it is accepted). */
  function connectOutcome(port: number): Promise<string> {
    return new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
  }

  /** A request in flight on its own keep-alive HTTP/1.1 connection, its upstream answering after `ms`. */
  async function inFlight(gw: Gw, up: SlowUpstream, ms: number): Promise<Conn> {
    const before = up.requests.length;
    const conn = await rawTls(gw);
    conn.socket.write(`GET /api/slow?ms=${ms} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    await waitFor(() => up.requests.length > before, 'the upstream has the request');
    return conn;
  }

  it('close(3000): the in-flight request completes with 200, new connections are refused, a request arriving during drain gets Connection: close, close resolves', async () => {
    const up = await startSlow();
    const gw = await startGw(up.url);
    try {
      // a kept-alive connection that has answered once and is half-way through its next request head
      const kept = await rawTls(gw);
      kept.socket.write('GET /api/first HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await waitFor(() => parseFirstResponse(kept.received(), false)?.complete === true, 'the first answer on the kept-alive connection');
      assert.equal(parseFirstResponse(kept.received(), false)?.headers['connection'], 'keep-alive');
      const firstBytes = kept.received().length;
      kept.socket.write('GET /api/during HTTP/1.1\r\nHost: loc');
      const slow = await inFlight(gw, up, 500);

      const started = performance.now();
      const closing = gw.gateway.close(3000);
      await sleep(50);
      assert.equal(await connectOutcome(gw.port), 'ECONNREFUSED', 'a new connection after close() started is refused');

      kept.socket.write('alhost\r\n\r\n');
      await within(kept.closed, 3000, 'the kept-alive connection closing after its answer during drain');
      const during = parseFirstResponse(kept.received().subarray(firstBytes), true);
      assert.equal(during?.status, 200, `the request that arrived during drain is answered: ${kept.received().subarray(firstBytes).toString('latin1').slice(0, 200)}`);
      assert.equal(during.headers['connection'], 'close', 'an answer given during drain is the connection\'s last');

      await within(slow.closed, 3000, 'the in-flight connection finishing');
      const res = parseFirstResponse(slow.received(), true);
      assert.equal(res?.status, 200, `the in-flight request completes: ${slow.received().toString('latin1').slice(0, 300)}`);
      assert.equal(res.body.toString(), 'late answer');

      await within(closing, 3000, 'close() resolving');
      const ms = performance.now() - started;
      assert.ok(ms < 3000, `close() took ${Math.round(ms)} ms: nothing was left to wait for after the answer at ~500 ms`);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it(
    'close(3000): the in-flight keep-alive answer given during drain says Connection: close',
    async () => {
      const up = await startSlow();
      const gw = await startGw(up.url);
      try {
        const slow = await inFlight(gw, up, 500);
        const closing = gw.gateway.close(3000);
        await within(slow.closed, 3000, 'the in-flight connection finishing');
        const res = parseFirstResponse(slow.received(), true);
        assert.equal(res?.status, 200);
        assert.equal(res.headers['connection'], 'close', `headers: ${JSON.stringify(res.headers)}`);
        await within(closing, 3000, 'close() resolving');
      } finally {
        await gw.close();
        await up.close();
      }
    },
  );

  it('close(300) with an upstream answering after 2 s: the connection is cut unanswered and close resolves', async () => {
    const up = await startSlow();
    const gw = await startGw(up.url);
    try {
      const slow = await inFlight(gw, up, 2000);
      const started = performance.now();
      await within(gw.gateway.close(300), 3000, 'close(300) resolving');
      const ms = performance.now() - started;
      await within(slow.closed, 500, 'the in-flight connection being cut');
      assert.equal(parseFirstResponse(slow.received(), true), undefined, 'the cut request got no answer');
      assert.equal(up.requests[0].answered, false, 'close did not wait for the 2 s answer');
      assert.ok(ms < 1800, `close(300) took ${Math.round(ms)} ms`);
    } finally {
      await gw.close();
      await up.close();
    }
  });

  it(
    'close(300) with an upstream answering after 2 s resolves within ~1 s',
    async () => {
      const up = await startSlow();
      const gw = await startGw(up.url);
      try {
        await inFlight(gw, up, 2000);
        const started = performance.now();
        await within(gw.gateway.close(300), 3000, 'close(300) resolving');
        const ms = performance.now() - started;
        assert.ok(ms < 1000, `close(300) took ${Math.round(ms)} ms`);
        const dropped = up.requests[0].closedAt === undefined ? Infinity : up.requests[0].closedAt - started;
        assert.ok(dropped < 800, `the upstream request of the cut client was given up ${Math.round(dropped)} ms after close(300) began`);
      } finally {
        await gw.close();
        await up.close();
      }
    },
  );
});
