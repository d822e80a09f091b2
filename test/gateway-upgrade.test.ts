// WebSocket upgrades go through every phase a request does. On a protected
// route (scopes, an ip_rules deny list, a rate limit, a Cedar forbid and a
// query contract) each refusal is sent twice, as an upgrade and as the same GET
// without it, and both must get the same status and problem code while the
// upstream — a ws WebSocketServer that counts every HTTP request and every
// upgrade it receives — sees neither. Then the positive case: a tunnel that
// carries the gateway's identity token (never the client's Authorization) and
// counts against the rate limit.
//
// Tokens come from a test issuer the zone trusts (its JWKS served over HTTPS
// with a certificate of the gateway's own dev CA), as in gateway-auth.test.ts.
// Clients come from 127.0.0.1, a trusted proxy: each case names its own client
// address in X-Forwarded-For, so the rate limit (keyed by address and route)
// of one case never spends another's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import WebSocket, { WebSocketServer } from 'ws';
import { jwtVerify, createLocalJWKSet } from 'jose';
import { startFixture, tempDir, type Fixture } from './support/gateway-fixture.ts';
import { sendRaw, sleep, type RawResponse, type RawTarget } from './support/gateway-harness.ts';
import { identityKeyPaths } from '../src/gateway/policies/authentication/identity-token.ts';
import { startIssuer, type Issuer } from './support/test-issuer.ts';

// ---------------------------------------------------------------------------
// An upstream that counts every HTTP request and every upgrade

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface WsUpstream {
  url: string;
  requests: Seen[];
  upgrades: Seen[];
  close(): Promise<void>;
}

async function startWsUpstream(): Promise<WsUpstream> {
  const requests: Seen[] = [];
  const upgrades: Seen[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true }));
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    upgrades.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(`echo ${String(m)}`)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    upgrades,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------------------

let up: WsUpstream;
let iss: Issuer;
let fx: Fixture;
let stateDir: string;
let ca: Buffer;
let target: RawTarget;
let gatewayUrl: string;

before(async () => {
  stateDir = tempDir('gh-upgrade-');
  up = await startWsUpstream();
  iss = await startIssuer(stateDir, { client_id: 'chat-app', scope: 'chat:join' });
  fx = await startFixture(
    `version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, trustedProxies: ['127.0.0.1'] }
    authentication:
      issuers:
        - { issuer: '${iss.issuer}', jwksUri: '${iss.jwksUri}', audiences: ['urn:test:edge'] }
    # every case fails authentication from 127.0.0.1 on purpose: never slow it down
    authFailures: { freeFailures: 5000, maxFailures: 10000 }
    routes:
      - name: chat
        path: /ws
        match: prefix
        methods: [GET]
        service: chat
        auth: { scopes: [chat:join] }
        policies:
          ip_rules: { deny: ['10.66.0.0/16'] }
          rate_limit: { limit: 3, windowSeconds: 60, key: [address, route] }
        cedar:
          policies: |
            permit(principal, action, resource);
            forbid(principal, action, resource) when { principal.scopes.contains("chat:muted") };
        validate:
          query: { type: object, properties: { room: { type: string, pattern: '^[a-z]+$' } }, additionalProperties: false }
      - name: one-at-a-time
        path: /ws-one
        methods: [GET]
        service: chat
        auth: { scopes: [chat:join] }
        policies:
          rate_limit: { limit: 100, windowSeconds: 60, key: [address, route], concurrency: 1 }
services:
  chat: { zone: edge, upstream: '${up.url}' }
`,
    { stateDir },
  );
  ca = readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem'));
  gatewayUrl = fx.gateway.url;
  const u = new URL(gatewayUrl);
  target = { host: u.hostname, port: Number(u.port), tls: true, ca };
});

after(async () => {
  // the upstream first: its end closes any tunnel still open through the gateway
  await up?.close();
  await fx?.close();
  iss?.close();
});

// ---------------------------------------------------------------------------
// Helpers

let nextClient = 0;
/** A fresh client address (via X-Forwarded-For from the trusted 127.0.0.1): a rate-limit bucket of its own. */
const freshClient = () => `10.1.${Math.floor(++nextClient / 250)}.${(nextClient % 250) + 1}`;

const UPGRADE = ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13'];
const wsKey = () => `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`;

function rawGet(p: string, headers: string[]): Promise<RawResponse> {
  const head = `GET ${p} HTTP/1.1\r\nHost: localhost\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`;
  return sendRaw(target, head, { until: 'response', graceMs: 20, timeoutMs: 3000 });
}

function codeOf(res: RawResponse): string | undefined {
  try {
    return (JSON.parse(res.text) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

const describe = (res: RawResponse) => `${res.statusLine} ${res.text.slice(0, 200)}`;

/** The upstream's counters, after a moment for anything still in flight. */
async function upstreamCounts(): Promise<{ requests: number; upgrades: number }> {
  await sleep(100);
  return { requests: up.requests.length, upgrades: up.upgrades.length };
}

/**
 * Send `p` as an upgrade and as the same GET without it (each from its own
 * fresh client address unless `client` is given), and check both are refused
 * with `status` and `code` and the upstream saw neither.
 */
async function refusedAlike(p: string, headers: string[], status: number, code: string, client?: string): Promise<void> {
  const before = await upstreamCounts();
  const upgrade = await rawGet(p, [...UPGRADE, wsKey(), ...headers, `X-Forwarded-For: ${client ?? freshClient()}`]);
  const plain = await rawGet(p, [...headers, `X-Forwarded-For: ${client ?? freshClient()}`]);
  assert.equal(upgrade.status, status, `the upgrade: ${describe(upgrade)}`);
  assert.equal(codeOf(upgrade), code, `the upgrade's problem code: ${describe(upgrade)}`);
  assert.equal(plain.status, status, `the GET: ${describe(plain)}`);
  assert.equal(codeOf(plain), code, `the GET's problem code: ${describe(plain)}`);
  assert.match(upgrade.headers['content-type'] ?? '', /^application\/problem\+json/);
  assert.equal(upgrade.raw.toString('latin1').includes('101 Switching Protocols'), false, 'the upgrade never switched protocols');
  assert.deepEqual(await upstreamCounts(), before, 'the upstream saw no request and no upgrade');
}

const bearer = (t: string) => `Authorization: Bearer ${t}`;

/** Open a WebSocket through the gateway; resolves with the socket or the refusal's status. */
function openWs(p: string, headers: Record<string, string>): Promise<{ ws?: WebSocket; status?: number; body?: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(gatewayUrl.replace('https', 'wss') + p, { ca, headers });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', () => resolve({ status: res.statusCode, body }));
    });
    ws.once('error', (error) => reject(error));
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    ws.once('message', (m) => resolve(String(m)));
    ws.once('error', reject);
    ws.send(text);
  });
}

// ---------------------------------------------------------------------------
// Refusals: the upgrade is answered exactly like the GET, and nothing goes upstream

test('no token: the upgrade and the GET are both 401 unauthorized', async () => {
  await refusedAlike('/ws/lobby', [], 401, 'unauthorized');
  // and the challenge a client needs comes with the upgrade's refusal too
  const res = await rawGet('/ws/lobby', [...UPGRADE, wsKey(), `X-Forwarded-For: ${freshClient()}`]);
  assert.match(res.headers['www-authenticate'] ?? '', /^Bearer realm="edge"/, describe(res));
});

test('a forged token (unknown key) and a malformed one: 401 unauthorized for both', async () => {
  await refusedAlike('/ws/lobby', [bearer(await iss.forge())], 401, 'unauthorized');
  await refusedAlike('/ws/lobby', [bearer('not.a.jwt')], 401, 'unauthorized');
});

test("a valid token without the route's scope: 403 insufficient_scope for both", async () => {
  await refusedAlike('/ws/lobby', [bearer(await iss.sign({ scope: 'chat:read' }))], 403, 'insufficient_scope');
});

test('over the rate limit: 429 too_many_requests for both', async () => {
  const client = freshClient();
  // spend the address's 3 requests (refused ones count: the rate phase runs before authentication)
  for (let i = 0; i < 3; i++) {
    const r = await rawGet('/ws/lobby', [`X-Forwarded-For: ${client}`]);
    assert.equal(r.status, 401, describe(r));
  }
  await refusedAlike('/ws/lobby', [bearer(await iss.sign())], 429, 'too_many_requests', client);
});

test('from a denied address: 403 forbidden for both, whatever the token', async () => {
  await refusedAlike('/ws/lobby', [bearer(await iss.sign())], 403, 'forbidden', '10.66.6.6');
  await refusedAlike('/ws/lobby', [], 403, 'forbidden', '10.66.7.7');
});

test('a Cedar forbid (a muted caller): 403 forbidden for both', async () => {
  await refusedAlike('/ws/lobby', [bearer(await iss.sign({ scope: 'chat:join chat:muted' }))], 403, 'forbidden');
});

test('a contract violation in the query: 422 unprocessable for both', async () => {
  await refusedAlike('/ws/lobby?room=NOT-LOWER', [bearer(await iss.sign())], 422, 'unprocessable');
  await refusedAlike('/ws/lobby?evil=1', [bearer(await iss.sign())], 422, 'unprocessable');
});

test('Connection: upgrade without an Upgrade header is an ordinary GET, refused and passed alike', async () => {
  const before0 = await upstreamCounts();
  const half = await rawGet('/ws/lobby', ['Connection: upgrade', wsKey(), 'Sec-WebSocket-Version: 13', `X-Forwarded-For: ${freshClient()}`]);
  const plain = await rawGet('/ws/lobby', [`X-Forwarded-For: ${freshClient()}`]);
  assert.equal(half.status, 401, describe(half));
  assert.equal(codeOf(half), 'unauthorized', describe(half));
  assert.equal(plain.status, 401, describe(plain));
  assert.equal(codeOf(plain), 'unauthorized', describe(plain));
  assert.deepEqual(await upstreamCounts(), before0, 'the upstream saw neither');
  // with a valid token it is a plain GET: the upstream sees one HTTP request and no upgrade
  const before = await upstreamCounts();
  const res = await rawGet('/ws/lobby', ['Connection: upgrade', bearer(await iss.sign()), `X-Forwarded-For: ${freshClient()}`]);
  assert.equal(res.status, 200, describe(res));
  const after = await upstreamCounts();
  assert.deepEqual(after, { requests: before.requests + 1, upgrades: before.upgrades });
  assert.equal(up.requests.at(-1)!.headers.upgrade, undefined);
});

test('an Upgrade other than websocket (h2c): 401 like the GET without a token; 400 with one, and never upstream', async () => {
  const h2c = ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA'];
  const before = await upstreamCounts();
  const plain = await rawGet('/ws/lobby', [`X-Forwarded-For: ${freshClient()}`]);
  const anonymous = await rawGet('/ws/lobby', [...h2c, `X-Forwarded-For: ${freshClient()}`]);
  assert.equal(anonymous.status, plain.status, describe(anonymous));
  assert.equal(anonymous.status, 401, describe(anonymous));
  assert.equal(codeOf(anonymous), codeOf(plain));
  const withToken = await rawGet('/ws/lobby', [...h2c, bearer(await iss.sign()), `X-Forwarded-For: ${freshClient()}`]);
  assert.equal(withToken.status, 400, describe(withToken));
  assert.equal(codeOf(withToken), 'unsupported_upgrade', describe(withToken));
  assert.equal(withToken.raw.toString('latin1').includes('101 Switching Protocols'), false);
  assert.deepEqual(await upstreamCounts(), before, 'the upstream saw none of them');
});

test('HTTP/2 extended CONNECT (:protocol websocket) is refused or reset and never reaches the upstream', async () => {
  const token = await iss.sign();
  const before = await upstreamCounts();
  const session = http2.connect(gatewayUrl, { ca });
  session.on('error', () => undefined);
  try {
    const settings = await new Promise<http2.Settings>((resolve) => session.once('remoteSettings', resolve));
    assert.notEqual(settings.enableConnectProtocol, true, 'the gateway does not offer RFC 8441 WebSockets over HTTP/2');
    const outcome = (headers: http2.OutgoingHttpHeaders) =>
      new Promise<{ status?: number; rst?: number; body: string }>((resolve) => {
        let status: number | undefined;
        let body = '';
        let stream: http2.ClientHttp2Stream;
        try {
          stream = session.request(headers);
        } catch (error) {
          // the client itself refused to send it: nothing was sent
          resolve({ rst: -1, body: String((error as Error).message) });
          return;
        }
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (c: Buffer) => (body += c.toString()));
        stream.on('error', () => undefined);
        stream.on('close', () => resolve({ status, rst: stream.rstCode, body }));
        stream.end();
      });
    // a sanity check that the session works: an ordinary GET with the token is proxied
    const ok = await outcome({ ':method': 'GET', ':path': '/ws/lobby', authorization: `Bearer ${token}`, 'x-forwarded-for': freshClient() });
    assert.equal(ok.status, 200, ok.body);
    const base = await upstreamCounts();
    assert.deepEqual(base, { requests: before.requests + 1, upgrades: before.upgrades });
    // RFC 8441 WebSockets: the gateway never enabled them, so the stream is reset (PROTOCOL_ERROR) or refused
    const extended = await outcome({
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'https',
      ':path': '/ws/lobby',
      ':authority': 'localhost',
      'sec-websocket-version': '13',
      authorization: `Bearer ${token}`,
      'x-forwarded-for': freshClient(),
    });
    assert.ok(extended.status === undefined ? extended.rst !== 0 : extended.status >= 400, `refused or reset: ${JSON.stringify(extended)}`);
    // a plain CONNECT reaches the gateway and gets the same 400 problem as on HTTP/1
    const plain = await outcome({ ':method': 'CONNECT', ':authority': 'localhost:443', authorization: `Bearer ${token}`, 'x-forwarded-for': freshClient() });
    assert.equal(plain.status, 400, JSON.stringify(plain));
    assert.equal((JSON.parse(plain.body) as { code: string }).code, 'unsupported_target');
    assert.deepEqual(await upstreamCounts(), base, 'nothing reached the upstream');
  } finally {
    session.close();
  }
});

// ---------------------------------------------------------------------------
// The positive case

test('with a valid token the upgrade is tunnelled with the identity token, never the client credential', async () => {
  const token = await iss.sign();
  const client = freshClient();
  const before = await upstreamCounts();
  const { ws, status, body } = await openWs('/ws/lobby?room=main', { authorization: `Bearer ${token}`, 'x-forwarded-for': client });
  assert.ok(ws, `the upgrade was refused: ${status} ${body}`);
  try {
    assert.equal(await echo(ws, 'hello'), 'echo hello');
    assert.equal(await echo(ws, 'again'), 'echo again');
  } finally {
    ws.close();
  }
  const after = await upstreamCounts();
  assert.deepEqual(after, { requests: before.requests, upgrades: before.upgrades + 1 }, 'one upgrade, no plain request');
  const seen = up.upgrades.at(-1)!;
  assert.equal(seen.url, '/ws/lobby?room=main');
  assert.equal(seen.headers.authorization, undefined, "the client's Authorization never goes upstream");
  const identity = seen.headers['x-gatehouse-identity'];
  assert.equal(typeof identity, 'string', 'the upstream got the identity token');
  assert.notEqual(identity, token);
  const jwks = JSON.parse(readFileSync(identityKeyPaths(stateDir, 'edge').jwks, 'utf8'));
  const { payload } = await jwtVerify(String(identity), createLocalJWKSet(jwks), {
    issuer: 'spiffe://t/zone/edge/gateway',
    audience: 'spiffe://t/zone/edge/svc/chat',
  });
  assert.equal(payload.sub, 'alice');
  assert.match(String(payload.scope), /\bchat:join\b/);
  assert.equal(seen.headers.upgrade?.toLowerCase(), 'websocket');
  assert.equal(seen.headers['x-forwarded-for'], `${client}, 127.0.0.1`);
});

test('upgrades count against the rate limit: 3 pass, the 4th gets 429 (and so does a GET)', async () => {
  const client = freshClient();
  const headers = { authorization: `Bearer ${await iss.sign()}`, 'x-forwarded-for': client };
  const before = await upstreamCounts();
  for (let i = 0; i < 3; i++) {
    const { ws, status, body } = await openWs('/ws/lobby', headers);
    assert.ok(ws, `upgrade ${i + 1} was refused: ${status} ${body}`);
    assert.equal(await echo(ws, `n${i}`), `echo n${i}`);
    ws.close();
  }
  const fourth = await openWs('/ws/lobby', headers);
  const opened = fourth.ws !== undefined;
  fourth.ws?.close();
  assert.equal(opened, false, 'the 4th upgrade was refused');
  assert.equal(fourth.status, 429, fourth.body);
  assert.equal(JSON.parse(fourth.body!).code, 'too_many_requests');
  const raw = await rawGet('/ws/lobby', [...UPGRADE, wsKey(), bearer(await iss.sign()), `X-Forwarded-For: ${client}`]);
  assert.equal(raw.status, 429, describe(raw));
  assert.ok(Number(raw.headers['retry-after']) >= 1, `Retry-After on the refused upgrade: ${describe(raw)}`);
  const get = await rawGet('/ws/lobby', [bearer(await iss.sign()), `X-Forwarded-For: ${client}`]);
  assert.equal(get.status, 429, describe(get));
  assert.deepEqual(await upstreamCounts(), { requests: before.requests, upgrades: before.upgrades + 3 });
});

test(
  'a concurrency limit holds its slot while the tunnel is open: a second WebSocket of the same key is 429 until the first closes',
  async () => {
    const headers = { authorization: `Bearer ${await iss.sign()}`, 'x-forwarded-for': freshClient() };
    const first = await openWs('/ws-one', headers);
    assert.ok(first.ws, `the first upgrade passes: ${first.status} ${first.body}`);
    let second: Awaited<ReturnType<typeof openWs>> | undefined;
    try {
      assert.equal(await echo(first.ws, 'still here'), 'echo still here');
      second = await openWs('/ws-one', headers);
      assert.ok(second.ws === undefined, 'a second WebSocket while the first is open is refused (it was opened)');
      assert.equal(second.status, 429, second.body);
    } finally {
      second?.ws?.close();
      first.ws.close();
    }
    // once the first tunnel has closed, the slot is free again
    await sleep(200);
    const third = await openWs('/ws-one', headers);
    assert.ok(third.ws, `after the first closed, a new upgrade passes: ${third.status} ${third.body}`);
    third.ws.close();
  },
);
