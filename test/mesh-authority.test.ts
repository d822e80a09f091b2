// Services and their zone authority: createAuthorityTokens (client
// credentials and RFC 8693 exchange, tls_client_auth with the workload
// certificate or private_key_jwt, cached until 80% of the lifetime),
// createClient calling a zone gateway (`gateway:<zone>`) with the exchanged
// token, and createAccessTokenVerifier reading subject and actor.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { exportJWK, generateKeyPair, decodeJwt } from 'jose';
import { loadTopology, type LoadedTopology } from '../src/topology/load.ts';
import { startAuthority, type RunningAuthority } from '../src/authority/index.ts';
import { initCa, issueWorkloadIdentity, createIdentityManager, serviceSpiffeId, localRevocations, type WorkloadIdentity } from '../src/pki/index.ts';
import { certificateThumbprint } from '../src/shared/sender-constraint.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';
import {
  createAuthorityTokens,
  createAccessTokenVerifier,
  createClient,
  GatehouseError,
  TokenRequestError,
  type AuthorityTokens,
} from '../src/mesh/index.ts';
import { silentLogger, offsetClock } from './support/authority-harness.ts';

const TD = 'mesh.local';
const YAML = `version: 1
trustDomain: ${TD}
zones:
  public:
    gateway: { listen: 127.0.0.1:0 }
  private:
    gateway: { listen: 127.0.0.1:0 }
    authority:
      scopes: [orders:read, orders:write]
      clientCa: trust-domain
      dev:
        serviceClients:
          - service: bff
            grantTypes: [client_credentials, urn:ietf:params:oauth:grant-type:token-exchange]
            scopes: [orders:read]
          - service: shipping
            grantTypes: [client_credentials, urn:ietf:params:oauth:grant-type:token-exchange]
            scopes: [orders:read]
            certificateBound: true
services:
  bff:
    zone: public
    upstream: https://127.0.0.1:1
    egress: ['gateway:private']
  reports:
    zone: public
    upstream: https://127.0.0.1:1
  shipping:
    zone: public
    upstream: https://127.0.0.1:1
    egress: ['gateway:private']
`;

let dir: string;
let stateDir: string;
let loaded: LoadedTopology;
let auth: RunningAuthority;
let devCa: string;
let bff: WorkloadIdentity;
let reports: WorkloadIdentity;
let gateway: https.Server;
let gatewayUrl: string;
const seen: { authorization?: string; clientCert?: string }[] = [];

/** A user-ish subject token of the zone: a client-credentials token of the zone's demo service. */
async function subjectToken(): Promise<string> {
  const s = auth.devCredentials!.clients.find((c) => c.client_id === 'private-service')!;
  const tokens = createAuthorityTokens({ issuer: auth.issuer, clientId: s.client_id, auth: { method: 'client_secret_basic', clientSecret: s.client_secret! }, ca: devCa, scope: 'orders:read' });
  try {
    return await tokens.serviceToken();
  } finally {
    await tokens.close();
  }
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'gh-mesh-auth-'));
  stateDir = path.join(dir, 'state');
  writeFileSync(path.join(dir, 'gatehouse.yaml'), YAML);
  loaded = loadTopology(path.join(dir, 'gatehouse.yaml'));
  await initCa({ stateDir, topology: loaded.topology });
  auth = await startAuthority({ topology: loaded, zone: 'private', stateDir, dev: true, logger: silentLogger() });
  devCa = (await openDevCa(stateDir, TD)).caPem;
  bff = await issueWorkloadIdentity(stateDir, serviceSpiffeId(TD, 'public', 'bff'));
  reports = await issueWorkloadIdentity(stateDir, serviceSpiffeId(TD, 'public', 'reports'));
  // the private zone's entry point as a client sees it: HTTPS with a dev-CA certificate
  const pair = await (await openDevCa(stateDir, TD)).issueServer(['127.0.0.1']);
  gateway = https.createServer({ ...pair, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerX509Certificate();
    seen.push({ authorization: req.headers.authorization, clientCert: peer?.subjectAltName });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ ok: true }));
  });
  await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
  gatewayUrl = `https://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
});

after(async () => {
  gateway.closeAllConnections();
  await new Promise((r) => gateway.close(r));
  await auth.close();
  rmSync(dir, { recursive: true, force: true });
});

const bffTokens = (o: Partial<Parameters<typeof createAuthorityTokens>[0]> = {}) =>
  createAuthorityTokens({ issuer: auth.issuer, clientId: 'bff', auth: { method: 'tls_client_auth', identity: bff }, ca: devCa, ...o });

test('the dev seed makes the service a tls_client_auth client bound to its SPIFFE ID', () => {
  const c = auth.devCredentials!.clients.find((x) => x.client_id === 'bff');
  assert.ok(c);
  assert.equal(c.client_secret, undefined, 'no secret: the workload certificate is the credential');
  assert.equal(c.tls_client_auth_san_uri, serviceSpiffeId(TD, 'public', 'bff'));
});

test('tls_client_auth: the workload certificate gets tokens; exchange names the service as actor', async () => {
  const tokens = bffTokens();
  const verifier = createAccessTokenVerifier({ issuer: auth.issuer, audience: auth.audience, ca: devCa });
  try {
    const own = await verifier.verify(await tokens.serviceToken());
    assert.equal(own.clientId, 'bff');
    const subject = await subjectToken();
    const exchanged = await verifier.verify(await tokens.exchange(subject));
    assert.equal(exchanged.sub, decodeJwt(subject).sub);
    assert.deepEqual(exchanged.actors, ['bff']);
    assert.deepEqual(exchanged.scopes, ['orders:read']);
  } finally {
    await tokens.close();
    await verifier.close();
  }
});

test("another service's certificate is not the client", async () => {
  const t = bffTokens({ auth: { method: 'tls_client_auth', identity: reports } });
  try {
    await assert.rejects(t.serviceToken(), (e: unknown) => e instanceof TokenRequestError && e.oauthError === 'invalid_client');
  } finally {
    await t.close();
  }
});

test('tokens are cached until 80% of their lifetime; exchanges per subject token', async () => {
  const clock = offsetClock();
  const tokens = bffTokens({ clock });
  try {
    const a = await tokens.serviceToken();
    const { exp, iat } = decodeJwt(a) as { exp: number; iat: number };
    const life = (exp - iat) * 1000;
    clock.advance(life * 0.7);
    assert.equal(await tokens.serviceToken(), a, 'reused before 80%');
    clock.advance(life * 0.15);
    const b = await tokens.serviceToken();
    assert.notEqual(b, a, 'renewed after 80%');

    const s1 = await subjectToken();
    const s2 = await subjectToken();
    const [x1, x1again] = await Promise.all([tokens.exchange(s1), tokens.exchange(s1)]);
    assert.equal(x1, x1again, 'concurrent exchanges of one subject share one request');
    assert.equal(await tokens.exchange(s1), x1, 'cached');
    const x2 = await tokens.exchange(s2);
    assert.notEqual(x2, x1, 'another subject, another token');
    tokens.invalidate(x1);
    assert.notEqual(await tokens.exchange(s1), x1, 'an invalidated token is fetched again');
  } finally {
    await tokens.close();
  }
});

test('private_key_jwt: a registered key signs the client assertion', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' };
  await auth.admin.clients.add({ clientId: 'pkj-svc', grantTypes: ['client_credentials'], scope: 'orders:read', authMethod: 'private_key_jwt', jwks: { keys: [jwk] } });
  const tokens = createAuthorityTokens({
    issuer: auth.issuer,
    clientId: 'pkj-svc',
    auth: { method: 'private_key_jwt', privateJwk: { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'ES256' } },
    ca: devCa,
  });
  const other = await generateKeyPair('ES256', { extractable: true });
  const wrong = createAuthorityTokens({
    issuer: auth.issuer,
    clientId: 'pkj-svc',
    auth: { method: 'private_key_jwt', privateJwk: { ...(await exportJWK(other.privateKey)), kid: 'k1', alg: 'ES256' } },
    ca: devCa,
  });
  try {
    assert.equal(decodeJwt(await tokens.serviceToken()).client_id, 'pkj-svc');
    await assert.rejects(wrong.serviceToken(), (e: unknown) => e instanceof TokenRequestError && e.oauthError === 'invalid_client');
  } finally {
    await tokens.close();
    await wrong.close();
  }
});

test('createClient: into another zone only through its gateway, with the exchanged token and its own certificate', async () => {
  const tokens = bffTokens();
  const resolve = (t: string) => (t === 'gateway:private' ? gatewayUrl : undefined);
  const client = createClient({
    name: 'bff',
    topology: loaded.topology,
    identity: bff,
    resolve,
    revocations: localRevocations(stateDir),
    authorities: { private: tokens },
    gatewayCa: devCa,
    logger: silentLogger(),
  });
  const verifier = createAccessTokenVerifier({ issuer: auth.issuer, audience: auth.audience, ca: devCa });
  try {
    const subject = await subjectToken();
    seen.length = 0;
    const r = await client.request('gateway:private', { path: '/api/orders', onBehalfOf: subject });
    assert.equal(r.status, 200);
    const sent = seen[0].authorization!.replace(/^Bearer /, '');
    assert.notEqual(sent, subject, 'the user token itself never leaves for another zone');
    const v = await verifier.verify(sent);
    assert.equal(v.sub, decodeJwt(subject).sub);
    assert.deepEqual(v.actors, ['bff']);
    assert.match(seen[0].clientCert ?? '', new RegExp(`URI:${serviceSpiffeId(TD, 'public', 'bff')}`), 'the gateway may ask for the SVID');

    // a bad subject token is the caller's problem (401), not a gateway failure
    await assert.rejects(client.request('gateway:private', { path: '/api/orders', onBehalfOf: subject.slice(0, -4) + 'AAAA' }), (e: unknown) => e instanceof GatehouseError && e.status === 401);
    // egress: the public gateway is not on the list; nor is a gateway whose TLS is not the expected CA's
    await assert.rejects(client.request('gateway:public', { path: '/' }), (e: unknown) => e instanceof GatehouseError && e.code === 'egress_denied');
    const untrusting = createClient({ name: 'bff', topology: loaded.topology, identity: bff, resolve, revocations: 'none', logger: silentLogger() });
    try {
      await assert.rejects(untrusting.request('gateway:private', { path: '/' }), (e: unknown) => e instanceof GatehouseError && e.code === 'bad_gateway');
      await assert.rejects(untrusting.request('gateway:private', { path: '/', onBehalfOf: subject }), (e: unknown) => e instanceof GatehouseError && e.code === 'token_unavailable');
    } finally {
      untrusting.close();
    }
  } finally {
    client.close();
    await tokens.close();
    await verifier.close();
  }
});

test('the access-token verifier refuses another audience and foreign tokens', async () => {
  const other = createAccessTokenVerifier({ issuer: auth.issuer, audience: 'urn:gatehouse:elsewhere', ca: devCa });
  const right = createAccessTokenVerifier({ issuer: auth.issuer, audience: auth.audience, ca: devCa });
  try {
    const t = await subjectToken();
    await assert.rejects(other.verify(t));
    await right.verify(t);
    const [h, p] = t.split('.');
    await assert.rejects(right.verify(`${h}.${p}.${'A'.repeat(86)}`));
    await assert.rejects(right.verify(''));
  } finally {
    await other.close();
    await right.close();
  }
});

test('a renewed workload certificate costs no request: certificate-bound tokens of the old certificate are not used again, new ones are fetched with the new certificate', async () => {
  const spiffeId = serviceSpiffeId(TD, 'public', 'shipping');
  const manager = createIdentityManager({ initial: await issueWorkloadIdentity(stateDir, spiffeId), renew: () => issueWorkloadIdentity(stateDir, spiffeId) });
  // a gateway that holds a certificate-bound token to the certificate of the connection (RFC 8705 §3), as the private gateway does
  const pair = await (await openDevCa(stateDir, TD)).issueServer(['127.0.0.1']);
  const answers: number[] = [];
  const bound = https.createServer({ ...pair, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerX509Certificate();
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const cnf = (decodeJwt(token).cnf ?? {}) as Record<string, string>;
    res.statusCode = peer && cnf['x5t#S256'] === certificateThumbprint(peer) ? 200 : 401;
    answers.push(res.statusCode);
    res.end();
  });
  await new Promise<void>((r) => bound.listen(0, '127.0.0.1', r));
  const url = `https://127.0.0.1:${(bound.address() as AddressInfo).port}`;
  const tokens = createAuthorityTokens({ issuer: auth.issuer, clientId: 'shipping', auth: { method: 'tls_client_auth', identity: manager }, ca: devCa });
  const client = createClient({
    name: 'shipping',
    topology: loaded.topology,
    identity: manager,
    resolve: (t) => (t === 'gateway:private' ? url : undefined),
    revocations: 'none',
    authorities: { private: tokens },
    gatewayCa: devCa,
    logger: silentLogger(),
  });
  try {
    const subject = await subjectToken();
    const calls = async () => {
      const own = await client.request('gateway:private', { path: '/api/orders' });
      const exchanged = await client.request('gateway:private', { path: '/api/orders', onBehalfOf: subject });
      return [own.status, exchanged.status];
    };
    assert.deepEqual(await calls(), [200, 200]);
    const before = await tokens.serviceToken();
    assert.equal((decodeJwt(before).cnf as Record<string, string>)['x5t#S256'], certificateThumbprint(new X509Certificate(manager.current().certPem)));
    // renewed mid-run: the next calls go out with the new certificate, and so must their tokens
    const old = manager.current();
    await manager.renewNow();
    assert.notEqual(manager.current().serial, old.serial);
    assert.deepEqual(await calls(), [200, 200], 'no call after the renewal fails');
    const after = await tokens.serviceToken();
    assert.notEqual(after, before);
    assert.equal((decodeJwt(after).cnf as Record<string, string>)['x5t#S256'], certificateThumbprint(new X509Certificate(manager.current().certPem)));
    assert.deepEqual(answers, [200, 200, 200, 200], 'the gateway refused nothing');
    // without a renewal the cached tokens stay in use
    assert.equal(await tokens.serviceToken(), after);
  } finally {
    client.close();
    await tokens.close();
    manager.close();
    bound.closeAllConnections();
    await new Promise((r) => bound.close(r));
  }
});
