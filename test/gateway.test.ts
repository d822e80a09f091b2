// The gateway as a client sees it: proxying over HTTP/1.1 and HTTP/2, TLS
// settings, limits, upstream failures, reload, admin, redirects, WebSockets.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import http from 'node:http';
import { Readable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import WebSocket, { WebSocketServer } from 'ws';
import { startUpstream, startFixture, type Upstream, type Fixture } from './support/gateway-fixture.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';

const topology = (upstream: string, slow: string, extraRoutes = '', slowTimeout = 300) => `version: 1
trustDomain: test.local
zones:
  edge:
    gateway:
      listen: 127.0.0.1:0
      redirectListen: 127.0.0.1:0
      admin: { listen: 127.0.0.1:0 }
      accessLog: { enabled: true, headers: true }
      limits: { maxBodyBytes: 65536 }
    authentication: { apiKeyHeader: x-partner-key }
    routes:
      - { name: catalog, path: /api/catalog, methods: [GET], service: echo, auth: anonymous }
      - { name: echo, path: /api/echo/, match: prefix, methods: '*', service: echo, auth: anonymous }
      - { name: small, path: /api/small, methods: [POST], service: echo, limits: { maxBodyBytes: 10 }, auth: anonymous }
      - { name: slow, path: /api/slow, service: slow, limits: { timeoutMs: ${slowTimeout} }, auth: anonymous }
      - { name: framed, path: /api/framed, service: echo, frameOptions: SAMEORIGIN, auth: anonymous }
      - name: cors
        path: /api/cors
        methods: [GET, POST]
        service: echo
        auth: anonymous
        cors: { origins: ['https://shop.example'], headers: [content-type], credentials: true, exposeHeaders: [x-request-id] }
      - name: contract
        path: /api/contract
        methods: [POST]
        service: echo
        auth: anonymous
        limits: { maxBodyBytes: 1024 }
        validate:
          query: { type: object, properties: { dry: { enum: ['true', 'false'] } }, additionalProperties: false }
          headers: { type: object, properties: { x-shop-version: { type: string, pattern: '^[0-9]+$' } } }
          body:
            type: object
            required: [items]
            additionalProperties: false
            properties:
              items: { type: array, minItems: 1, items: { type: object, required: [sku], properties: { sku: { type: string, maxLength: 16 }, quantity: { type: integer, minimum: 1 } }, additionalProperties: false } }${extraRoutes}
services:
  echo: { zone: edge, upstream: '${upstream}' }
  slow: { zone: edge, upstream: '${slow}' }
`;

let up: Upstream;
let slow: Upstream;
let fx: Fixture;
let agent: Agent;
let h2agent: Agent;

before(async () => {
  up = await startUpstream();
  slow = await startUpstream((req, res) => setTimeout(() => res.end('late'), Number(new URL(req.url!, 'http://x').searchParams.get('ms') ?? 1000)));
  fx = await startFixture(topology(up.url, slow.url));
  agent = new Agent({ connect: { ca: fx.ca }, allowH2: false });
  h2agent = new Agent({ connect: { ca: fx.ca }, allowH2: true });
});
after(async () => {
  await agent.close();
  await h2agent.close();
  await fx.close();
  await up.close();
  await slow.close();
});

const get = (p: string, o: Parameters<typeof request>[1] = {}) => request(fx.gateway.url + p, { dispatcher: agent, ...o });

test('proxies over HTTPS: the upstream sees the canonical path and the gateway headers; the client gets security headers', async () => {
  const before = up.seen.length;
  const res = await get('/api/echo/a/./b//c?x=1', { headers: { 'x-forwarded-for': '6.6.6.6', 'x-request-id': 'forged' } });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { path: string; headers: Record<string, string> };
  assert.equal(body.path, '/api/echo/a/b/c?x=1');
  assert.equal(body.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(body.headers['x-forwarded-proto'], 'https');
  assert.match(body.headers.forwarded, /^for=127\.0\.0\.1;proto=https;host="127\.0\.0\.1:\d+"$/);
  assert.notEqual(body.headers['x-request-id'], 'forged');
  assert.equal(res.headers['x-request-id'], body.headers['x-request-id']);
  assert.equal(res.headers['strict-transport-security'], 'max-age=31536000; includeSubDomains');
  assert.equal(res.headers['x-content-type-options'], 'nosniff');
  assert.equal(res.headers['referrer-policy'], 'no-referrer');
  assert.equal(res.headers['x-frame-options'], 'DENY');
  assert.equal(res.headers.server, undefined);
  assert.equal(res.headers['x-powered-by'], undefined);
  assert.equal(up.seen.length, before + 1);
  const framed = await get('/api/framed');
  assert.equal(framed.headers['x-frame-options'], 'SAMEORIGIN');
  await framed.body.dump();
});

test('a client that leaves before the upstream answers does not disturb the gateway', async () => {
  const { port } = new URL(fx.gateway.url);
  for (let i = 0; i < 5; i++) {
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca: fx.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write('GET /api/slow?ms=150 HTTP/1.1\r\nhost: localhost\r\n\r\n');
    await new Promise((r) => setTimeout(r, 20));
    socket.destroy();
  }
  await new Promise((r) => setTimeout(r, 400));
  const res = await get('/api/catalog');
  assert.equal(res.statusCode, 200);
  await res.body.dump();
});

test('HTTP/2 is negotiated by ALPN and proxied like HTTP/1.1', async () => {
  const res = await request(fx.gateway.url + '/api/echo/h2', { dispatcher: h2agent, method: 'POST', body: 'hello' });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { path: string; method: string; bodyBytes: number };
  assert.deepEqual([body.method, body.path, body.bodyBytes], ['POST', '/api/echo/h2', 5]);
  const refused = await request(fx.gateway.url + '/api/echo/a%2Fb', { dispatcher: h2agent });
  assert.equal(refused.statusCode, 400);
  assert.equal(refused.headers['content-type'], 'application/problem+json');
  await refused.body.dump();
});

test('TLS: 1.2 minimum, hybrid post-quantum key exchange offered, h2 and http/1.1 by ALPN', async () => {
  const { port } = new URL(fx.gateway.url);
  const connect = (o: tls.ConnectionOptions) =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: Number(port), ca: fx.ca, servername: 'localhost', ...o }, () => resolve(s));
      s.once('error', reject);
    });
  await assert.rejects(connect({ maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }));
  const s12 = await connect({ maxVersion: 'TLSv1.2' });
  assert.equal(s12.getProtocol(), 'TLSv1.2');
  assert.match(s12.getCipher().name, /GCM|CHACHA20/);
  s12.destroy();
  const s13 = await connect({ ALPNProtocols: ['h2', 'http/1.1'] });
  assert.equal(s13.getProtocol(), 'TLSv1.3');
  assert.equal(s13.alpnProtocol, 'h2');
  assert.equal((s13.getEphemeralKeyInfo() as { name?: string }).name, 'X25519MLKEM768');
  s13.destroy();
  const s11 = await connect({ ALPNProtocols: ['http/1.1'] });
  assert.equal(s11.alpnProtocol, 'http/1.1');
  s11.destroy();
});

test('404 for no route, 405 with Allow, problem+json with a request id and nothing internal', async () => {
  const none = await get('/nope');
  assert.equal(none.statusCode, 404);
  const problem = (await none.body.json()) as Record<string, unknown>;
  assert.deepEqual(Object.keys(problem).sort(), ['code', 'detail', 'request_id', 'status', 'title', 'type']);
  assert.equal(problem.request_id, none.headers['x-request-id']);
  const wrong = await get('/api/catalog', { method: 'DELETE' });
  assert.equal(wrong.statusCode, 405);
  assert.equal(wrong.headers.allow, 'GET, HEAD');
  await wrong.body.dump();
});

test('body limits: a declared body over the route limit is refused before the upstream; a streamed one mid-way', async () => {
  const before = up.seen.length;
  const declared = await get('/api/small', { method: 'POST', body: 'x'.repeat(11) });
  assert.equal(declared.statusCode, 413);
  assert.equal(((await declared.body.json()) as { code: string }).code, 'payload_too_large');
  assert.equal(up.seen.length, before);
  const ok = await get('/api/small', { method: 'POST', body: 'x'.repeat(10) });
  assert.equal(ok.statusCode, 200);
  await ok.body.dump();
  async function* chunks() {
    for (let i = 0; i < 3; i++) yield Buffer.alloc(6, 'y');
  }
  const streamed = await get('/api/small', { method: 'POST', body: Readable.from(chunks()) });
  assert.equal(streamed.statusCode, 413);
  await streamed.body.dump();
});

test('large bodies stream through both ways', async () => {
  const payload = Buffer.alloc(60_000, 'z');
  const res = await get('/api/echo/big', { method: 'PUT', body: payload });
  assert.equal(((await res.body.json()) as { bodyBytes: number }).bodyBytes, 60_000);
});

test('a slow upstream gets 504, a dead one 502, and repeated failures open the circuit (503 + Retry-After)', async () => {
  const late = await get('/api/slow?ms=2000');
  assert.equal(late.statusCode, 504);
  assert.equal(((await late.body.json()) as { code: string }).code, 'gateway_timeout');
  const dead = await startUpstream();
  await dead.close();
  const yaml = topology(up.url, slow.url, `\n      - { name: dead, path: /api/dead, service: dead, auth: anonymous }`).replace(
    'services:\n',
    `services:\n  dead: { zone: edge, upstream: '${dead.url}', circuitBreaker: { failures: 2, openMs: 60000 } }\n`,
  );
  fx.write(yaml);
  assert.equal((await fx.gateway.reload()).ok, true);
  for (let i = 0; i < 2; i++) {
    const r = await get('/api/dead');
    assert.equal(r.statusCode, 502);
    const p = (await r.body.json()) as { detail: string };
    assert.doesNotMatch(JSON.stringify(p), /ECONNREFUSED|undici|127\.0\.0\.1|at /);
  }
  const open = await get('/api/dead');
  assert.equal(open.statusCode, 503);
  assert.ok(Number(open.headers['retry-after']) > 0);
  await open.body.dump();
  const metrics = await (await fetch(fx.gateway.adminUrl + '/metrics')).text();
  assert.match(metrics, /gatehouse_gateway_circuit_open\{service="dead",zone="edge"\} 1/);
  fx.write(topology(up.url, slow.url));
  assert.equal((await fx.gateway.reload()).ok, true);
});

test('reload: a bad file is refused with the reason and the old config keeps serving; a good one applies; in-flight requests finish', async () => {
  const admin = fx.gateway.adminUrl!;
  fx.write(topology(up.url, slow.url, '', 3000));
  assert.equal((await fx.gateway.reload()).ok, true);
  const inflight = get('/api/slow?ms=700', { headersTimeout: 5000 });
  await new Promise((r) => setTimeout(r, 100));
  fx.write(topology(up.url, slow.url).replace('listen: 127.0.0.1:0\n      redirectListen', 'listen: 127.0.0.1:0\n      colour: blue\n      redirectListen'));
  const bad = await fetch(admin + '/reload', { method: 'POST' });
  assert.equal(bad.status, 422);
  assert.equal(bad.headers.get('content-type'), 'application/problem+json');
  assert.match(((await bad.json()) as { detail: string }).detail, /gatehouse\.yaml:7:7: zones\.edge\.gateway\.colour: unknown key "colour"/);
  assert.equal((await get('/api/catalog')).statusCode, 200);
  fx.write(topology(up.url, slow.url, `\n      - { name: added, path: /api/added, service: echo, auth: anonymous }`));
  const good = await fetch(admin + '/reload', { method: 'POST' });
  assert.equal(good.status, 200);
  const added = await get('/api/added');
  assert.equal(added.statusCode, 200);
  await added.body.dump();
  const slowRes = await inflight;
  assert.equal(slowRes.statusCode, 200, 'the in-flight request kept the 3 s timeout of the config it started with');
  await slowRes.body.dump();
  const after = await get('/api/slow?ms=2500');
  assert.equal(after.statusCode, 504, 'a new request gets the new 300 ms timeout');
  await after.body.dump();
  const metrics = await (await fetch(admin + '/metrics')).text();
  assert.match(metrics, /gatehouse_gateway_reloads_total\{result="error",zone="edge"\} 1/);
});

test('admin: health, readiness and metrics on loopback only, never on the public port', async () => {
  const admin = fx.gateway.adminUrl!;
  assert.match(admin, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(await (await fetch(admin + '/healthz')).json(), { status: 'ok' });
  assert.deepEqual(await (await fetch(admin + '/readyz')).json(), { status: 'ready' });
  const metrics = await (await fetch(admin + '/metrics')).text();
  assert.match(metrics, /gatehouse_gateway_requests_total\{route="echo",method="GET",status_class="2xx",zone="edge"\} \d+/);
  assert.match(metrics, /gatehouse_gateway_request_duration_seconds_bucket/);
  assert.match(metrics, /gatehouse_gateway_upstream_duration_seconds_bucket/);
  assert.match(metrics, /gatehouse_gateway_refused_total\{reason="ambiguous_path",zone="edge"\} \d+/);
  assert.match(metrics, /gatehouse_gateway_open_connections\{zone="edge"\} \d+/);
  assert.equal((await fetch(admin + '/metrics', { method: 'DELETE' })).status, 405);
  assert.equal((await fetch(admin + '/nothing')).status, 404);
  const pub = await get('/metrics');
  assert.equal(pub.statusCode, 404);
  await pub.body.dump();
});

test('access log: one JSON line per request, credentials and secret query values redacted', async () => {
  const res = await get('/api/echo/log?access_token=SECRET1&page=2', {
    headers: { authorization: 'Bearer SECRET2', cookie: 'sid=SECRET3', 'x-api-key': 'SECRET4', 'x-partner-key': 'SECRET5', 'proxy-authorization': 'Basic SECRET6' },
  });
  const id = res.headers['x-request-id'];
  await res.body.dump();
  const line = fx.logs.find((l) => l.request_id === id);
  assert.ok(line, 'an access-log line for the request');
  assert.equal(line.status, 200);
  assert.equal(line.route, 'echo');
  assert.equal(line.query, 'access_token=[REDACTED]&page=2');
  assert.doesNotMatch(JSON.stringify(fx.logs), /SECRET\d/);
  const logged = (line.req as { headers: Record<string, string> }).headers;
  assert.equal(logged.authorization, '[REDACTED]');
  // the zone's own API-key header is censored whatever it is called
  assert.equal(logged['x-partner-key'], '[REDACTED]');
  assert.equal(logged['x-api-key'], '[REDACTED]');
  assert.match(logged.host, /^127\.0\.0\.1:\d+$/, 'other headers are kept');
});

test('the plain redirect listener only redirects to HTTPS', async () => {
  const res = await request(fx.gateway.redirectUrl! + '/api/catalog?x=1', { headers: { host: 'shop.example:80' } });
  assert.equal(res.statusCode, 308);
  assert.equal(res.headers.location, `https://shop.example:${new URL(fx.gateway.url).port}/api/catalog?x=1`);
  await res.body.dump();
  const evil = await request(fx.gateway.redirectUrl! + '/x', { headers: { host: 'evil.example/@x' } });
  assert.equal(evil.statusCode, 400);
  await evil.body.dump();
});

test('WebSocket upgrades are proxied; other upgrades are refused', async () => {
  const wsUpstream = http.createServer();
  const wss = new WebSocketServer({ server: wsUpstream });
  wss.on('connection', (socket, req) => socket.on('message', (m) => socket.send(`${req.url} ${m}`)));
  await new Promise<void>((resolve) => wsUpstream.listen(0, '127.0.0.1', resolve));
  const wsUrl = `http://127.0.0.1:${(wsUpstream.address() as { port: number }).port}`;
  fx.write(topology(up.url, slow.url, `\n      - { name: ws, path: /ws, service: ws, auth: anonymous }`).replace('services:\n', `services:\n  ws: { zone: edge, upstream: '${wsUrl}' }\n`));
  assert.equal((await fx.gateway.reload()).ok, true);
  const client = new WebSocket(fx.gateway.url.replace('https', 'wss') + '/ws', { ca: fx.ca });
  const reply = await new Promise<string>((resolve, reject) => {
    client.on('open', () => client.send('ping'));
    client.on('message', (m) => resolve(String(m)));
    client.on('error', reject);
  });
  assert.equal(reply, '/ws ping');
  client.close();
  const h2c = await get('/api/echo/x', { headers: { connection: 'upgrade', upgrade: 'h2c' } }).catch((e: Error) => e);
  if (!(h2c instanceof Error)) {
    assert.equal(h2c.statusCode, 400);
    await h2c.body.dump();
  }
  wss.close();
  wsUpstream.close();
  fx.write(topology(up.url, slow.url));
  assert.equal((await fx.gateway.reload()).ok, true);
});

test('certificate files are reloaded on change without dropping open connections', async () => {
  const ca = await openDevCa(path.join(fx.dir, 'other'));
  const first = await ca.issueServer(['localhost', '127.0.0.1']);
  writeFileSync(path.join(fx.dir, 'cert.pem'), first.cert);
  writeFileSync(path.join(fx.dir, 'key.pem'), first.key);
  const upstream = await startUpstream();
  const file = await startFixture(
    `version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: { cert: ${path.join(fx.dir, 'cert.pem')}, key: ${path.join(fx.dir, 'key.pem')} }, admin: { listen: 127.0.0.1:0 } }
    routes: [{ path: /x, service: s, auth: anonymous }]
services:
  s: { zone: edge, upstream: '${upstream.url}' }
`,
  );
  const serialOf = (s: tls.TLSSocket) => s.getPeerCertificate().serialNumber;
  const port = Number(new URL(file.gateway.url).port);
  const open = () =>
    new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: ca.caPem, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => resolve(s));
      s.once('error', reject);
    });
  const kept = await open();
  const oldSerial = serialOf(kept);
  const second = await ca.issueServer(['localhost', '127.0.0.1']);
  writeFileSync(path.join(fx.dir, 'key.pem'), second.key);
  writeFileSync(path.join(fx.dir, 'cert.pem'), second.cert);
  let fresh = await open();
  for (let i = 0; i < 40 && serialOf(fresh) === oldSerial; i++) {
    fresh.destroy();
    await new Promise((r) => setTimeout(r, 100));
    fresh = await open();
  }
  assert.notEqual(serialOf(fresh), oldSerial, 'new connections get the new certificate');
  fresh.destroy();
  kept.write('GET /x HTTP/1.1\r\nhost: localhost\r\n\r\n');
  const answer = await new Promise<string>((resolve) => kept.once('data', (d) => resolve(String(d))));
  assert.match(answer, /^HTTP\/1\.1 200/, 'the old connection still works');
  kept.destroy();
  await file.close();
  await upstream.close();
});

test('at the connection limit idle connections make room; a slow HTTP/2 stream is cancelled at the request timeout', async () => {
  const upstream = await startUpstream((_q, res) => setTimeout(() => res.end('late'), 3000));
  const small = await startFixture(`version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, limits: { maxConnections: 2, requestTimeoutMs: 400, headersTimeoutMs: 300 } }
    routes: [{ path: /x, service: s, auth: anonymous }]
services:
  s: { zone: edge, upstream: '${upstream.url}' }
`);
  const port = Number(new URL(small.gateway.url).port);
  const open = () =>
    new Promise<tls.TLSSocket | Error>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca: small.ca, servername: 'localhost' }, () => resolve(s));
      s.once('error', (e) => resolve(e));
      s.once('close', () => resolve(new Error('closed')));
    });
  const a = await open();
  const b = await open();
  assert.ok(a instanceof tls.TLSSocket && b instanceof tls.TLSSocket);
  // at the limit, connections that wait for nothing make room for a new one
  const oneClosed = Promise.race([a, b].map((s) => new Promise((resolve) => s.once('close', resolve))));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const c = await open();
  assert.ok(c instanceof tls.TLSSocket, 'the third connection is admitted');
  await oneClosed;
  const metrics = await (await request(small.gateway.adminUrl! + '/metrics')).body.text();
  assert.match(metrics, /gatehouse_gateway_connections_shed_total\{reason="idle",zone="edge"\} 1/);
  c.destroy();
  b.destroy();
  const h2 = new Agent({ connect: { ca: small.ca }, allowH2: true });
  const started = Date.now();
  const outcome = await request(small.gateway.url + '/x', { dispatcher: h2 }).then(
    async (r) => `status ${r.statusCode} ${await r.body.text()}`,
    (e: Error) => `error ${e.message}`,
  );
  assert.ok(Date.now() - started < 2500, `cancelled at the request timeout, not after the upstream's 3 s (${outcome})`);
  assert.doesNotMatch(outcome, /late/);
  await h2.close();
  await small.close();
  await upstream.close();
});

test('CORS: preflights are answered at the gateway for allowed origins, methods and headers only', async () => {
  const before = up.seen.length;
  const pre = (origin: string, method: string, headers?: string) =>
    get('/api/cors', {
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': method, ...(headers ? { 'access-control-request-headers': headers } : {}) },
    });
  const ok = await pre('https://shop.example', 'POST', 'Content-Type');
  assert.equal(ok.statusCode, 204);
  assert.equal(ok.headers['access-control-allow-origin'], 'https://shop.example');
  assert.equal(ok.headers['access-control-allow-credentials'], 'true');
  assert.equal(ok.headers['access-control-allow-methods'], 'GET, POST, HEAD');
  assert.equal(ok.headers['access-control-allow-headers'], 'content-type');
  assert.equal(ok.headers['access-control-max-age'], '600');
  await ok.body.dump();
  for (const [origin, method, headers, status] of [
    ['https://evil.example', 'POST', undefined, 403],
    ['https://shop.example', 'DELETE', undefined, 405], // no such route: not a preflight the gateway answers
    ['https://shop.example', 'POST', 'x-secret', 403],
    ['null', 'GET', undefined, 403],
  ] as const) {
    const r = await pre(origin, method, headers);
    assert.equal(r.statusCode, status, `${origin} ${method} ${headers}`);
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    await r.body.dump();
  }
  assert.equal(up.seen.length, before, 'preflights never reach the upstream');
  const actual = await get('/api/cors', { headers: { origin: 'https://shop.example' } });
  assert.equal(actual.headers['access-control-allow-origin'], 'https://shop.example');
  assert.equal(actual.headers['access-control-expose-headers'], 'x-request-id');
  assert.equal(actual.headers.vary, 'origin');
  await actual.body.dump();
  const other = await get('/api/cors', { headers: { origin: 'https://evil.example' } });
  assert.equal(other.headers['access-control-allow-origin'], undefined);
  await other.body.dump();
  const plainOptions = await get('/api/cors', { method: 'OPTIONS' });
  assert.equal(plainOptions.statusCode, 405, 'OPTIONS without a preflight is just a method the route lacks');
  await plainOptions.body.dump();
});

test('request contract: JSON Schema for query and body; 415, 422 naming the field, and the upstream gets the checked bytes', async () => {
  const before = up.seen.length;
  const post = (body: string, type = 'application/json', query = '') =>
    get('/api/contract' + query, { method: 'POST', body, headers: { 'content-type': type } });
  const refused: [string, string, string, number, RegExp][] = [
    ['{"items":[]}', 'application/json', '', 422, /^body\/items: must NOT have fewer than 1 items$/],
    ['{"items":[{"sku":"a"}],"admin":true}', 'application/json', '', 422, /^body: unknown field "admin"$/],
    ['{"items":[{"sku":"a","quantity":0}]}', 'application/json', '', 422, /^body\/items\/0\/quantity: must be >= 1$/],
    ['{"items":[{"sku":"a"}]}', 'application/json', '?debug=1', 422, /^query: unknown field "debug"$/],
    ['{"items":[{"sku":"a"}]}', 'text/plain', '', 415, /JSON body/],
    ['{"items":', 'application/json', '', 400, /not valid JSON/],
    [JSON.stringify({ items: [{ sku: 'x'.repeat(2000) }] }), 'application/json', '', 413, /exceeds 1024 bytes/],
  ];
  const badHeader = await get('/api/contract', { method: 'POST', body: '{"items":[{"sku":"a"}]}', headers: { 'content-type': 'application/json', 'x-shop-version': 'v2' } });
  assert.equal(badHeader.statusCode, 422);
  assert.match(((await badHeader.body.json()) as { detail: string }).detail, /^headers\/x-shop-version: must match pattern/);
  for (const [body, type, query, status, detail] of refused) {
    const r = await post(body, type, query);
    const problem = (await r.body.json()) as { status: number; detail: string };
    assert.equal(r.statusCode, status, `${body} → ${problem.detail}`);
    assert.match(problem.detail, detail);
  }
  assert.equal(up.seen.length, before, 'nothing refused reached the upstream');
  const good = '{"items":[{"sku":"tea-001","quantity":2}]}';
  const ok = await post(good, 'application/json', '?dry=true');
  assert.equal(ok.statusCode, 200);
  assert.equal(((await ok.body.json()) as { bodyBytes: number }).bodyBytes, Buffer.byteLength(good));
  const chunked = await get('/api/contract', {
    method: 'POST',
    body: Readable.from([Buffer.from(good.slice(0, 10)), Buffer.from(good.slice(10))]),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(chunked.statusCode, 200, 'a chunked body is read, checked and sent on whole');
  assert.equal(((await chunked.body.json()) as { bodyBytes: number }).bodyBytes, Buffer.byteLength(good));
});
