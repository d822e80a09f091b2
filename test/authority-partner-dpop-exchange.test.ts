// DPoP (RFC 9449) at token exchange (RFC 8693, the authority's own grant): a
// proof sent with the exchange binds the exchanged token to its key
// (cnf.jkt, token_type DPoP), which the gateway then requires with every
// request. openid-client drives the good path; the bad proofs are made by
// hand: another method or URL, replayed, from the future, signed by a key
// other than the one in its header, not a JWT; and a client registered
// dpop-bound that sends none. Each is refused with the standard error and no
// token is issued.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { tempDir, silentLogger } from './support/authority-harness.ts';
import { startUpstream, type Upstream } from './support/gateway-fixture.ts';
import { boundRouteTopology, dpopKey, dpopHeaders, dpopProof } from './support/dpop.ts';
import { loadTopology } from '../src/topology/load.ts';
import { initCa } from '../src/pki/index.ts';
import { startAuthority, type RunningAuthority } from '../src/authority/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';

const TD = 'exchange-dpop.test';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
let tmp: ReturnType<typeof tempDir>;
let auth: RunningAuthority;
let up: Upstream;
let gw: RunningGateway;
let agent: Agent;
const clients: Record<'plain' | 'bound', { client_id: string; client_secret: string }> = {} as never;

const f = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;

before(async () => {
  tmp = tempDir();
  const stateDir = path.join(tmp.dir, 'state');
  up = await startUpstream();
  const file = path.join(tmp.dir, 'gatehouse.yaml');
  writeFileSync(file, boundRouteTopology(TD, up.url));
  await initCa({ stateDir, topology: loadTopology(file).topology });
  auth = await startAuthority({ topology: loadTopology(file), zone: 'partner', stateDir, dev: true, logger: silentLogger() });
  agent = new Agent({ connect: { ca: readFileSync(auth.caFile!, 'utf8') } });
  for (const [name, dpopBound] of [['plain', false], ['bound', true]] as const) {
    const c = await auth.admin.clients.add({ clientId: `exchanger-${name}`, grantTypes: [TOKEN_EXCHANGE], scope: 'catalog:read', authMethod: 'client_secret_basic', dpopBound });
    clients[name] = { client_id: c.client_id, client_secret: c.client_secret! };
  }
  gw = await startGateway({ config: file, zone: 'partner', stateDir, logger: silentLogger(), accessLog: false });
});

after(async () => {
  await gw?.close();
  await auth?.close();
  await up?.close();
  await agent?.close();
  tmp?.remove();
});

/** A token of the zone's seeded service client: the subject token to exchange. */
async function subjectToken(): Promise<string> {
  const svc = auth.devCredentials!.clients.find((c) => c.client_id === 'partner-service')!;
  const config = await oidc.discovery(new URL(auth.issuer), svc.client_id, undefined, oidc.ClientSecretBasic(svc.client_secret!), { [oidc.customFetch]: f as any });
  return (await oidc.clientCredentialsGrant(config, { scope: 'catalog:read' })).access_token;
}

/** POST /token with the exchange grant, by hand (so the proof can be anything, or absent). */
async function exchange(client: 'plain' | 'bound', subject: string, dpop?: string) {
  const c = clients[client];
  const r = await f(`${auth.issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64'),
      ...(dpop !== undefined ? { dpop } : {}),
    },
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, scope: 'catalog:read' }).toString(),
  });
  return { status: r.status, body: (await r.json()) as Record<string, any>, nonce: r.headers.get('dpop-nonce') };
}

async function callGateway(headers: Record<string, string>) {
  const seen = up.seen.length;
  const r = await f(`${gw.url}/bound`, { headers });
  await r.text();
  return { status: r.status, challenge: r.headers.get('www-authenticate') ?? '', reached: up.seen.length > seen };
}

test('openid-client exchanges with a DPoP proof: the token is DPoP-bound (cnf.jkt) and the gateway wants a proof of that key with every request', async () => {
  const key = await dpopKey();
  const { privateKey, publicKey } = key;
  const config = await oidc.discovery(new URL(auth.issuer), clients.plain.client_id, undefined, oidc.ClientSecretBasic(clients.plain.client_secret), { [oidc.customFetch]: f as any });
  const handle = oidc.getDPoPHandle(config, { privateKey, publicKey } as Parameters<typeof oidc.getDPoPHandle>[1]);
  const subject = await subjectToken();
  const t = await oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { subject_token: subject, subject_token_type: ACCESS_TOKEN, scope: 'catalog:read' }, { DPoP: handle });
  assert.equal(t.token_type.toLowerCase(), 'dpop');
  const claims = decodeJwt(t.access_token);
  assert.deepEqual(claims.cnf, { jkt: key.jkt });
  assert.deepEqual(claims.act, { sub: clients.plain.client_id }, 'still an exchange: the client is the actor');
  assert.equal(claims.sub, decodeJwt(subject).sub);

  const ok = await callGateway(await dpopHeaders(key, t.access_token, 'GET', `${gw.url}/bound`));
  assert.equal(ok.status, 200);
  assert.ok(ok.reached);
  // lifted without the key: as a bearer token, or with a proof of another key
  const asBearer = await callGateway({ authorization: `Bearer ${t.access_token}` });
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.challenge, /^DPoP .*error="invalid_token"/);
  const thief = await dpopKey();
  const otherKey = await callGateway(await dpopHeaders(thief, t.access_token, 'GET', `${gw.url}/bound`));
  assert.equal(otherKey.status, 401);
  assert.match(otherKey.challenge, /error="invalid_dpop_proof"/);
  assert.ok(!asBearer.reached && !otherKey.reached, 'nothing reached the upstream');
});

test('without a proof the exchange still answers a bearer token (no cnf), which a route that requires binding refuses', async () => {
  const r = await exchange('plain', await subjectToken());
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.token_type, 'Bearer');
  assert.equal(decodeJwt(r.body.access_token).cnf, undefined);
  const refused = await callGateway({ authorization: `Bearer ${r.body.access_token}` });
  assert.equal(refused.status, 401);
  assert.match(refused.challenge, /error="invalid_token"/);
});

test('hostile proofs at the exchange: wrong htm, wrong htu, replayed, iat in the future, another key, not a JWT — refused, no token', async () => {
  const key = await dpopKey();
  const htu = `${auth.issuer}/token`;
  const subject = await subjectToken();
  const good = await dpopProof(key, { htm: 'POST', htu });
  const first = await exchange('plain', subject, good);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal((decodeJwt(first.body.access_token).cnf as { jkt: string }).jkt, key.jkt);
  const stranger = await dpopKey();
  const cases: [string, string, string][] = [
    ['replayed', good, 'invalid_dpop_proof'],
    ['wrong htm', await dpopProof(key, { htm: 'GET', htu }), 'invalid_dpop_proof'],
    ['wrong htu (another endpoint)', await dpopProof(key, { htm: 'POST', htu: `${auth.issuer}/token/introspection` }), 'invalid_dpop_proof'],
    ['wrong htu (another host)', await dpopProof(key, { htm: 'POST', htu: 'https://attacker.example/token' }), 'invalid_dpop_proof'],
    // outside the window the authority offers a nonce instead (RFC 9449 §8)
    ['iat in the future', await dpopProof(key, { htm: 'POST', htu, iat: Math.floor(Date.now() / 1000) + 600 }), 'use_dpop_nonce'],
    ['iat long past', await dpopProof(key, { htm: 'POST', htu, iat: Math.floor(Date.now() / 1000) - 3600 }), 'use_dpop_nonce'],
    ['a nonce this authority never issued', await dpopProof(key, { htm: 'POST', htu, nonce: 'AAAAAAAAAAA.forged' }), 'use_dpop_nonce'],
    ['signed by a key other than its header names', await dpopProof(key, { htm: 'POST', htu, jwk: stranger.jwk }), 'invalid_dpop_proof'],
    ['not a JWT', 'not.a.proof', 'invalid_dpop_proof'],
    ['empty', '', 'invalid_request'],
  ];
  for (const [what, proof, error] of cases) {
    const r = await exchange('plain', subject, proof);
    if (what === 'empty') {
      // an empty header is no proof: a bearer token for a client that is not dpop-bound
      assert.equal(r.status, 200, what);
      assert.equal(r.body.token_type, 'Bearer', what);
      continue;
    }
    assert.equal(r.status, 400, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error, error, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.access_token, undefined, what);
    if (error === 'use_dpop_nonce') assert.ok(r.nonce, `${what}: a DPoP-Nonce to retry with`);
  }
  // an oversized proof is refused too, not parsed at length
  const huge = await exchange('plain', subject, `${'a'.repeat(6000)}.${'b'.repeat(6000)}.${'c'.repeat(100)}`);
  assert.equal(huge.status, 400);
  assert.equal(huge.body.error, 'invalid_dpop_proof');
});

test('a client registered dpop-bound must send a proof with the exchange; with one it gets a DPoP-bound token', async () => {
  const subject = await subjectToken();
  const none = await exchange('bound', subject);
  assert.equal(none.status, 400);
  assert.equal(none.body.error, 'invalid_grant', 'what the built-in grants answer a dpop-bound client without a proof');
  assert.equal(none.body.access_token, undefined);
  const key = await dpopKey();
  const ok = await exchange('bound', subject, await dpopProof(key, { htm: 'POST', htu: `${auth.issuer}/token` }));
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(ok.body.token_type, 'DPoP');
  assert.equal((decodeJwt(ok.body.access_token).cnf as { jkt: string }).jkt, key.jkt);
});

test('concurrent exchanges with one proof: exactly one is answered with a token', async () => {
  const key = await dpopKey();
  const subject = await subjectToken();
  const proof = await dpopProof(key, { htm: 'POST', htu: `${auth.issuer}/token` });
  const results = await Promise.all(Array.from({ length: 8 }, () => exchange('plain', subject, proof)));
  assert.equal(results.filter((r) => r.status === 200).length, 1, JSON.stringify(results.map((r) => [r.status, r.body.error])));
  for (const r of results.filter((x) => x.status !== 200)) assert.equal(r.body.error, 'invalid_dpop_proof');
});
