// Gateway authentication and authorization with tokens minted by the real zone
// authority, and tokens forged with jose.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import tls from 'node:tls';
import { once } from 'node:events';
import path from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { SignJWT, generateKeyPair, exportJWK, jwtVerify, createLocalJWKSet, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { startHarness, REDIRECT, type Harness } from './support/authority-harness.ts';
import { signIn, codeTokens } from './support/authority-flows.ts';
import { startUpstream, type Upstream } from './support/gateway-fixture.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { addApiKey, revokeApiKey } from '../src/gateway/policies/authentication/api-keys.ts';
import { identityKeyPaths } from '../src/gateway/policies/authentication/identity-token.ts';
import { createLogger } from '../src/shared/logger.ts';
import { sign as cryptoSign, KeyObject, type webcrypto } from 'node:crypto';
import { openDevCa } from '../src/shared/dev-ca.ts';

const quiet = createLogger({ name: 'test', level: 'silent' });
let h: Harness;
let up: Upstream;
let gw: RunningGateway;
let agent: Agent;
let stateDir: string;
let serviceToken: string;
let clientId: string;
let forger: {
  issuer: string;
  jwksUri: string;
  jwksHits: () => number;
  setFeed(up: boolean): void;
  sign(claims: Record<string, unknown>, header?: Record<string, unknown>): Promise<string>;
  /** Signed without jose's checks (jose refuses to even produce some of these headers). */
  signRaw(claims: Record<string, unknown>, header: Record<string, unknown>): string;
  close(): void;
};
let clockOffset = 0;
const clock = { now: () => Date.now() + clockOffset };

/** A second, test-controlled issuer that the zone trusts, for tokens the real authority would never mint. */
async function startForger(dir: string) {
  const ca = await openDevCa(dir);
  const pair = await ca.issueServer(['127.0.0.1']);
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'forger-1', alg: 'EdDSA', use: 'sig' };
  let hits = 0;
  let feedUp = true;
  const server = https.createServer(pair, (req, res) => {
    if (req.url?.startsWith('/revocations')) {
      // a revocation feed whose health the test decides
      res.writeHead(feedUp ? 200 : 503, { 'content-type': 'application/json' });
      res.end(feedUp ? JSON.stringify({ jtis: [], until: String(Date.now()) }) : '{}');
      return;
    }
    hits++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer: base,
    jwksUri: `${base}/jwks`,
    jwksHits: () => hits,
    setFeed: (up: boolean) => {
      feedUp = up;
    },
    async sign(claims: Record<string, unknown>, header: Record<string, unknown> = {}) {
      const now = Math.floor(clock.now() / 1000);
      return new SignJWT({ iss: base, aud: 'urn:test:edge', sub: 'mallory', iat: now, exp: now + 300, jti: crypto.randomUUID(), scope: 'orders:read', ...claims })
        .setProtectedHeader({ alg: 'EdDSA', kid: 'forger-1', typ: 'at+jwt', ...header })
        .sign(privateKey);
    },
    signRaw(claims: Record<string, unknown>, header: Record<string, unknown>) {
      const now = Math.floor(clock.now() / 1000);
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      const input = `${enc({ alg: 'EdDSA', kid: 'forger-1', typ: 'at+jwt', ...header })}.${enc({ iss: base, aud: 'urn:test:edge', sub: 'mallory', iat: now, exp: now + 300, scope: 'orders:read', ...claims })}`;
      return `${input}.${cryptoSign(null, Buffer.from(input), KeyObject.from(privateKey as webcrypto.CryptoKey)).toString('base64url')}`;
    },
    close: () => server.close(),
  };
}

const routes = `
    routes:
      - { name: open, path: /open, service: up, auth: anonymous }
      - { name: token, path: /token, service: up, auth: jwt }
      - { name: read, path: /read, service: up, auth: { scopes: [orders:read] } }
      - { name: write, path: /write, service: up, auth: { scopes: { any: [orders:write, admin] } } }
      - { name: mfa, path: /mfa, service: up, auth: { scopes: [orders:read], mfa: required } }
      - { name: roles, path: /roles, service: up, auth: { roles: [auditor] } }
      - { name: partner, path: /partner, service: up, auth: api_key }
      - { name: partner-q, path: /partner-q, service: up, auth: { accept: [api_key], apiKeyQuery: api_key } }
      - { name: both, path: /both, service: up, auth: { accept: [jwt, api_key], prefer: jwt } }
      - { name: both-strict, path: /both-strict, service: up, auth: { accept: [jwt, api_key] } }
      - { name: forward, path: /forward, service: up, auth: { forwardToken: true } }
      - { name: opaque, path: /opaque, service: up, auth: { accept: [introspection], scopes: [orders:read] } }
      - { name: checked, path: /checked, methods: [POST], service: up, auth: jwt, validate: { body: { type: object } } }
      - { name: upload, path: /upload, methods: [POST], service: up, auth: jwt }`;

before(async () => {
  h = await startHarness({ zone: 'edge' });
  stateDir = path.join(h.dir, 'state');
  up = await startUpstream();
  forger = await startForger(path.join(h.dir, 'forger'));
  // the forger's CA is trusted through the dev CA bundle the gateway reads: reuse one CA for both
  const forgerCa = readFileSync(path.join(h.dir, 'forger', 'tls', 'dev-ca.pem'), 'utf8');
  writeFileSync(path.join(stateDir, 'tls', 'dev-ca.pem'), readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem'), 'utf8') + forgerCa);
  const own = JSON.parse(readFileSync(path.join(stateDir, 'authority', 'edge', 'public.json'), 'utf8'));
  const service = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  process.env.GH_TEST_INTROSPECTION_SECRET = service.client_secret;
  const file = path.join(h.dir, 'gateway.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: test.local
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    authentication:
      issuers:
        - { issuer: '${own.issuer}', jwksUri: '${own.jwks_uri}', audiences: ['urn:gatehouse:test.local:edge'] }
        - { issuer: '${forger.issuer}', jwksUri: '${forger.jwksUri}', audiences: ['urn:test:edge'] }
      unknownKidRefetchSeconds: 30
      introspection: { endpoint: '${h.auth.introspectionEndpoint}', clientId: '${service.client_id}', clientSecretEnv: GH_TEST_INTROSPECTION_SECRET, cacheSeconds: 1 }
    authFailures: { freeFailures: 5000, maxFailures: 10000 }
${routes}
services:
  up: { zone: edge, upstream: '${up.url}' }
`,
  );
  gw = await startGateway({ config: file, zone: 'edge', stateDir, logger: quiet, accessLog: false, clock });
  agent = new Agent({ connect: { ca: readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem')) } });
  clientId = service.client_id;
  const config = await h.discover(service.client_id, oidc.ClientSecretBasic(service.client_secret!));
  serviceToken = (await oidc.clientCredentialsGrant(config, { scope: 'orders:read' })).access_token;
});

after(async () => {
  await agent.close();
  await gw.close();
  await up.close();
  forger.close();
  await h.close();
});

const call = (p: string, headers: Record<string, string> = {}) => request(gw.url + p, { dispatcher: agent, headers });
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

async function expect401(p: string, headers: Record<string, string>, error?: RegExp) {
  const before = up.seen.length;
  const res = await call(p, headers);
  const body = await res.body.text();
  assert.equal(res.statusCode, 401, `${p}: ${body}`);
  assert.match(String(res.headers['www-authenticate']), /^Bearer realm="edge"/);
  if (error) assert.match(String(res.headers['www-authenticate']), error);
  assert.equal(JSON.parse(body).code, 'unauthorized');
  assert.equal(up.seen.length, before, 'the upstream never saw it');
}

test('anonymous routes pass; token routes without a token get 401 with a bare Bearer challenge', async () => {
  assert.equal((await call('/open')).statusCode, 200);
  const res = await call('/token');
  assert.equal(res.statusCode, 401);
  assert.equal(res.headers['www-authenticate'], 'Bearer realm="edge"');
  await res.body.dump();
});

test('a real access token passes; the upstream gets a signed identity token and never the credential', async () => {
  const before = up.seen.length;
  const res = await call('/read', bearer(serviceToken));
  assert.equal(res.statusCode, 200);
  await res.body.dump();
  const seen = up.seen[before];
  assert.equal(seen.headers.authorization, undefined);
  const idToken = String(seen.headers['x-gatehouse-identity']);
  const jwks = JSON.parse(readFileSync(identityKeyPaths(stateDir, 'edge').jwks, 'utf8'));
  const { payload, protectedHeader } = await jwtVerify(idToken, createLocalJWKSet(jwks), {
    issuer: 'spiffe://test.local/zone/edge/gateway',
    audience: 'spiffe://test.local/zone/edge/svc/up',
  });
  assert.equal(protectedHeader.alg, 'EdDSA');
  assert.equal(payload.sub, clientId);
  assert.equal(payload.client_id, clientId);
  assert.equal(payload.scope, 'orders:read');
  assert.ok(payload.exp! - payload.iat! <= 60);
  assert.ok(typeof payload.orig_jti === 'string');
  const forwarded = await call('/forward', bearer(serviceToken));
  await forwarded.body.dump();
  assert.equal(up.seen.at(-1)!.headers.authorization, `Bearer ${serviceToken}`, 'forwardToken: true keeps it');
});

test('a route that reads the body for its contract still sends exactly one identity token, request after request', async () => {
  for (let i = 0; i < 3; i++) {
    const before = up.seen.length;
    const res = await request(gw.url + '/checked', {
      dispatcher: agent,
      method: 'POST',
      headers: { ...bearer(serviceToken), 'content-type': 'application/json' },
      body: '{}',
    });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    const raw = up.seen[before].rawHeaders;
    const ids = raw.filter((v, j) => j % 2 === 0 && v.toLowerCase() === 'x-gatehouse-identity');
    assert.equal(ids.length, 1, 'one identity header');
    assert.equal(String(up.seen[before].headers['x-gatehouse-identity']).split('.').length, 3, 'a compact JWS, not two joined');
  }
});

test('a client cannot set the identity header itself', async () => {
  const before = up.seen.length;
  const res = await call('/open', { 'x-gatehouse-identity': 'forged' });
  await res.body.dump();
  assert.equal(up.seen[before].headers['x-gatehouse-identity'], undefined);
});

test('scopes: all-of and any-of; 403 says insufficient_scope', async () => {
  const res = await call('/write', bearer(serviceToken));
  assert.equal(res.statusCode, 403);
  assert.match(String(res.headers['www-authenticate']), /error="insufficient_scope", scope="orders:write admin"/);
  assert.equal(((await res.body.json()) as { code: string }).code, 'insufficient_scope');
  const roles = await call('/roles', bearer(serviceToken));
  assert.equal(roles.statusCode, 403);
  await roles.body.dump();
});

test('mfa: required refuses a client token and accepts a user who signed in with TOTP', async () => {
  const noMfa = await call('/mfa', bearer(serviceToken));
  assert.equal(noMfa.statusCode, 403);
  await noMfa.body.dump();
  const web = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const config = await h.discover(web.client_id, oidc.ClientSecretBasic(web.client_secret!), { redirect_uris: [REDIRECT] });
  const tokens = await codeTokens(config, await signIn(h, config, h.auth.devCredentials!.users[0]));
  const ok = await call('/mfa', bearer(tokens.access_token));
  assert.equal(ok.statusCode, 200, await ok.body.text());
  // the same sign-in's ID token (typ JWT, aud = the client) and refresh token are no access tokens
  assert.ok(tokens.id_token);
  await expect401('/read', bearer(tokens.id_token), /invalid_token/);
  if (tokens.refresh_token) await expect401('/read', bearer(tokens.refresh_token), /invalid_token/);
});

test('forged tokens: none, HMAC with the public key, altered payload, stripped or zeroed signature', async () => {
  const [h64, p64, s64] = serviceToken.split('.');
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const header = JSON.parse(Buffer.from(h64, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(p64, 'base64url').toString());
  for (const alg of ['none', 'None', 'NONE']) await expect401('/read', bearer(`${enc({ ...header, alg })}.${p64}.`), /invalid_token/);
  await expect401('/read', bearer(`${enc({ ...header, alg: 'none' })}.${p64}.${s64}`), /invalid_token/);
  const jwks = JSON.parse(readFileSync(path.join(stateDir, 'authority', 'edge', 'public.json'), 'utf8')).jwks.keys[0];
  const { createHmac } = await import('node:crypto');
  for (const secret of [jwks.x, Buffer.from(jwks.x, 'base64url'), JSON.stringify(jwks)]) {
    const hs = `${enc({ ...header, alg: 'HS256' })}.${p64}`;
    await expect401('/read', bearer(`${hs}.${createHmac('sha256', secret).update(hs).digest('base64url')}`), /invalid_token/);
  }
  await expect401('/read', bearer(`${h64}.${enc({ ...payload, scope: 'orders:read orders:write', sub: 'admin' })}.${s64}`), /invalid_token/);
  await expect401('/read', bearer(`${h64}.${p64}.`), /invalid_request|invalid_token/);
  await expect401('/read', bearer(`${h64}.${p64}.${Buffer.alloc(64).toString('base64url')}`), /invalid_token/);
});

test('forged headers: kid traversal and injection, embedded keys (nothing is fetched from the token)', async () => {
  const hits = forger.jwksHits();
  for (const kid of ['../../../etc/passwd', "' OR 1=1 --", 'https://evil.example/k', '%2e%2e%2f']) {
    await expect401('/read', bearer(await forger.sign({}, { kid })), /invalid_token/);
  }
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const embedded = await exportJWK(publicKey);
  const now = Math.floor(Date.now() / 1000);
  const self = await new SignJWT({ iss: forger.issuer, aud: 'urn:test:edge', sub: 'x', iat: now, exp: now + 60 })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', jwk: embedded, jku: 'https://127.0.0.1:1/jwks', x5u: 'https://127.0.0.1:1/x', kid: 'evil' })
    .sign(privateKey);
  await expect401('/read', bearer(self), /invalid_token/);
  assert.ok(forger.jwksHits() - hits <= 1, 'unknown kids refetch the issuer JWKS at most once per interval');
});

test('claims: expired, not yet valid, missing or string exp, wrong aud, wrong typ, unknown crit, untrusted issuer', async () => {
  const now = Math.floor(Date.now() / 1000);
  assert.equal((await call('/read', bearer(await forger.sign({})))).statusCode, 200, 'the forger issuer is trusted');
  await expect401('/read', bearer(await forger.sign({ exp: now - 31, iat: now - 400 })), /expired/);
  await expect401('/read', bearer(await forger.sign({ nbf: now + 120 })), /invalid_token/);
  await expect401('/read', bearer(await forger.sign({ iat: now + 120 })), /invalid_token/);
  await expect401('/read', bearer(await forger.sign({ exp: undefined })), /invalid_token/);
  await expect401('/read', bearer(await forger.sign({ exp: String(now + 300) })), /invalid_token/);
  await expect401('/read', bearer(await forger.sign({ aud: 'urn:gatehouse:test.local:other' })), /invalid_token/);
  await expect401('/read', bearer(await forger.sign({}, { typ: 'JWT' })), /invalid_token/);
  assert.equal((await call('/read', bearer(forger.signRaw({}, {})))).statusCode, 200, 'raw signing is sound');
  await expect401('/read', bearer(forger.signRaw({}, { crit: ['x-unknown'], 'x-unknown': 1 })), /invalid_token/);
  await expect401('/read', bearer(await forger.sign({ iss: 'https://127.0.0.1:1' })), /invalid_token/);
  assert.equal((await call('/read', bearer(await forger.sign({ exp: now - 20, iat: now - 300 })))).statusCode, 200, 'within the 30 s leeway');
});

test('the gateway clock decides: a real token is refused once expired', async () => {
  clockOffset = 10 * 60_000;
  try {
    await expect401('/read', bearer(serviceToken), /expired/);
  } finally {
    clockOffset = 0;
  }
});

test('oversized tokens and thousands of random kids stay bounded', async () => {
  await expect401('/read', bearer('a'.repeat(9000) + '.b.c'), /too large/);
  // 64 KB: refused before any parsing (the request head limit), never proxied
  const before = up.seen.length;
  const h1 = new Agent({ connect: { ca: readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem')) }, allowH2: false });
  try {
    const huge = await request(gw.url + '/read', { dispatcher: h1, headers: bearer('a'.repeat(64 * 1024) + '.b.c') });
    assert.ok([401, 431].includes(huge.statusCode), String(huge.statusCode));
    await huge.body.dump();
  } finally {
    await h1.close();
  }
  assert.equal(up.seen.length, before);
  const hits = forger.jwksHits();
  for (let i = 0; i < 300; i++) {
    const res = await call('/read', bearer(await forger.sign({}, { kid: `random-${i}` })));
    assert.equal(res.statusCode, 401);
    await res.body.dump();
  }
  assert.ok(forger.jwksHits() - hits <= 1, `JWKS fetched ${forger.jwksHits() - hits} times for 300 unknown kids`);
});

test('API keys: valid on their routes only, never from the query string unless the route says so, revocable', async () => {
  const { key, prefix } = addApiKey(stateDir, 'edge', { consumer: 'acme', scopes: ['orders:read'], tier: 'gold' });
  await new Promise((r) => setTimeout(r, 2_200)); // the gateway re-reads keys every 2 s
  assert.equal((await call('/partner', { 'x-api-key': key })).statusCode, 200);
  assert.equal(up.seen.at(-1)!.headers['x-api-key'], undefined, 'the key is not forwarded');
  await expect401('/partner', { 'x-api-key': key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A') });
  await expect401('/read', { 'x-api-key': key });
  await expect401(`/partner?api_key=${key}`, {});
  assert.equal((await call(`/partner-q?api_key=${key}`)).statusCode, 200);
  // a key from the query string is stripped like the header: the rest of the query arrives byte for byte
  assert.equal((await call(`/partner-q?a=1&api_key=${key}&b=%2F+c&api%5Fkey=again&c`)).statusCode, 200);
  assert.equal(up.seen.at(-1)!.url, '/partner-q?a=1&b=%2F+c&c');
  // the same over HTTP/2
  const session = http2.connect(gw.url, { ca: readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem')) });
  try {
    const stream = session.request({ ':path': `/partner-q?api_key=${key}&z=9` });
    const [headers] = (await once(stream, 'response')) as [http2.IncomingHttpHeaders];
    stream.resume();
    await once(stream, 'end');
    assert.equal(headers[':status'], 200);
    assert.equal(up.seen.at(-1)!.url, '/partner-q?z=9');
  } finally {
    session.close();
  }
  // a token and an API key: judged on the preferred one, or refused
  const both = await call('/both', { ...bearer(serviceToken), 'x-api-key': 'gh_bogus000_' + 'x'.repeat(43) });
  assert.equal(both.statusCode, 200);
  const strict = await call('/both-strict', { ...bearer(serviceToken), 'x-api-key': key });
  assert.equal(strict.statusCode, 400);
  await strict.body.dump();
  assert.equal(revokeApiKey(stateDir, 'edge', prefix), true);
  await new Promise((r) => setTimeout(r, 2_200));
  await expect401('/partner', { 'x-api-key': key });
});

test('a source whose credentials keep failing is slowed, then blocked, even with a valid token afterwards', async () => {
  const file = path.join(h.dir, 'strict.yaml');
  writeFileSync(
    file,
    readFileSync(path.join(h.dir, 'gateway.yaml'), 'utf8').replace(
      'authFailures: { freeFailures: 5000, maxFailures: 10000 }',
      'authFailures: { freeFailures: 1, maxFailures: 3, lockoutSeconds: 60 }',
    ),
  );
  const strict = await startGateway({ config: file, zone: 'edge', stateDir, logger: quiet, accessLog: false, clock });
  try {
    const at = (t: string) => request(strict.url + '/read', { dispatcher: agent, headers: bearer(t) });
    const first = await at('garbage.garbage.garbage');
    assert.equal(first.statusCode, 401);
    await first.body.dump();
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await at('garbage.garbage.garbage');
      statuses.push(r.statusCode);
      if (r.statusCode === 429) assert.ok(Number(r.headers['retry-after']) >= 1);
      await r.body.dump();
    }
    assert.ok(statuses.includes(429), `slowed or blocked: ${statuses}`);
    const valid = await at(serviceToken);
    assert.equal(valid.statusCode, 429, 'a blocked source is refused before its credential is read');
    await valid.body.dump();
  } finally {
    await strict.close();
  }
});

test('opaque tokens through RFC 7662 introspection: active passes, revoked stops within the cache time', async () => {
  const service = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  const config = await h.discover(service.client_id, oidc.ClientSecretBasic(service.client_secret!));
  const token = (await oidc.clientCredentialsGrant(config, { scope: 'orders:read' })).access_token;
  const ok = await call('/opaque', bearer(token));
  assert.equal(ok.statusCode, 200, await ok.body.text());
  await oidc.tokenRevocation(config, token);
  await new Promise((r) => setTimeout(r, 1_100));
  await expect401('/opaque', bearer(token), /not active/);
  await expect401('/opaque', bearer('an-opaque-token-nobody-issued'), /not active/);
});

test('revocation feed: a revoked JWT stops passing within the poll interval, even from the token cache', async () => {
  const feedClient = await h.auth.admin.clients.add({
    grantTypes: ['client_credentials'],
    scope: '',
    authMethod: 'client_secret_basic',
    revocationFeed: true,
  });
  process.env.GH_TEST_FEED_SECRET = feedClient.client_secret;
  const own = JSON.parse(readFileSync(path.join(stateDir, 'authority', 'edge', 'public.json'), 'utf8'));
  const file = path.join(h.dir, 'feed.yaml');
  writeFileSync(
    file,
    readFileSync(path.join(h.dir, 'gateway.yaml'), 'utf8').replace(
      '      unknownKidRefetchSeconds: 30\n',
      `      unknownKidRefetchSeconds: 30\n      revocationFeed: { url: '${own.issuer}/revocations', clientId: '${feedClient.client_id}', clientSecretEnv: GH_TEST_FEED_SECRET, pollSeconds: 1 }\n`,
    ),
  );
  const withFeed = await startGateway({ config: file, zone: 'edge', stateDir, logger: quiet, accessLog: false, clock });
  try {
    const service = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials'))!;
    const config = await h.discover(service.client_id, oidc.ClientSecretBasic(service.client_secret!));
    const token = (await oidc.clientCredentialsGrant(config, { scope: 'orders:read' })).access_token;
    const at = () => request(withFeed.url + '/read', { dispatcher: agent, headers: bearer(token) });
    const ok = await at();
    assert.equal(ok.statusCode, 200, 'valid, and now in the verified-token cache');
    await ok.body.dump();
    await oidc.tokenRevocation(config, token);
    let status = 200;
    for (let i = 0; i < 40 && status === 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await at();
      status = r.statusCode;
      await r.body.dump();
    }
    assert.equal(status, 401, 'refused within a few poll intervals');
    const again = await at();
    assert.match(String(again.headers['www-authenticate']), /revoked/);
    await again.body.dump();
  } finally {
    await withFeed.close();
  }
});

test('revocation feed gone stale: the issuer it covers fails closed (503 + Retry-After), other issuers pass, and it recovers', async () => {
  process.env.GH_TEST_FORGER_FEED_SECRET = 'not-checked-by-the-test-feed';
  const feedYaml = (extra: string) =>
    readFileSync(path.join(h.dir, 'gateway.yaml'), 'utf8').replace(
      '      unknownKidRefetchSeconds: 30\n',
      `      unknownKidRefetchSeconds: 30\n      revocationFeed: { url: '${forger.issuer}/revocations', clientId: gw, clientSecretEnv: GH_TEST_FORGER_FEED_SECRET, pollSeconds: 1, maxStaleSeconds: 2${extra} }\n`,
    );
  const file = path.join(h.dir, 'stale.yaml');
  writeFileSync(file, feedYaml(''));
  const forged = await forger.sign({});
  const wait = async (g: { url: string }, token: string, want: number) => {
    let status = 0;
    let last = '';
    for (let i = 0; i < 60 && status !== want; i++) {
      const r = await request(g.url + '/read', { dispatcher: agent, headers: bearer(token) });
      status = r.statusCode;
      if (status === want) return r;
      last = `${status} ${String(r.headers['www-authenticate'] ?? '')}`;
      await r.body.dump();
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.fail(`never answered ${want} (last ${last})`);
  };
  // the dev CA bundle is rewritten when a gateway starts: trust the forger's CA again
  const start = () => {
    const caFile = path.join(stateDir, 'tls', 'dev-ca.pem');
    const forgerCa = readFileSync(path.join(h.dir, 'forger', 'tls', 'dev-ca.pem'), 'utf8');
    if (!readFileSync(caFile, 'utf8').includes(forgerCa.trim())) writeFileSync(caFile, readFileSync(caFile, 'utf8') + forgerCa);
    return startGateway({ config: file, zone: 'edge', stateDir, logger: quiet, accessLog: false, clock });
  };
  forger.setFeed(true);
  const g = await start();
  try {
    await (await wait(g, forged, 200)).body.dump();
    forger.setFeed(false);
    const stale = await wait(g, forged, 503);
    assert.equal(stale.headers['retry-after'], '1');
    assert.equal(((await stale.body.json()) as { code: string }).code, 'revocation_status_unknown');
    // the zone authority's own tokens are not answered for by this feed
    const own = await request(g.url + '/read', { dispatcher: agent, headers: bearer(serviceToken) });
    assert.equal(own.statusCode, 200);
    await own.body.dump();
    forger.setFeed(true);
    await (await wait(g, forged, 200)).body.dump();
  } finally {
    await g.close();
  }
  // a gateway that starts while its feed is down refuses the covered tokens from the first request
  forger.setFeed(false);
  const cold = await start();
  try {
    const r = await request(cold.url + '/read', { dispatcher: agent, headers: bearer(forged) });
    assert.equal(r.statusCode, 503);
    await r.body.dump();
  } finally {
    await cold.close();
  }
  // whenStale: accept lets them through (and logs), for those who choose availability
  writeFileSync(file, feedYaml(', whenStale: accept'));
  const lenient = await start();
  try {
    const r = await request(lenient.url + '/read', { dispatcher: agent, headers: bearer(forged) });
    assert.equal(r.statusCode, 200);
    await r.body.dump();
  } finally {
    await lenient.close();
    forger.setFeed(true);
  }
});

/** One HTTP/1.1 request with Expect: 100-continue: what the gateway answers before the body is sent, then (when that was a 100) after. */
async function expectContinue(pathname: string, headers: Record<string, string>, body: string): Promise<{ first: string; final?: string; closed?: boolean }> {
  const port = Number(new URL(gw.url).port);
  const socket = tls.connect({ host: '127.0.0.1', port, ca: readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem')), ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  const until = async (done: () => boolean) => {
    while (!done()) await once(socket, 'data');
  };
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  socket.write(`POST ${pathname} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n${extra}\r\n`);
  await until(() => got.includes('\r\n\r\n'));
  const first = got.slice(0, got.indexOf('\r\n\r\n'));
  if (!first.startsWith('HTTP/1.1 100')) {
    const closed = new Promise<boolean>((resolve) => {
      socket.once('close', () => resolve(true));
      setTimeout(() => resolve(false), 3_000).unref();
    });
    const result = { first, closed: await closed };
    socket.destroy();
    return result;
  }
  got = got.slice(first.length + 4);
  socket.write(body);
  await until(() => /\r\n\r\n[\s\S]*(?:\}|\r\n0\r\n\r\n)$/.test(got));
  socket.destroy();
  return { first, final: got };
}

test('Expect: 100-continue over HTTP/1.1: a refused request never gets its 100 (the upload never starts); an accepted one only once past every check', async () => {
  const before = up.seen.length;
  for (const pathname of ['/upload', '/checked']) {
    const refused = await expectContinue(pathname, {}, '{"a":1}');
    assert.match(refused.first, /^HTTP\/1\.1 401 /, `${pathname}: no token, no 100 — the final answer`);
    // and the connection ends: a body the client sends anyway is never read as the next request
    assert.equal(refused.closed, true);
    const forged = await expectContinue(pathname, bearer(serviceToken.slice(0, -4) + 'AAAA'), '{"a":1}');
    assert.match(forged.first, /^HTTP\/1\.1 401 /);
    assert.equal(forged.closed, true);
  }
  assert.equal(up.seen.length, before, 'nothing reached the upstream');
  for (const pathname of ['/upload', '/checked']) {
    const accepted = await expectContinue(pathname, bearer(serviceToken), '{"a":1}');
    assert.match(accepted.first, /^HTTP\/1\.1 100 Continue/);
    assert.match(accepted.final!, /^HTTP\/1\.1 200 /);
  }
  assert.deepEqual(up.seen.slice(before).map((s) => [s.url, s.bodyBytes, s.headers.expect]), [['/upload', 7, undefined], ['/checked', 7, undefined]]);
  // the contract still judges the body it let through: a 100, then 422 for a body that is not an object
  const invalid = await expectContinue('/checked', bearer(serviceToken), '[1,2]');
  assert.match(invalid.first, /^HTTP\/1\.1 100 Continue/);
  assert.match(invalid.final!, /^HTTP\/1\.1 422 /);
});

test('Expect: 100-continue over HTTP/2: no 100 before a refusal; a 100, then the body, once accepted', async () => {
  const session = http2.connect(gw.url, { ca: readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem')) });
  try {
    const post = (headers: Record<string, string>) => {
      const stream = session.request({ ':method': 'POST', ':path': '/upload', 'content-type': 'application/json', expect: '100-continue', ...headers }, { endStream: false });
      let continued = false;
      stream.on('continue', () => {
        continued = true;
        stream.end('{"a":1}');
      });
      return new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
        stream.on('response', (h) => {
          const status = Number(h[':status']);
          stream.resume();
          stream.on('end', () => resolve({ status, continued }));
        });
        stream.on('error', reject);
      });
    };
    const before = up.seen.length;
    assert.deepEqual(await post({}), { status: 401, continued: false });
    assert.equal(up.seen.length, before);
    assert.deepEqual(await post(bearer(serviceToken)), { status: 200, continued: true });
    assert.equal(up.seen.at(-1)!.bodyBytes, 7);
  } finally {
    session.close();
  }
});
