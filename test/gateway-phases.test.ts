// The order of the request path (src/gateway/phases.ts): hygiene → route →
// cors → ip → rate → authenticate → authorize → cedar → contract → identity →
// proxy → respond. Each test sends requests that would fail at two phases and
// checks that the earlier phase answers; then what identity adds for the
// upstream, and what respond writes (access log, refused counter) for every
// refusal.
//
// Tokens come from a test issuer the zone trusts (its JWKS served over HTTPS
// with a certificate of the gateway's own dev CA), as in gateway-auth.test.ts.
// Clients come from 127.0.0.1, a trusted proxy, and name their address in
// X-Forwarded-For, so each case has its own rate-limit bucket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Agent, request } from 'undici';
import { jwtVerify, createLocalJWKSet } from 'jose';
import { startUpstream, startFixture, tempDir, type Upstream, type Fixture } from './support/gateway-fixture.ts';
import { sendRaw, sleep, type RawResponse, type RawTarget } from './support/gateway-harness.ts';
import { identityKeyPaths } from '../src/gateway/policies/authentication/identity-token.ts';
import { PHASES } from '../src/gateway/phases.ts';
import { startIssuer, type Issuer } from './support/test-issuer.ts';

// ---------------------------------------------------------------------------

let up: Upstream;
let iss: Issuer;
let fx: Fixture;
let stateDir: string;
let ca: Buffer;
let agent: Agent;
let target: RawTarget;

before(async () => {
  stateDir = tempDir('gh-phases-');
  up = await startUpstream();
  iss = await startIssuer(stateDir, { client_id: 'shop-app', scope: 'orders:read' });
  fx = await startFixture(
    `version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, trustedProxies: ['127.0.0.1'] }
    authentication:
      issuers:
        - { issuer: '${iss.issuer}', jwksUri: '${iss.jwksUri}', audiences: ['urn:test:edge'] }
    # cases fail authentication from 127.0.0.1 on purpose: never slow it down
    authFailures: { freeFailures: 5000, maxFailures: 10000 }
    routes:
      - name: guarded
        path: /g
        match: prefix
        methods: [GET, POST]
        service: s
        auth: { scopes: [orders:read] }
        cors: { origins: ['https://shop.example'], headers: [authorization, content-type] }
        policies:
          ip_rules: { deny: ['10.66.0.0/16'] }
          rate_limit: { name: guarded, limit: 3, windowSeconds: 60, key: [address, route] }
        cedar:
          policies: |
            permit(principal, action, resource);
            forbid(principal, action, resource) when { principal.scopes.contains("orders:banned") };
            forbid(principal is Gatehouse::Anonymous, action, resource);
        validate:
          query: { type: object, properties: { page: { type: string, pattern: '^[0-9]+$' } }, additionalProperties: false }
          body: { type: object, required: [sku], additionalProperties: false, properties: { sku: { type: string } } }
      - { name: open, path: /open, service: s, auth: anonymous }
services:
  s: { zone: edge, upstream: '${up.url}' }
`,
    { stateDir },
  );
  ca = readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem'));
  agent = new Agent({ connect: { ca } });
  const u = new URL(fx.gateway.url);
  target = { host: u.hostname, port: Number(u.port), tls: true, ca };
});

after(async () => {
  await agent?.close();
  await fx?.close();
  await up?.close();
  iss?.close();
});

// ---------------------------------------------------------------------------
// Helpers

let nextClient = 0;
/** A fresh client address (via X-Forwarded-For from the trusted 127.0.0.1): a rate-limit bucket of its own. */
const freshClient = () => `10.1.${Math.floor(++nextClient / 250)}.${(nextClient % 250) + 1}`;

interface Answer {
  status: number;
  code: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  requestId: string;
  text: string;
}

async function call(
  p: string,
  o: { method?: string; client?: string; token?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { 'x-forwarded-for': o.client ?? freshClient(), ...o.headers };
  if (o.token !== undefined) headers.authorization = `Bearer ${o.token}`;
  if (o.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(fx.gateway.url + p, { dispatcher: agent, method: (o.method ?? 'GET') as 'GET', headers, body: o.body });
  const text = await res.body.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { code?: string }).code;
  } catch {
    code = undefined;
  }
  return { status: res.statusCode, code, headers: res.headers, requestId: String(res.headers['x-request-id']), text };
}

function raw(head: string): Promise<RawResponse> {
  return sendRaw(target, head, { until: 'response', graceMs: 20, timeoutMs: 3000 });
}
const rawCode = (res: RawResponse) => {
  try {
    return (JSON.parse(res.text) as { code?: string }).code;
  } catch {
    return undefined;
  }
};

function expectAnswer(a: Answer, status: number, code: string | undefined, why: string): void {
  assert.equal(a.status, status, `${why}: got ${a.status} ${a.text.slice(0, 200)}`);
  assert.equal(a.code, code, `${why}: problem code; got ${a.text.slice(0, 200)}`);
}

async function metricsText(): Promise<string> {
  return (await fetch(fx.gateway.adminUrl + '/metrics')).text();
}

/** Sum of the samples of `name` whose labels include every one of `labels`. */
function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Every refused_total sample, by its label set. */
function refusedSamples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n'))
    if (line.startsWith('gatehouse_gateway_refused_total{')) out.set(line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1)));
  return out;
}

/** Rate-limit decisions of the `guarded` route's limit, whatever their result. */
const rateDecisions = async () => metricSum(await metricsText(), 'gatehouse_gateway_rate_limit_decisions_total', { policy: 'guarded' });

const upstreamSeen = async () => {
  await sleep(50);
  return up.seen.length;
};

// ---------------------------------------------------------------------------

test('the phase list is the documented one, in order', () => {
  assert.deepEqual(
    PHASES.map((p) => p.name),
    ['hygiene', 'route', 'cors', 'ip', 'rate', 'authenticate', 'quarantine', 'authorize', 'cedar', 'contract', 'identity', 'proxy', 'respond'],
  );
});

test('hygiene before route: a malformed Host or framing is 400 even where no route would match (not 404)', async () => {
  const before = await upstreamSeen();
  const control = await raw('GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n');
  assert.equal(control.status, 404, control.statusLine);
  const cases: [string, string][] = [
    ['a repeated Host', 'GET /nowhere HTTP/1.1\r\nHost: localhost\r\nHost: other.example\r\n\r\n'],
    ['a malformed Host', 'GET /nowhere HTTP/1.1\r\nHost: evil.example/@x\r\n\r\n'],
    ['no Host on HTTP/1.1', 'GET /nowhere HTTP/1.1\r\nX-Any: 1\r\n\r\n'],
    ['Content-Length and Transfer-Encoding', 'POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['a target that is not origin-form', 'GET * HTTP/1.1\r\nHost: localhost\r\n\r\n'],
  ];
  for (const [what, head] of cases) {
    const res = await raw(head);
    assert.equal(res.status, 400, `${what}: ${res.statusLine} ${res.text.slice(0, 200)}`);
    assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json/, what);
    assert.notEqual(rawCode(res), 'not_found', what);
  }
  // the same on the protected route: hygiene answers before authentication would
  const guarded = await raw('GET /g/orders HTTP/1.1\r\nHost: localhost\r\nHost: other.example\r\n\r\n');
  assert.equal(guarded.status, 400, guarded.statusLine);
  assert.equal(rawCode(guarded), 'ambiguous_request');
  assert.equal(await upstreamSeen(), before);
});

test('route before the policies: no route is 404 and a method the route lacks is 405, whatever the credentials', async () => {
  const decisions = await rateDecisions();
  expectAnswer(await call('/nowhere'), 404, 'not_found', 'no route, no token');
  expectAnswer(await call('/nowhere', { token: 'forged.not.valid' }), 404, 'not_found', 'no route, a bad token');
  expectAnswer(await call('/nowhere', { client: '10.66.0.9' }), 404, 'not_found', 'no route, from a denied address');
  const del = await call('/g/orders', { method: 'DELETE' });
  expectAnswer(del, 405, 'method_not_allowed', 'a method the protected route does not have, no token');
  assert.match(String(del.headers.allow), /GET/);
  assert.equal(await rateDecisions(), decisions, 'none of them reached the rate phase');
});

test('cors before ip, rate and authentication: a preflight is answered 204 without a token; the same OPTIONS without Origin is 405', async () => {
  const decisions = await rateDecisions();
  const before = await upstreamSeen();
  const preflight = {
    origin: 'https://shop.example',
    'access-control-request-method': 'GET',
    'access-control-request-headers': 'authorization',
  };
  const ok = await call('/g/orders', { method: 'OPTIONS', headers: preflight });
  assert.equal(ok.status, 204, ok.text);
  assert.equal(ok.headers['access-control-allow-origin'], 'https://shop.example');
  assert.match(String(ok.headers['access-control-allow-headers']), /authorization/);
  assert.equal(ok.headers['www-authenticate'], undefined);
  // cors runs before ip: even a denied address gets its preflight answered (it carries no credentials and reaches nothing)
  const denied = await call('/g/orders', { method: 'OPTIONS', headers: preflight, client: '10.66.0.10' });
  assert.equal(denied.status, 204, denied.text);
  // a preflight from an origin the route does not allow is refused by cors itself, still before authentication
  expectAnswer(await call('/g/orders', { method: 'OPTIONS', headers: { ...preflight, origin: 'https://evil.example' } }), 403, 'forbidden', 'preflight from another origin');
  // no Origin: not a preflight, an OPTIONS the route does not allow
  expectAnswer(await call('/g/orders', { method: 'OPTIONS', headers: { 'access-control-request-method': 'GET' } }), 405, 'method_not_allowed', 'OPTIONS without Origin');
  assert.equal(await rateDecisions(), decisions, 'preflights are not counted by the rate limit');
  assert.equal(await upstreamSeen(), before, 'preflights never reach the upstream');
  // the actual request after the preflight still needs its token
  expectAnswer(await call('/g/orders', { headers: { origin: 'https://shop.example' } }), 401, 'unauthorized', 'the cross-origin GET itself');
});

test('ip before rate and authentication: a denied address is 403 without a token and is not counted by the rate limit', async () => {
  const decisions = await rateDecisions();
  for (let i = 0; i < 5; i++) {
    const a = await call('/g/orders', { client: '10.66.1.1' });
    expectAnswer(a, 403, 'forbidden', `denied address, no token (${i + 1})`);
    assert.equal(a.headers['ratelimit'], undefined, 'the rate phase did not run');
    assert.equal(a.headers['www-authenticate'], undefined, 'the authenticate phase did not run');
  }
  expectAnswer(await call('/g/orders', { client: '10.66.1.1', token: await iss.sign() }), 403, 'forbidden', 'denied address, valid token');
  assert.equal(await rateDecisions(), decisions, 'denied requests took nothing from the rate limit');
  // control: an allowed address without a token is counted (the rate phase runs before authentication)
  const counted = await call('/g/orders');
  expectAnswer(counted, 401, 'unauthorized', 'an allowed address, no token');
  assert.match(String(counted.headers['ratelimit']), /r=2/);
  assert.equal(await rateDecisions(), decisions + 1);
});

test('rate before authentication: over a limit keyed by address, a request without a token is 429, not 401', async () => {
  const client = freshClient();
  for (let i = 0; i < 3; i++) expectAnswer(await call('/g/orders', { client }), 401, 'unauthorized', `within the limit (${i + 1})`);
  const over = await call('/g/orders', { client });
  expectAnswer(over, 429, 'too_many_requests', 'over the limit, no token');
  assert.ok(Number(over.headers['retry-after']) >= 1);
  assert.equal(over.headers['www-authenticate'], undefined, 'the authenticate phase did not run');
  expectAnswer(await call('/g/orders', { client, token: await iss.sign() }), 429, 'too_many_requests', 'over the limit, valid token');
});

test('authenticate before authorize, cedar and contract: a missing token is 401 where Cedar would forbid and the contract would refuse', async () => {
  const before = await upstreamSeen();
  // Cedar forbids the anonymous principal and the query breaks the contract: authentication answers first
  expectAnswer(await call('/g/orders?page=NaN&extra=1'), 401, 'unauthorized', 'no token, bad query');
  expectAnswer(await call('/g/orders', { method: 'POST', body: '{"nope":true}' }), 401, 'unauthorized', 'no token, bad body');
  expectAnswer(await call('/g/orders', { method: 'POST', body: '{"nope":true}', token: 'forged.not.valid' }), 401, 'unauthorized', 'bad token, bad body');
  assert.equal(await upstreamSeen(), before);
});

test('authorize before cedar: a token without the scope is 403 insufficient_scope even when Cedar would forbid it', async () => {
  // orders:banned alone: lacks orders:read (authorize) and is banned (cedar)
  const a = await call('/g/orders', { token: await iss.sign({ scope: 'orders:banned' }) });
  expectAnswer(a, 403, 'insufficient_scope', 'no scope, banned');
  assert.match(String(a.headers['www-authenticate']), /insufficient_scope/);
  // control: with the scope and banned, Cedar is what refuses
  expectAnswer(await call('/g/orders', { token: await iss.sign({ scope: 'orders:read orders:banned' }) }), 403, 'forbidden', 'scope, banned');
});

test('cedar before contract: a forbidden caller with a broken body is 403, not 422', async () => {
  const before = await upstreamSeen();
  const banned = await iss.sign({ scope: 'orders:read orders:banned' });
  expectAnswer(await call('/g/orders', { method: 'POST', body: '{"nope":true}', token: banned }), 403, 'forbidden', 'banned, bad body');
  expectAnswer(await call('/g/orders?extra=1', { token: banned }), 403, 'forbidden', 'banned, bad query');
  assert.equal(await upstreamSeen(), before);
});

test('contract before proxy: a contract violation is 422 and never reaches the upstream; a valid body does', async () => {
  const token = await iss.sign();
  const before = await upstreamSeen();
  expectAnswer(await call('/g/orders', { method: 'POST', body: '{"nope":true}', token }), 422, 'unprocessable', 'bad body');
  expectAnswer(await call('/g/orders?page=x', { token }), 422, 'unprocessable', 'bad query');
  assert.equal(await upstreamSeen(), before, 'the upstream saw neither');
  const ok = await call('/g/orders', { method: 'POST', body: '{"sku":"A-1"}', token });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(await upstreamSeen(), before + 1);
  assert.equal(up.seen.at(-1)!.bodyBytes, Buffer.byteLength('{"sku":"A-1"}'));
});

test("identity: the upstream receives the gateway's identity token, not the client's Authorization", async () => {
  const token = await iss.sign({ sub: 'bob' });
  const before = await upstreamSeen();
  const res = await call('/g/orders?page=2', { token, headers: { 'x-gatehouse-identity': 'forged-by-client' } });
  assert.equal(res.status, 200, res.text);
  assert.equal(await upstreamSeen(), before + 1);
  const seen = up.seen.at(-1)!;
  assert.equal(seen.url, '/g/orders?page=2');
  assert.equal(seen.headers.authorization, undefined);
  const identity = seen.headers['x-gatehouse-identity'];
  assert.equal(typeof identity, 'string', `one identity token, got ${JSON.stringify(identity)}`);
  assert.notEqual(identity, 'forged-by-client');
  const jwks = JSON.parse(readFileSync(identityKeyPaths(stateDir, 'edge').jwks, 'utf8'));
  const { payload } = await jwtVerify(String(identity), createLocalJWKSet(jwks), {
    issuer: 'spiffe://t/zone/edge/gateway',
    audience: 'spiffe://t/zone/edge/svc/s',
  });
  assert.equal(payload.sub, 'bob');
});

test('respond: every refusal is logged with canonical path, client, route and code, and counted by code; a successful HTTP/2 GET counts nothing there', async () => {
  const beforeMetrics = refusedSamples(await metricsText());
  const limited = freshClient();
  for (let i = 0; i < 3; i++) await call('/g/orders', { client: limited, token: await iss.sign() });
  const token = await iss.sign();
  // a non-canonical path: the log shows the one the router and the policies saw
  const p = '/g/./x/../orders';
  const cases: { what: string; send: () => Promise<Answer>; client: string; status: number; code: string; route: string | undefined; path: string }[] = [];
  const add = (what: string, status: number, code: string, route: string | undefined, o: Parameters<typeof call>[1] & { path?: string } = {}) => {
    const client = o.client ?? freshClient();
    const target = o.path ?? p;
    cases.push({ what, send: () => call(target, { ...o, client }), client, status, code, route, path: target === p ? '/g/orders' : target });
  };
  add('no route', 404, 'not_found', undefined, { path: '/nowhere' });
  add('denied address', 403, 'forbidden', 'guarded', { client: '10.66.2.2' });
  add('over the rate limit', 429, 'too_many_requests', 'guarded', { client: limited });
  add('no token', 401, 'unauthorized', 'guarded');
  add('no scope', 403, 'insufficient_scope', 'guarded', { token: await iss.sign({ scope: 'orders:write' }) });
  add('cedar', 403, 'forbidden', 'guarded', { token: await iss.sign({ scope: 'orders:read orders:banned' }) });
  add('contract', 422, 'unprocessable', 'guarded', { method: 'POST', body: '{}', token });
  const expected = new Map<string, number>();
  for (const c of cases) {
    const a = await c.send();
    expectAnswer(a, c.status, c.code, c.what);
    const line = fx.logs.find((l) => l.request_id === a.requestId);
    assert.ok(line, `${c.what}: an access-log line for request ${a.requestId}`);
    assert.equal(line.status, c.status, `${c.what}: logged status`);
    assert.equal(line.code, c.code, `${c.what}: logged code`);
    assert.equal(line.path, c.path, `${c.what}: logged path`);
    assert.equal(line.client, c.client, `${c.what}: logged client`);
    assert.equal(line.route, c.route, `${c.what}: logged route`);
    expected.set(c.code, (expected.get(c.code) ?? 0) + 1);
  }
  // a refused upgrade is logged and counted the same way
  const upClient = freshClient();
  const refusedUpgrade = await raw(
    `GET ${p} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nX-Forwarded-For: ${upClient}\r\n\r\n`,
  );
  assert.equal(refusedUpgrade.status, 401, refusedUpgrade.statusLine);
  const upLine = fx.logs.find((l) => l.request_id === refusedUpgrade.headers['x-request-id']);
  assert.ok(upLine, 'an access-log line for the refused upgrade');
  assert.deepEqual(
    { status: upLine.status, code: upLine.code, path: upLine.path, client: upLine.client, route: upLine.route, upgrade: upLine.upgrade },
    { status: 401, code: 'unauthorized', path: '/g/orders', client: upClient, route: 'guarded', upgrade: 'websocket' },
  );
  expected.set('unauthorized', (expected.get('unauthorized') ?? 0) + 1);
  const afterRefusals = refusedSamples(await metricsText());
  for (const [code, n] of expected) {
    const key = `gatehouse_gateway_refused_total{reason="${code}",zone="edge"}`;
    assert.equal((afterRefusals.get(key) ?? 0) - (beforeMetrics.get(key) ?? 0), n, `refused_total{reason="${code}"} counted each refusal once`);
  }
  for (const [key, value] of afterRefusals)
    if (![...expected.keys()].some((code) => key.includes(`reason="${code}"`)))
      assert.equal(value, beforeMetrics.get(key) ?? 0, `${key} did not move`);

  // an ordinary successful GET over HTTP/2 counts no refusal and is logged without a code
  const session = http2.connect(fx.gateway.url, { ca });
  session.on('error', () => undefined);
  try {
    const h2 = await new Promise<{ status: number; id: string; body: string }>((resolve, reject) => {
      const s = session.request({ ':method': 'GET', ':path': '/g/orders?page=1', authorization: `Bearer ${token}`, 'x-forwarded-for': freshClient() });
      let status = 0;
      let id = '';
      let body = '';
      s.on('response', (h) => {
        status = Number(h[':status']);
        id = String(h['x-request-id']);
      });
      s.on('data', (c: Buffer) => (body += c.toString()));
      s.on('end', () => resolve({ status, id, body }));
      s.on('error', reject);
      s.end();
    });
    assert.equal(h2.status, 200, h2.body);
    const line = fx.logs.find((l) => l.request_id === h2.id);
    assert.ok(line, 'the HTTP/2 GET is logged');
    assert.equal(line.http, '2.0');
    assert.equal(line.code, undefined);
    assert.equal(line.status, 200);
  } finally {
    session.close();
  }
  assert.deepEqual(refusedSamples(await metricsText()), afterRefusals, 'the successful HTTP/2 GET counted no refusal');
});
