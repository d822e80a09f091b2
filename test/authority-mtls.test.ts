// tls_client_auth (RFC 8705) end to end: a workload of the trust domain gets a
// token with its X509-SVID from the trust-domain CA (`clientCa: trust-domain`),
// matched on its SPIFFE ID. A certificate from another CA, of another SPIFFE
// ID, revoked, or none at all is invalid_client; the same certificate reads
// the revocation feed when its client may.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { startHarness, tempDir, writeTopology, DEFAULT_AUTHORITY, type Harness } from './support/authority-harness.ts';
import { loadTopology } from '../src/topology/load.ts';
import { initCa, issueWorkloadIdentity, revokeCertificate, type WorkloadIdentity } from '../src/pki/index.ts';

const BILLING = 'spiffe://test.local/zone/public/svc/billing';
const AUTHORITY = `${DEFAULT_AUTHORITY}clientCa: trust-domain\n`;

let h: Harness;
let tmp: ReturnType<typeof tempDir>;
let otherCa: ReturnType<typeof tempDir>;
let stateDir: string;
let ca: string;
const agents: Agent[] = [];

function withCert(id?: WorkloadIdentity) {
  const agent = new Agent({ connect: { ca, ...(id ? { cert: id.certPem, key: id.keyPem } : {}) } });
  agents.push(agent);
  return ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;
}

async function token(f: typeof fetch, clientId = 'billing', extra: Record<string, string> = {}) {
  const res = await f(`${h.auth.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, scope: 'orders:read', ...extra }).toString(),
  });
  return { status: res.status, json: (await res.json()) as any };
}

before(async () => {
  tmp = tempDir();
  otherCa = tempDir();
  stateDir = path.join(tmp.dir, 'state');
  const file = writeTopology(tmp.dir, { public: `authority:\n${AUTHORITY.replace(/^/gm, '  ')}` });
  await initCa({ stateDir, topology: loadTopology(file).topology });
  // a second CA for the same trust domain name: the same SPIFFE IDs, another root
  const otherFile = writeTopology(otherCa.dir, { public: `authority:\n${AUTHORITY.replace(/^/gm, '  ')}` });
  await initCa({ stateDir: path.join(otherCa.dir, 'state'), topology: loadTopology(otherFile).topology });
  h = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: AUTHORITY });
  ca = readFileSync(h.auth.caFile!, 'utf8');
  await h.auth.admin.clients.add({
    clientId: 'billing',
    grantTypes: ['client_credentials'],
    scope: 'orders:read',
    authMethod: 'tls_client_auth',
    tlsSanUri: BILLING,
    revocationFeed: true,
  });
});
after(async () => {
  for (const a of agents) await a.close();
  await h.close();
  tmp.remove();
  otherCa.remove();
});

test('a workload certificate of the trust domain authenticates its client at the token endpoint', async () => {
  const id = await issueWorkloadIdentity(stateDir, BILLING);
  const f = withCert(id);
  const r = await token(f);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const claims = decodeJwt(r.json.access_token);
  assert.equal(claims.client_id, 'billing');
  assert.equal(claims.scope, 'orders:read');
  assert.ok(h.audit.some((e) => e.event === 'token.issued' && e.client_id === 'billing'));

  // openid-client's TlsClientAuth over the same connection settings
  const config = await oidc.discovery(new URL(h.auth.issuer), 'billing', undefined, oidc.TlsClientAuth(), { [oidc.customFetch]: f as any });
  assert.ok(config.serverMetadata().token_endpoint_auth_methods_supported?.includes('tls_client_auth'));
  const viaLib = await oidc.clientCredentialsGrant(config, { scope: 'orders:read' });
  assert.equal(decodeJwt(viaLib.access_token).client_id, 'billing');

  // the same certificate reads the revocation feed (client_id names the client)
  const feed = await f(`${h.auth.revocationFeed}?client_id=billing`);
  assert.equal(feed.status, 200);
  assert.ok(Array.isArray(((await feed.json()) as any).jtis));
  const anonymous = await withCert()(`${h.auth.revocationFeed}?client_id=billing`);
  assert.equal(anonymous.status, 401);
});

test('refused: another CA, another SPIFFE ID, no certificate, a secret instead, a revoked certificate', async () => {
  const cases: [string, typeof fetch][] = [
    ['a certificate from another CA with the same SPIFFE ID', withCert(await issueWorkloadIdentity(path.join(otherCa.dir, 'state'), BILLING))],
    ['another SPIFFE ID of the right CA', withCert(await issueWorkloadIdentity(stateDir, 'spiffe://test.local/zone/public/svc/orders'))],
    ["the zone gateway's SPIFFE ID", withCert(await issueWorkloadIdentity(stateDir, 'spiffe://test.local/zone/public/gateway'))],
    ['no client certificate', withCert()],
  ];
  for (const [what, f] of cases) {
    const r = await token(f);
    assert.equal(r.status, 401, what);
    assert.equal(r.json.error, 'invalid_client', what);
    assert.equal(r.json.access_token, undefined, what);
  }
  const good = withCert(await issueWorkloadIdentity(stateDir, BILLING));
  const secret = await good(`${h.auth.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from('billing:guess').toString('base64') },
    body: 'grant_type=client_credentials&scope=orders:read',
  });
  assert.equal(((await secret.json()) as any).error, 'invalid_client', 'a tls_client_auth client has no secret');

  // revoked in the CA's list: refused within the list's 1 s re-read
  const revoked = await issueWorkloadIdentity(stateDir, BILLING);
  const f = withCert(revoked);
  assert.equal((await token(f)).status, 200);
  revokeCertificate({ stateDir, serial: revoked.serial, reason: 'test' });
  await new Promise((r) => setTimeout(r, 1_100));
  const after = await token(f);
  assert.equal(after.status, 401);
  assert.equal(after.json.error, 'invalid_client');
  assert.equal((await token(good)).status, 200, 'other certificates of the same workload still work');
});
