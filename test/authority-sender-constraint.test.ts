// Sender-constrained access tokens end to end: DPoP (RFC 9449) at the token
// endpoint, userinfo and the gateway, and certificate-bound tokens (RFC 8705)
// at the gateway, with openid-client as the client. Bad input: proofs
// replayed, with the wrong htm/htu/ath, from another key, with iat in the
// future, without or with a stale nonce; a DPoP token presented as Bearer; a
// certificate-bound token over a connection with another certificate or none;
// a bearer token where a route requires a bound one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import { tempDir, silentLogger, offsetClock, REDIRECT } from './support/authority-harness.ts';
import { Browser } from './support/authority-browser.ts';
import { startUpstream, type Upstream } from './support/gateway-fixture.ts';
import { loadTopology } from '../src/topology/load.ts';
import { initCa, issueWorkloadIdentity, serviceSpiffeId, type WorkloadIdentity } from '../src/pki/index.ts';
import { startAuthority, type RunningAuthority } from '../src/authority/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { certificateThumbprint, SenderConstraintRejected, senderChallenge } from '../src/shared/sender-constraint.ts';
import { createAccessTokenVerifier } from '../src/mesh/index.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { generate } from 'otplib';

const TD = 'bind.test';
const clock = offsetClock();
let tmp: ReturnType<typeof tempDir>;
let stateDir: string;
let auth: RunningAuthority;
let up: Upstream;
let gw: RunningGateway;
let gwNonce: RunningGateway;
let ca: string;
let billing: WorkloadIdentity;
let other: WorkloadIdentity;
let dpopClient: { client_id: string; client_secret: string };
const agents: Agent[] = [];

function fetchWith(id?: WorkloadIdentity): typeof fetch {
  const agent = new Agent({ connect: { ca, ...(id ? { cert: id.certPem, key: id.keyPem } : {}) } });
  agents.push(agent);
  return ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;
}

const topology = (upstream: string, authentication = '') => `version: 1
trustDomain: ${TD}
zones:
  edge:
    authority:
      listen: 127.0.0.1:0
      scopes: [orders:read]
      clientCa: trust-domain
      dev:
        serviceClients:
          - { service: seeded, grantTypes: [client_credentials], scopes: [orders:read], certificateBound: true }
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    ingress: { clientCertificate: optional }
    authFailures: { freeFailures: 5000, maxFailures: 10000 }${authentication}
    routes:
      - { name: read, path: /read, service: app, auth: { scopes: [orders:read] } }
      - { name: bound, path: /bound, service: app, auth: { scopes: [orders:read], senderConstrained: required } }
services:
  app: { zone: edge, upstream: '${upstream}' }
  billing: { zone: edge, upstream: '${upstream}', egress: ['gateway:edge'] }
  other: { zone: edge, upstream: '${upstream}', egress: ['gateway:edge'] }
  seeded: { zone: edge, upstream: '${upstream}', egress: ['gateway:edge'] }
`;

before(async () => {
  tmp = tempDir();
  stateDir = path.join(tmp.dir, 'state');
  up = await startUpstream();
  const file = path.join(tmp.dir, 'gatehouse.yaml');
  writeFileSync(file, topology(up.url));
  const nonceFile = path.join(tmp.dir, 'nonce.yaml');
  writeFileSync(nonceFile, topology(up.url, '\n    authentication: { dpopNonce: true }'));
  await initCa({ stateDir, topology: loadTopology(file).topology });
  auth = await startAuthority({ topology: loadTopology(file), zone: 'edge', stateDir, dev: true, clock, logger: silentLogger() });
  ca = readFileSync(auth.caFile!, 'utf8');
  billing = await issueWorkloadIdentity(stateDir, serviceSpiffeId(TD, 'edge', 'billing'));
  other = await issueWorkloadIdentity(stateDir, serviceSpiffeId(TD, 'edge', 'other'));
  await auth.admin.clients.add({
    clientId: 'billing',
    grantTypes: ['client_credentials'],
    scope: 'orders:read',
    authMethod: 'tls_client_auth',
    tlsSanUri: serviceSpiffeId(TD, 'edge', 'billing'),
    certificateBound: true,
  });
  const d = await auth.admin.clients.add({ clientId: 'dpop-svc', grantTypes: ['client_credentials'], scope: 'orders:read', authMethod: 'client_secret_basic', dpopBound: true });
  dpopClient = { client_id: d.client_id, client_secret: d.client_secret! };
  gw = await startGateway({ config: file, zone: 'edge', stateDir, logger: silentLogger(), accessLog: false, clock });
  gwNonce = await startGateway({ config: nonceFile, zone: 'edge', stateDir, logger: silentLogger(), accessLog: false, clock });
});

after(async () => {
  await gw?.close();
  await gwNonce?.close();
  await auth?.close();
  await up?.close();
  for (const a of agents) await a.close();
  tmp?.remove();
});

async function discover(clientId: string, clientAuth: oidc.ClientAuth, f: typeof fetch = fetchWith(), metadata?: Partial<oidc.ClientMetadata>) {
  return oidc.discovery(new URL(auth.issuer), clientId, metadata, clientAuth, { [oidc.customFetch]: f as any });
}

async function dpopKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}
type Key = Awaited<ReturnType<typeof dpopKey>>;
const handleFor = (config: oidc.Configuration, key: Key) => oidc.getDPoPHandle(config, { privateKey: key.privateKey, publicKey: key.publicKey } as Parameters<typeof oidc.getDPoPHandle>[1]);

/** A DPoP proof made by hand, so each field can be wrong. */
function proof(key: Key, o: { htm?: string; htu: string; token?: string; iat?: number; jti?: string; nonce?: string; jwk?: JWK }) {
  const payload: Record<string, unknown> = { htm: o.htm ?? 'GET', htu: o.htu, jti: o.jti ?? randomUUID(), iat: o.iat ?? Math.floor(clock.now() / 1000) };
  if (o.token) payload.ath = createHash('sha256').update(o.token).digest('base64url');
  if (o.nonce) payload.nonce = o.nonce;
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: o.jwk ?? key.jwk }).sign(key.privateKey);
}

async function call(target: RunningGateway, p: string, headers: Record<string, string>, f: typeof fetch = fetchWith()) {
  const before = up.seen.length;
  const res = await f(`${target.url}${p}`, { headers });
  const text = await res.text();
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', nonce: res.headers.get('dpop-nonce'), text, reached: up.seen.length > before };
}

async function dpopToken(key: Key) {
  const config = await discover(dpopClient.client_id, oidc.ClientSecretBasic(dpopClient.client_secret));
  const handle = handleFor(config, key);
  return oidc.clientCredentialsGrant(config, { scope: 'orders:read' }, { DPoP: handle });
}

test('DPoP with openid-client: client credentials get a DPoP-bound token (cnf.jkt) that the gateway accepts with a proof', async () => {
  const key = await dpopKey();
  const t = await dpopToken(key);
  assert.equal(t.token_type, 'dpop');
  assert.deepEqual(decodeJwt(t.access_token).cnf, { jkt: key.jkt });

  const config = await discover(dpopClient.client_id, oidc.ClientSecretBasic(dpopClient.client_secret));
  const handle = handleFor(config, key);
  const before = up.seen.length;
  const res = await oidc.fetchProtectedResource(config, t.access_token, new URL(`${gw.url}/bound`), 'GET', undefined, undefined, { DPoP: handle });
  assert.equal(res.status, 200);
  const seen = up.seen[before];
  assert.equal(seen.headers.authorization, undefined, 'the credential stays at the gateway');
  assert.equal(seen.headers.dpop, undefined, 'and so does the proof');

  // a client registered dpop_bound_access_tokens gets nothing without a proof
  await assert.rejects(oidc.clientCredentialsGrant(config, { scope: 'orders:read' }), (e: any) => e.error === 'invalid_grant' || e.error === 'invalid_request');
});

test('DPoP through the authorization code flow with openid-client: the code, refresh and userinfo all need the key', async () => {
  const web = auth.devCredentials!.clients.find((c) => c.client_id === 'edge-web')!;
  const user = auth.devCredentials!.users[0];
  const f = fetchWith();
  const config = await discover(web.client_id, oidc.ClientSecretBasic(web.client_secret!), f);
  const key = await dpopKey();
  const handle = handleFor(config, key);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid profile offline_access orders:read', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state });
  const browser = new Browser(f as any);
  const login = await browser.follow(url.toString(), auth.issuer);
  const otp = await browser.submit(login, '/login', { username: user.username, password: user.password }, auth.issuer);
  const done = await browser.submit(otp, '/otp', { otp: await generate({ secret: user.totp_secret, epoch: Math.floor(clock.now() / 1000) }) }, auth.issuer);
  assert.equal(done.status, 0, done.html.slice(0, 200));
  const tokens = await oidc.authorizationCodeGrant(config, new URL(done.url), { pkceCodeVerifier: verifier, expectedState: state }, undefined, { DPoP: handle });
  assert.equal(tokens.token_type, 'dpop');
  assert.deepEqual(decodeJwt(tokens.access_token).cnf, { jkt: key.jkt });

  const info = await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub, { DPoP: handle });
  assert.equal(info.preferred_username, user.username);
  // as a Bearer token, userinfo refuses it with a DPoP challenge
  const asBearer = await f(`${auth.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.headers.get('www-authenticate')!, /^DPoP realm="edge", error="invalid_token"/);
  // a proof from another key at userinfo
  const thief = await dpopKey();
  const stolen = await f(`${auth.issuer}/me`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: await proof(thief, { htu: `${auth.issuer}/me`, token: tokens.access_token }) } });
  assert.equal(stolen.status, 401);
  assert.match(stolen.headers.get('www-authenticate')!, /error="invalid_dpop_proof"/);

  // refresh with the key: a token bound to it again (a confidential client's refresh token is bound
  // to its client authentication, not to the key: RFC 9449 §5)
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP: handle });
  assert.deepEqual(decodeJwt(refreshed.access_token).cnf, { jkt: key.jkt });
});

test('bad DPoP proofs at the token endpoint: replayed, wrong htm, wrong htu, iat in the future', async () => {
  const key = await dpopKey();
  const f = fetchWith();
  const post = (dpop: string) =>
    f(`${auth.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${dpopClient.client_id}:${dpopClient.client_secret}`).toString('base64'), dpop },
      body: 'grant_type=client_credentials&scope=orders:read',
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as any, nonce: r.headers.get('dpop-nonce') }));
  const htu = `${auth.issuer}/token`;
  const good = await proof(key, { htm: 'POST', htu });
  assert.equal((await post(good)).status, 200);
  // an iat outside the window is answered with a nonce to use instead (RFC 9449 §8)
  const cases: [string, string, string][] = [
    ['replayed', good, 'invalid_dpop_proof'],
    ['wrong htm', await proof(key, { htm: 'GET', htu }), 'invalid_dpop_proof'],
    ['wrong htu', await proof(key, { htm: 'POST', htu: `${auth.issuer}/other` }), 'invalid_dpop_proof'],
    ['iat in the future', await proof(key, { htm: 'POST', htu, iat: Math.floor(Date.now() / 1000) + 600 }), 'use_dpop_nonce'],
    ['a stale nonce', await proof(key, { htm: 'POST', htu, nonce: 'AAAAAAAAAAA.stale' }), 'use_dpop_nonce'],
    ['not a JWT', 'not.a.proof', 'invalid_dpop_proof'],
  ];
  for (const [what, p, error] of cases) {
    const r = await post(p);
    assert.equal(r.status, 400, what);
    assert.equal(r.body.error, error, `${what}: ${JSON.stringify(r.body)}`);
    if (error === 'use_dpop_nonce') assert.ok(r.nonce, `${what}: a DPoP-Nonce to retry with`);
  }
});

test('bad DPoP at the gateway: as Bearer, no proof, replayed, wrong htm/htu/ath, another key, iat in the future, a bearer token where one must be bound', async () => {
  const key = await dpopKey();
  const t = (await dpopToken(key)).access_token;
  const htu = `${gw.url}/read`;
  const dpop = (p: string) => ({ authorization: `DPoP ${t}`, dpop: p });
  const good = await proof(key, { htu, token: t });
  const ok = await call(gw, '/read', dpop(good));
  assert.equal(ok.status, 200, ok.text);
  const thief = await dpopKey();
  const cases: [string, Record<string, string>, RegExp][] = [
    ['presented as Bearer', { authorization: `Bearer ${t}` }, /^DPoP realm="edge", error="invalid_token"/],
    ['no proof', { authorization: `DPoP ${t}` }, /error="invalid_token"/],
    ['replayed', dpop(good), /error="invalid_dpop_proof", error_description="the DPoP proof was already used"/],
    ['wrong htm', dpop(await proof(key, { htm: 'POST', htu, token: t })), /\(htm\)/],
    ['wrong htu', dpop(await proof(key, { htu: `${gw.url}/bound`, token: t })), /\(htu\)/],
    ['wrong ath', dpop(await proof(key, { htu, token: `${t}x` })), /\(ath\)/],
    ['another key', dpop(await proof(thief, { htu, token: t })), /signed by another key/],
    ['a key that claims to be the right one', dpop(await proof(thief, { htu, token: t, jwk: key.jwk })), /signature/],
    ['iat in the future', dpop(await proof(key, { htu, token: t, iat: Math.floor(clock.now() / 1000) + 120 })), /in the future/],
    ['iat too old', dpop(await proof(key, { htu, token: t, iat: Math.floor(clock.now() / 1000) - 600 })), /too old/],
    ['two proofs', { authorization: `DPoP ${t}`, dpop: `${good}, ${good}` }, /malformed/],
  ];
  for (const [what, headers, challenge] of cases) {
    const r = await call(gw, '/read', headers);
    assert.equal(r.status, 401, what);
    assert.match(r.challenge, challenge, what);
    assert.equal(r.reached, false, `${what}: the upstream never saw it`);
    assert.equal(JSON.parse(r.text).code, 'unauthorized', what);
  }
  // a bearer token where the route requires a bound one
  const web = auth.devCredentials!.clients.find((c) => c.client_id === 'edge-service')!;
  const plain = await oidc.clientCredentialsGrant(await discover(web.client_id, oidc.ClientSecretBasic(web.client_secret!)), { scope: 'orders:read' });
  assert.equal((await call(gw, '/read', { authorization: `Bearer ${plain.access_token}` })).status, 200, 'bearer tokens pass where none is required');
  const r = await call(gw, '/bound', { authorization: `Bearer ${plain.access_token}` });
  assert.equal(r.status, 401);
  assert.match(r.challenge, /needs a sender-constrained token/);
});

test('gateway DPoP nonces: without one, use_dpop_nonce and a DPoP-Nonce; a stale one likewise; a fresh one passes', async () => {
  const key = await dpopKey();
  const t = (await dpopToken(key)).access_token;
  const htu = `${gwNonce.url}/read`;
  const first = await call(gwNonce, '/read', { authorization: `DPoP ${t}`, dpop: await proof(key, { htu, token: t }) });
  assert.equal(first.status, 401);
  assert.match(first.challenge, /^DPoP realm="edge", error="use_dpop_nonce"/);
  assert.ok(first.nonce);
  const ok = await call(gwNonce, '/read', { authorization: `DPoP ${t}`, dpop: await proof(key, { htu, token: t, nonce: first.nonce! }) });
  assert.equal(ok.status, 200, ok.text);
  const forged = await call(gwNonce, '/read', { authorization: `DPoP ${t}`, dpop: await proof(key, { htu, token: t, nonce: `${first.nonce}x` }) });
  assert.match(forged.challenge, /use_dpop_nonce/);
  clock.advance(150_000); // two nonce periods later (the token lives 300 s)
  const stale = await call(gwNonce, '/read', { authorization: `DPoP ${t}`, dpop: await proof(key, { htu, token: t, nonce: first.nonce! }) });
  assert.equal(stale.status, 401);
  assert.match(stale.challenge, /the DPoP nonce is stale/);
  assert.notEqual(stale.nonce, first.nonce, 'a new nonce to retry with');
  clock.advance(-150_000);
});

test('certificate-bound tokens (RFC 8705) with openid-client TlsClientAuth: the same certificate passes; another one, none, or the DPoP scheme do not', async () => {
  const f = fetchWith(billing);
  const config = await discover('billing', oidc.TlsClientAuth(), f);
  const t = await oidc.clientCredentialsGrant(config, { scope: 'orders:read' });
  const cnf = decodeJwt(t.access_token).cnf as Record<string, string>;
  assert.equal(cnf['x5t#S256'], certificateThumbprint(new X509Certificate(billing.certPem)));
  assert.equal((await call(gw, '/bound', { authorization: `Bearer ${t.access_token}` }, f)).status, 200);
  const cases: [string, typeof fetch, string][] = [
    ['another workload certificate', fetchWith(other), 'Bearer'],
    ['no certificate', fetchWith(), 'Bearer'],
    ['the DPoP scheme', f, 'DPoP'],
  ];
  for (const [what, via, scheme] of cases) {
    const r = await call(gw, '/read', { authorization: `${scheme} ${t.access_token}` }, via);
    assert.equal(r.status, 401, what);
    assert.match(r.challenge, /error="invalid_token"/, what);
    assert.equal(r.reached, false, what);
  }
});

test('a mesh service checks the binding itself (verifyRequest): DPoP and certificate-bound tokens from their sender only', async () => {
  const verifier = createAccessTokenVerifier({ issuer: auth.issuer, audience: auth.audience, ca });
  const pair = await openDevCa(stateDir, TD).then((c) => c.issueServer(['127.0.0.1']));
  const server = https.createServer({ ...pair, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const port = (server.address() as AddressInfo).port;
    verifier.verifyRequest(req, `https://127.0.0.1:${port}/svc`).then(
      (v) => res.end(JSON.stringify({ sub: v.sub })),
      (e: unknown) => {
        res.statusCode = 401;
        if (e instanceof SenderConstraintRejected) res.setHeader('www-authenticate', senderChallenge('svc', e));
        res.end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/svc`;
  try {
    const key = await dpopKey();
    const t = (await dpopToken(key)).access_token;
    const f = fetchWith();
    const ok = await f(url, { headers: { authorization: `DPoP ${t}`, dpop: await proof(key, { htu: url, token: t }) } });
    assert.equal(ok.status, 200);
    const asBearer = await f(url, { headers: { authorization: `Bearer ${t}` } });
    assert.equal(asBearer.status, 401);
    assert.match(asBearer.headers.get('www-authenticate')!, /^DPoP realm="svc"/);
    await assert.rejects(verifier.verify(t), /verifyRequest/, 'verify() alone refuses a bound token');
    assert.equal((await verifier.verify(t, { senderCheckedBy: 'gateway' })).clientId, 'dpop-svc');

    const viaBilling = fetchWith(billing);
    const bound = (await oidc.clientCredentialsGrant(await discover('billing', oidc.TlsClientAuth(), viaBilling), { scope: 'orders:read' })).access_token;
    assert.equal((await viaBilling(url, { headers: { authorization: `Bearer ${bound}` } })).status, 200);
    assert.equal((await fetchWith(other)(url, { headers: { authorization: `Bearer ${bound}` } })).status, 401, 'another certificate');
    assert.equal((await f(url, { headers: { authorization: `Bearer ${bound}` } })).status, 401, 'no certificate');
  } finally {
    server.close();
    await verifier.close();
  }
});

test('token exchange binds the exchanged token to the certificate of a certificate-bound client', async () => {
  const id = serviceSpiffeId(TD, 'edge', 'other');
  await auth.admin.clients.add({ clientId: 'other', grantTypes: ['urn:ietf:params:oauth:grant-type:token-exchange'], scope: 'orders:read', authMethod: 'tls_client_auth', tlsSanUri: id, certificateBound: true });
  const svc = auth.devCredentials!.clients.find((c) => c.client_id === 'edge-service')!;
  const subject = (await oidc.clientCredentialsGrant(await discover(svc.client_id, oidc.ClientSecretBasic(svc.client_secret!)), { scope: 'orders:read' })).access_token;
  const f = fetchWith(other);
  const config = await discover('other', oidc.TlsClientAuth(), f);
  const exchanged = await oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: subject,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    scope: 'orders:read',
  });
  const cnf = decodeJwt(exchanged.access_token).cnf as Record<string, string>;
  assert.equal(cnf['x5t#S256'], certificateThumbprint(new X509Certificate(other.certPem)));
  assert.equal((await call(gw, '/bound', { authorization: `Bearer ${exchanged.access_token}` }, f)).status, 200);
  assert.equal((await call(gw, '/bound', { authorization: `Bearer ${exchanged.access_token}` }, fetchWith(billing))).status, 401, 'lifted to another workload: useless');
});

test('a sender-constrained subject token is exchanged only by whoever holds its binding: never turned into a bearer token by another client', async () => {
  const relay = await auth.admin.clients.add({ clientId: 'relay', grantTypes: ['urn:ietf:params:oauth:grant-type:token-exchange'], scope: 'orders:read', authMethod: 'client_secret_basic' });
  const config = await discover('relay', oidc.ClientSecretBasic(relay.client_secret!));
  const exchange = (subject: string, options?: Parameters<typeof oidc.genericGrantRequest>[3]) =>
    oidc.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', { subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope: 'orders:read' }, options);
  const refused = async (p: Promise<unknown>) => assert.rejects(p, (e: { error?: string }) => e.error === 'invalid_grant');

  // certificate-bound (billing's certificate): another client, without that certificate
  const certBound = (await oidc.clientCredentialsGrant(await discover('billing', oidc.TlsClientAuth(), fetchWith(billing)), { scope: 'orders:read' })).access_token;
  assert.ok((decodeJwt(certBound).cnf as Record<string, string>)['x5t#S256']);
  await refused(exchange(certBound));

  // DPoP-bound: no proof, or a proof made with another key, is refused; a proof of its key passes, and binds the result to it
  const key = await dpopKey();
  const dpopBound = (await dpopToken(key)).access_token;
  await refused(exchange(dpopBound));
  await refused(exchange(dpopBound, { DPoP: handleFor(config, await dpopKey()) }));
  const held = await exchange(dpopBound, { DPoP: handleFor(config, key) });
  assert.equal((decodeJwt(held.access_token).cnf as Record<string, string>).jkt, key.jkt);
});

test('dev.serviceClients with certificateBound: the seeded workload client gets certificate-bound tokens', async () => {
  const listed = (await auth.admin.clients.list()).find((c) => c.client_id === 'seeded')!;
  assert.equal(listed.sender_constraint, 'mtls');
  const id = await issueWorkloadIdentity(stateDir, serviceSpiffeId(TD, 'edge', 'seeded'));
  const f = fetchWith(id);
  const t = await oidc.clientCredentialsGrant(await discover('seeded', oidc.TlsClientAuth(), f), { scope: 'orders:read' });
  assert.ok((decodeJwt(t.access_token).cnf as Record<string, string>)['x5t#S256']);
  assert.equal((await call(gw, '/bound', { authorization: `Bearer ${t.access_token}` }, f)).status, 200);
  assert.equal((await call(gw, '/bound', { authorization: `Bearer ${t.access_token}` }, fetchWith(billing))).status, 401);
});
