// Test harness for hostile-input tests of the zone gateway: a recording
// upstream, a throw-away topology, the gateway itself, and a raw HTTP/1.x
// client over node:net / node:tls that sends exactly the bytes it is given
// (fetch and undici normalise or refuse hostile requests client-side).
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import net from 'node:net';
import tls from 'node:tls';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { startGateway, type RunningGateway } from '../../src/gateway/server.ts';
import { createLogger } from '../../src/shared/logger.ts';

// ---------------------------------------------------------------------------
// Recording upstream

export interface SeenRequest {
  method: string;
  url: string;
  rawHeaders: string[];
  /** Lower-cased header name → values, in arrival order. */
  headers: Record<string, string[]>;
  body: Buffer;
  /** The whole body arrived ('end'). */
  complete: boolean;
  /** The request was cut off before its body ended. */
  aborted: boolean;
}

export interface RecordingUpstream {
  url: string;
  port: number;
  /** Every request the upstream received, recorded as soon as its head arrived. */
  seen: SeenRequest[];
  close(): Promise<void>;
}

/** Headers the upstream adds to every answer; the gateway must strip them. */
export const UPSTREAM_LEAKY_HEADERS = {
  server: 'upstream-internal/9.9.9',
  'x-powered-by': 'Express',
  'x-aspnet-version': '4.0.30319',
  'x-upstream-hop': 'secret',
  connection: 'keep-alive, x-upstream-hop',
};

export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const seen: SeenRequest[] = [];
  const server = http.createServer({ keepAliveTimeout: 10_000 }, (req, res) => {
    const headers: Record<string, string[]> = {};
    for (let i = 0; i < req.rawHeaders.length; i += 2) (headers[req.rawHeaders[i].toLowerCase()] ??= []).push(req.rawHeaders[i + 1]);
    const record: SeenRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      rawHeaders: [...req.rawHeaders],
      headers,
      body: Buffer.alloc(0),
      complete: false,
      aborted: false,
    };
    seen.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('close', () => {
      record.body = Buffer.concat(chunks);
      if (!record.complete) record.aborted = true;
    });
    req.on('end', () => {
      record.body = Buffer.concat(chunks);
      record.complete = true;
      const body = JSON.stringify({ ok: true, method: record.method, url: record.url, bytes: record.body.length });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        ...UPSTREAM_LEAKY_HEADERS,
      });
      res.end(body);
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------
// Topology and gateway

export interface HarnessOptions {
  /** Plain HTTP on the listener instead of HTTPS (raw tests are simplest over it). */
  plaintext?: boolean;
  trustedProxies?: string[];
  maxHeaderBytes?: number;
  maxBodyBytes?: number;
  headersTimeoutMs?: number;
  requestTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  /** Consecutive upstream failures that open the circuit (default 1000: effectively never, so one case cannot break the next). */
  breakerFailures?: number;
  breakerOpenMs?: number;
}

export interface Harness {
  dir: string;
  configFile: string;
  gateway: RunningGateway;
  upstream: RecordingUpstream;
  plaintext: boolean;
  host: string;
  port: number;
  /** Dev CA certificate (PEM) when the listener speaks TLS. */
  ca: Buffer | undefined;
  /** Send raw bytes to the gateway's main listener over this harness's transport. */
  raw(data: RawData, options?: RawOptions): Promise<RawResponse>;
  close(): Promise<void>;
}

export function topologyYaml(upstreamUrl: string, o: HarnessOptions = {}): string {
  const trusted = o.trustedProxies && o.trustedProxies.length > 0 ? `      trustedProxies: [${o.trustedProxies.map((c) => `'${c}'`).join(', ')}]\n` : '';
  return `version: 1
trustDomain: hostile.test
zones:
  edge:
    gateway:
      listen: 127.0.0.1:0
      tls: dev
      plaintext: ${o.plaintext === true}
${trusted}      admin:
        listen: 127.0.0.1:0
      accessLog:
        enabled: false
      limits:
        maxHeaderBytes: ${o.maxHeaderBytes ?? 4096}
        maxBodyBytes: ${o.maxBodyBytes ?? 1024}
        headersTimeoutMs: ${o.headersTimeoutMs ?? 1000}
        requestTimeoutMs: ${o.requestTimeoutMs ?? 5000}
        keepAliveTimeoutMs: ${o.keepAliveTimeoutMs ?? 5000}
    routes:
      - name: public
        path: /api/public
        match: prefix
        methods: [GET, POST]
        service: up
        auth: anonymous
      - name: admin
        path: /api/admin
        match: exact
        methods: [GET]
        service: up
        auth: anonymous
      - name: echo
        path: /api/echo/
        match: prefix
        methods: '*'
        service: up
        auth: anonymous
      - name: matrix
        path: /api/matrix
        match: prefix
        methods: [GET]
        allowPathParameters: true
        service: up
        auth: anonymous
      - name: small
        path: /api/small
        match: prefix
        methods: [POST]
        limits:
          maxBodyBytes: 10
        service: up
        auth: anonymous
      - name: shop
        path: /api/shop
        match: prefix
        methods: [GET]
        hosts: [shop.example]
        service: up
        auth: anonymous
services:
  up:
    zone: edge
    upstream: ${upstreamUrl}
    circuitBreaker:
      failures: ${o.breakerFailures ?? 1000}
      openMs: ${o.breakerOpenMs ?? 10000}
`;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const upstream = await startRecordingUpstream();
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-hostile-'));
  const configFile = path.join(dir, 'gatehouse.yaml');
  writeFileSync(configFile, topologyYaml(upstream.url, options));
  let gateway: RunningGateway;
  try {
    gateway = await startGateway({
      config: configFile,
      zone: 'edge',
      stateDir: dir,
      accessLog: false,
      logger: createLogger({ name: 'gateway.test', level: 'silent' }),
    });
  } catch (error) {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const url = new URL(gateway.url);
  const plaintext = options.plaintext === true;
  const ca = plaintext ? undefined : readFileSync(path.join(dir, 'tls', 'dev-ca.pem'));
  const target: RawTarget = { host: url.hostname, port: Number(url.port), tls: !plaintext, ca };
  return {
    dir,
    configFile,
    gateway,
    upstream,
    plaintext,
    host: target.host,
    port: target.port,
    ca,
    raw: (data, o) => sendRaw(target, data, o),
    async close() {
      await gateway.close();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.x client

export type RawData = string | Buffer | Array<string | Buffer>;

export interface RawTarget {
  host: string;
  port: number;
  tls: boolean;
  ca?: Buffer;
  /** ALPN offered on TLS; default ['http/1.1']. */
  alpn?: string[];
}

export interface RawOptions {
  /** Give up (and destroy the socket) after this long; default 2000 ms. */
  timeoutMs?: number;
  /**
   * 'close' (default): collect until the server closes the connection or the timeout.
   * 'response': stop once the first response is complete (plus `graceMs`).
   */
  until?: 'close' | 'response';
  /** After a complete first response in 'response' mode, wait this long to see a close; default 50 ms. */
  graceMs?: number;
  /** Pause between the pieces of an array `data`; default 0 (separate writes). */
  gapMs?: number;
}

export interface RawResponse {
  /** Status of the first final response (interim 1xx skipped); 0 when none arrived. */
  status: number;
  statusLine: string;
  /** Interim (1xx, not 101) statuses that came before the first final response. */
  interim: number[];
  /** First response's headers, lower-cased names; repeated names joined with ', '. */
  headers: Record<string, string>;
  /** First response's headers as sent (name, value) pairs. */
  headerList: Array<[string, string]>;
  body: Buffer;
  text: string;
  /** How many HTTP status lines the whole byte stream holds (smuggled answers show up here). */
  responseCount: number;
  /** The server ended or reset the connection before we gave up on it. */
  closed: boolean;
  /** The close was a reset (ECONNRESET / EPIPE). */
  reset: boolean;
  /** Everything received. */
  raw: Buffer;
  elapsedMs: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
export { sleep };

interface ParsedHead {
  status: number;
  statusLine: string;
  headers: Record<string, string>;
  headerList: Array<[string, string]>;
  body: Buffer;
  complete: boolean;
  interim: number[];
}

/** Parse the first HTTP/1.x response in `buf`; `complete` tells whether its body is whole. */
export function parseFirstResponse(buf: Buffer, closed: boolean): ParsedHead | undefined {
  // interim (1xx) answers before the final one are skipped; `interim` lists them
  const interim: number[] = [];
  for (;;) {
    const m = /^HTTP\/\d\.\d (1\d\d) [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n/.exec(buf.toString('latin1'));
    if (!m || m[1] === '101') break;
    interim.push(Number(m[1]));
    buf = buf.subarray(Buffer.byteLength(m[0], 'latin1'));
  }
  const parsed = parseOne(buf, closed);
  return parsed === undefined ? undefined : { ...parsed, interim };
}

function parseOne(buf: Buffer, closed: boolean): Omit<ParsedHead, 'interim'> | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const statusLine = lines[0];
  const m = /^HTTP\/\d\.\d (\d{3})/.exec(statusLine);
  const status = m ? Number(m[1]) : 0;
  const headers: Record<string, string> = {};
  const headerList: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    headerList.push([name, value]);
    const lower = name.toLowerCase();
    headers[lower] = headers[lower] === undefined ? value : `${headers[lower]}, ${value}`;
  }
  let rest = buf.subarray(end + 4);
  const noBody = status === 204 || status === 304 || (status >= 100 && status < 200);
  if (noBody) return { status, statusLine, headers, headerList, body: Buffer.alloc(0), complete: true };
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    return { status, statusLine, headers, headerList, body: rest.subarray(0, n), complete: rest.length >= n };
  }
  if ((headers['transfer-encoding'] ?? '').toLowerCase().includes('chunked')) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = rest.indexOf('\r\n');
      if (lineEnd === -1) return { status, statusLine, headers, headerList, body: Buffer.concat(parts), complete: false };
      const size = parseInt(rest.subarray(0, lineEnd).toString('latin1'), 16);
      if (Number.isNaN(size)) return { status, statusLine, headers, headerList, body: Buffer.concat(parts), complete: false };
      if (size === 0) return { status, statusLine, headers, headerList, body: Buffer.concat(parts), complete: true };
      if (rest.length < lineEnd + 2 + size + 2)
        return { status, statusLine, headers, headerList, body: Buffer.concat(parts), complete: false };
      parts.push(rest.subarray(lineEnd + 2, lineEnd + 2 + size));
      rest = rest.subarray(lineEnd + 2 + size + 2);
    }
  }
  return { status, statusLine, headers, headerList, body: rest, complete: closed };
}

/** Send `data` verbatim and collect what comes back. Never half-closes our side. */
export function sendRaw(target: RawTarget, data: RawData, options: RawOptions = {}): Promise<RawResponse> {
  const timeoutMs = options.timeoutMs ?? 2000;
  const until = options.until ?? 'close';
  const graceMs = options.graceMs ?? 50;
  const pieces = (Array.isArray(data) ? data : [data]).map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p));
  const started = performance.now();
  return new Promise<RawResponse>((resolve, reject) => {
    const received: Buffer[] = [];
    let closed = false;
    let reset = false;
    let done = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const socket: net.Socket = target.tls
      ? tls.connect({
          host: target.host,
          port: target.port,
          ca: target.ca,
          servername: 'localhost',
          ALPNProtocols: target.alpn ?? ['http/1.1'],
        })
      : net.connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(graceTimer);
      const raw = Buffer.concat(received);
      socket.destroy();
      const parsed = parseFirstResponse(raw, closed);
      const latin = raw.toString('latin1');
      resolve({
        status: parsed?.status ?? 0,
        statusLine: parsed?.statusLine ?? '',
        interim: parsed?.interim ?? [],
        headers: parsed?.headers ?? {},
        headerList: parsed?.headerList ?? [],
        body: parsed?.body ?? Buffer.alloc(0),
        text: (parsed?.body ?? Buffer.alloc(0)).toString('utf8'),
        responseCount: (latin.match(/HTTP\/1\.[01] \d{3} [^\r\n]*\r\n/g) ?? []).length,
        closed,
        reset,
        raw,
        elapsedMs: performance.now() - started,
      });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      if (until === 'response' && graceTimer === undefined) {
        const parsed = parseFirstResponse(Buffer.concat(received), false);
        if (parsed?.complete) graceTimer = setTimeout(finish, graceMs);
      }
    });
    socket.on('end', () => {
      closed = true;
      finish();
    });
    socket.on('close', () => {
      if (!done) closed = true;
      finish();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') {
        closed = true;
        reset = true;
        finish();
      } else if (received.length === 0 && !done) {
        done = true;
        clearTimeout(timer);
        reject(error);
      } else finish();
    });
    socket.once(target.tls ? 'secureConnect' : 'connect', async () => {
      for (let i = 0; i < pieces.length; i++) {
        if (done || socket.destroyed) return;
        if (i > 0 && options.gapMs) await sleep(options.gapMs);
        if (done || socket.destroyed) return;
        socket.write(pieces[i]);
      }
    });
  });
}

// ---------------------------------------------------------------------------
// Assertions

/** Words that would betray the implementation in an error body. */
const LEAKS = [
  /\bat\s+\S+\s+\(/, // stack frame
  /\bat\s+(?:file|node):/,
  /\/work\b|\/home\/|\/tmp\/|node_modules|[\w-]+\.(?:ts|js|mjs)\b/,
  /\bundici\b|\bllhttp\b|\bnghttp2\b|\bHPE_[A-Z_]+|\bERR_[A-Z_]+|\bUND_ERR/,
  /\bnode:|\bTypeError\b|\bRangeError\b|\bError:/,
  /\bzod\b|\bpino\b|\bexpress\b/i,
];

export interface ProblemExpectation {
  /** The connection must have been closed by the gateway (framing refusals). */
  closed?: boolean;
  /** Expected problem `code` in the body. */
  code?: string;
}

/** The response is an RFC 9457 problem from the gateway with a request id and no implementation details. */
export function assertProblem(res: RawResponse | { status: number; headers: Record<string, string>; text: string; closed?: boolean }, status: number, expect: ProblemExpectation = {}): Record<string, unknown> {
  const context = `got ${res.status} ${JSON.stringify(res.headers)} ${res.text.slice(0, 300)}`;
  assert.equal(res.status, status, `expected status ${status}; ${context}`);
  assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json\b/, `content-type; ${context}`);
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(res.text) as Record<string, unknown>;
  } catch {
    assert.fail(`problem body is not JSON; ${context}`);
  }
  assert.equal(typeof body.request_id, 'string', `request_id; ${context}`);
  assert.ok((body.request_id as string).length > 0, 'request_id is empty');
  assert.equal(res.headers['x-request-id'], body.request_id, 'x-request-id header equals the body request_id');
  assert.equal(body.status, status);
  if (expect.code !== undefined) assert.equal(body.code, expect.code, context);
  for (const leak of LEAKS) assert.doesNotMatch(res.text, leak, `the problem body leaks implementation details: ${res.text}`);
  if (expect.closed === true) assert.equal(res.closed, true, `the gateway must close the connection after this refusal; ${context}`);
  return body;
}

/** Wait a little for anything in flight, then check the upstream saw nothing new. */
export async function assertUpstreamUnseen(upstream: RecordingUpstream, before: number, what = 'the request'): Promise<void> {
  await sleep(150);
  const fresh = upstream.seen.slice(before);
  assert.equal(
    fresh.length,
    0,
    `the upstream must never see ${what}; it saw: ${fresh
      .map((r) => `${r.method} ${r.url} (complete=${r.complete}, content-length=${r.headers['content-length'] ?? '-'}, ${r.body.length} body bytes)`)
      .join('; ')}`,
  );
}

/** The single request the upstream saw since `before` (fails if it saw none or several). */
export async function upstreamSawOne(upstream: RecordingUpstream, before: number): Promise<SeenRequest> {
  for (let i = 0; i < 20 && upstream.seen.length === before; i++) await sleep(10);
  const fresh = upstream.seen.slice(before);
  assert.equal(fresh.length, 1, `the upstream should have seen exactly one request; saw ${fresh.map((r) => `${r.method} ${r.url}`).join('; ') || 'none'}`);
  return fresh[0];
}

/** `GET <target> HTTP/1.1` with a Host header and the given extra header lines. */
export function get(target: string, extra: string[] = [], host = 'localhost'): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra.map((h) => `${h}\r\n`).join('')}\r\n`;
}

// ---------------------------------------------------------------------------
// The gateway in a child process: for inputs that may crash it. A crash of an
// in-process gateway would take the test runner down with it; here it shows
// up as the child's exit.

export interface ProcessHarness {
  host: string;
  port: number;
  ca: Buffer | undefined;
  /** Requests the child's recording upstream received (method, url), as reported on its stdout. */
  seen: Array<{ method: string; url: string }>;
  /** The child's stderr so far (a crash's stack lands here). */
  stderr(): string;
  /** Exit code or signal once the child has exited; undefined while it runs. */
  exited(): string | undefined;
  raw(data: RawData, options?: RawOptions): Promise<RawResponse>;
  close(): Promise<void>;
}

/** Entry point of the child: start a harness, report its address and every upstream request. */
export async function runHarnessChild(options: HarnessOptions): Promise<void> {
  const h = await startHarness(options);
  const seen = h.upstream.seen;
  const push = seen.push.bind(seen);
  seen.push = (...items: SeenRequest[]) => {
    for (const r of items) process.stdout.write(`SEEN ${JSON.stringify({ method: r.method, url: r.url })}\n`);
    return push(...items);
  };
  process.stdout.write(`READY ${JSON.stringify({ host: h.host, port: h.port, dir: h.dir })}\n`);
  process.stdin.resume();
  process.stdin.on('end', () => {
    void h.close().then(() => process.exit(0));
  });
}

export async function startHarnessProcess(options: HarnessOptions = {}): Promise<ProcessHarness> {
  const harnessUrl = pathToFileURL(new URL(import.meta.url).pathname).href;
  const code = `import { runHarnessChild } from ${JSON.stringify(harnessUrl)}; await runHarnessChild(JSON.parse(process.env.GATEHOUSE_HARNESS_OPTIONS));`;
  const child: ChildProcess = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, GATEHOUSE_HARNESS_OPTIONS: JSON.stringify(options), GATEHOUSE_LOG_LEVEL: 'silent' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  let exit: string | undefined;
  const seen: Array<{ method: string; url: string }> = [];
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitedPromise = new Promise<void>((resolve) =>
    child.once('exit', (codeOrNull, signal) => {
      exit = signal ?? String(codeOrNull);
      resolve();
    }),
  );
  const ready = await new Promise<{ host: string; port: number; dir: string }>((resolve, reject) => {
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith('READY ')) resolve(JSON.parse(line.slice(6)));
        else if (line.startsWith('SEEN ')) seen.push(JSON.parse(line.slice(5)));
      }
    });
    void exitedPromise.then(() => reject(new Error(`the gateway child exited before it was ready (${exit}): ${stderr}`)));
  });
  const ca = options.plaintext ? undefined : readFileSync(path.join(ready.dir, 'tls', 'dev-ca.pem'));
  const target: RawTarget = { host: ready.host, port: ready.port, tls: !options.plaintext, ca };
  return {
    host: ready.host,
    port: ready.port,
    ca,
    seen,
    stderr: () => stderr,
    exited: () => exit,
    raw: (data, o) => sendRaw(target, data, o),
    async close() {
      if (exit === undefined) {
        child.stdin!.end();
        const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exitedPromise;
        clearTimeout(kill);
      }
      rmSync(ready.dir, { recursive: true, force: true });
    },
  };
}
