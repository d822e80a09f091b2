// Revoked access tokens reach every gateway through the control plane, end to
// end with a real zone authority, control plane and gateway on one state dir.
// The gateway follows its bundle and polls no revocation feed (the topology
// configures none):
// - a token revoked at the authority (RFC 7009) is refused by the gateway
//   (401) within 2 s (measured), and introspection says inactive;
// - a token revoked by removing its client (no audit line names the jti: the
//   authority's token_index follower reports it) is refused the same way;
// - the authority honours the bundle's list: a jti reported revoked by the
//   authority's identity (as another replica would) is inactive at its
//   introspection though its own database never revoked it;
// - a token_revoked event from any other workload (a service) is refused,
//   counted as forged, and changes nothing;
// - hostile reports from the authority's identity: an oversized or malformed
//   jti, no exp, an exp long past are refused one by one (the rest of the batch
//   stands); a far-future exp is clamped to the zone's token lifetime; a flood
//   of 10 000 revocations is taken, published and applied at the gateway, and
//   the list stays bounded; the list survives a restart of the control plane;
// - an entry leaves the list, and every bundle, by itself when it ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { setTimeout as delay } from 'node:timers/promises';
import { request, Agent } from 'undici';
import { decodeJwt } from 'jose';
import { initCa, issueWorkloadIdentity, gatewaySpiffeId, serviceSpiffeId } from '../src/pki/index.ts';
import { authoritySpiffeId } from '../src/pki/spiffe-id.ts';
import { startControlServer, type ControlServer } from '../src/control/index.ts';
import { startAuthority } from '../src/authority/index.ts';
import { startGateway } from '../src/gateway/server.ts';
import { fetchToken } from '../src/cli/dev-token.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { startUpstream } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';
import { postEvents, topologyDir } from './support/monitor-events.ts';

const TD = 'revoked.test';
const AUTHORITY_ID = authoritySpiffeId(TD, 'edge');
const GATEWAY_ID = gatewaySpiffeId(TD, 'edge');
const SERVICE_ID = serviceSpiffeId(TD, 'edge', 'app');
const quiet = createLogger({ name: 'test', level: 'silent' });
const closer = closeAfterAll();
const upstream = await startUpstream();
closer(() => upstream.close());
const { dir, file } = topologyDir(
  'gh-revoked-tokens-',
  `version: 1
trustDomain: ${TD}
zones:
  edge:
    authority: { listen: 127.0.0.1:0, scopes: [orders:read], accessTokenTtl: 300 }
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    authFailures: { freeFailures: 5000, maxFailures: 10000 }
    routes:
      - { name: read, path: /read, service: app, auth: { scopes: [orders:read] } }
services:
  app: { zone: edge, upstream: '${upstream.url}' }
# the revoked tokens these tests use are 401s from loopback: ten within a minute are a stuffing run to the
# detectors, and a quarantine of the source would race the tests' own assertions (detectors: monitor-*.test.ts)
monitor:
  exempt: [127.0.0.1]
`,
);
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
let control: ControlServer = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
closer(() => control.close());
const auth = await startAuthority({ topology: loadTopology(file), zone: 'edge', stateDir: dir, dev: true, logger: quiet, control: control.bundlesUrl });
closer(() => auth.close());
// default bundle polling: long-poll (no short poll interval)
const gw = await startGateway({ config: file, zone: 'edge', stateDir: dir, logger: quiet, accessLog: false, bundles: { control: control.bundlesUrl, firstWaitMs: 5000 } });
closer(() => gw.close());
const tls = new Agent({ connect: { rejectUnauthorized: false } });
closer(() => tls.close());
const client = auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;

async function token(c = client): Promise<{ token: string; jti: string; exp: number }> {
  const t = await fetchToken({ authority: auth.url, agent: tls, client: c, scopes: ['orders:read'] });
  const claims = decodeJwt(t.access_token);
  return { token: t.access_token, jti: String(claims.jti), exp: Number(claims.exp) };
}
async function atGateway(t: string): Promise<number> {
  const r = await request(`${gw.url}/read`, { dispatcher: tls, headers: { authorization: `Bearer ${t}` } });
  await r.body.dump();
  return r.statusCode;
}
async function oauth(p: 'introspection' | 'revocation', t: string, c = client): Promise<{ status: number; body: string }> {
  const r = await request(`${auth.url}/token/${p}`, {
    dispatcher: tls,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret!)}`).toString('base64')}` },
    body: new URLSearchParams({ token: t }).toString(),
  });
  return { status: r.statusCode, body: await r.body.text() };
}
const active = async (t: string, c = client) => (JSON.parse((await oauth('introspection', t, c)).body) as { active: boolean }).active;
async function admin(p: string): Promise<Record<string, unknown>> {
  const r = await request(`${control.adminUrl}${p}`);
  return (await r.body.json()) as Record<string, unknown>;
}
/** The decisions of `audience`'s bundle as the control plane serves it now. */
async function decisionsOf(audience: string): Promise<{ revokedTokenIds: string[] }> {
  const id = await issueWorkloadIdentity(dir, audience);
  const rel = new URL(audience).pathname.slice(1);
  const body = await new Promise<string>((resolve, reject) => {
    https
      .get(`${control.bundlesUrl}/${rel}.bundle`, { cert: id.certPem, key: id.keyPem, ca: id.bundlePem, checkServerIdentity: () => undefined, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      })
      .on('error', reject);
  });
  return (JSON.parse(body.slice(body.indexOf('\n') + 1)) as { decisions: { revokedTokenIds: string[] } }).decisions;
}
/** Milliseconds from now until `f` answers `want` (polled every 10 ms), failing past `ms`. */
async function timeUntil(f: () => Promise<number>, want: number, ms = 5000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if ((await f()) === want) return performance.now() - t0;
    if (performance.now() - t0 > ms) assert.fail(`not ${want} within ${ms} ms`);
    await delay(10);
  }
}
const nowSec = () => Math.floor(Date.now() / 1000);

test('the gateway and the authority follow the control plane', async () => {
  await until('the gateway and the authority report a revision', () => admin('/status'), (s) => (s.peps as { id: string }[]).filter((p) => p.id === GATEWAY_ID || p.id === AUTHORITY_ID).length === 2);
  const t = await token();
  assert.equal(await atGateway(t.token), 200);
});

test('a token revoked at the authority (RFC 7009) is refused by the gateway within 2 s; introspection says inactive', async () => {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = await token();
    assert.equal(await atGateway(t.token), 200);
    assert.equal(await active(t.token), true);
    const t0 = performance.now();
    assert.equal((await oauth('revocation', t.token)).status, 200);
    await timeUntil(() => atGateway(t.token), 401, 2000);
    times.push(performance.now() - t0);
    assert.equal(await active(t.token), false);
    assert.ok((await decisionsOf(GATEWAY_ID)).revokedTokenIds.includes(t.jti));
    assert.ok((await decisionsOf(AUTHORITY_ID)).revokedTokenIds.includes(t.jti));
    // a service's bundle does not carry the list (the mesh checks no token against it)
    assert.deepEqual((await decisionsOf(SERVICE_ID)).revokedTokenIds, []);
  }
  times.sort((a, b) => a - b);
  console.log(`revoke at the authority → 401 at the gateway: p50 ${times[2].toFixed(0)} ms, max ${times[4].toFixed(0)} ms (n=5)`);
  assert.ok(times[4] < 2000);
  // the event is attributed to the authority's identity
  const events = (await (await request(`${control.adminUrl}/events?type=token_revoked&since=5m`)).body.json()) as { pep: string; jti: string; exp: number }[];
  assert.ok(events.length >= 5);
  assert.ok(events.every((e) => e.pep === AUTHORITY_ID && typeof e.exp === 'number'));
});

test("a user's token revoked with its grant (its client removed) reaches the gateway through the token_index follower", async () => {
  const web = auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const user = { token: (await fetchToken({ authority: auth.url, agent: tls, client: web, scopes: ['orders:read'], user: auth.devCredentials!.users[0] })).access_token };
  assert.equal(await atGateway(user.token), 200);
  const t0 = performance.now();
  assert.equal(await auth.admin.clients.remove(web.client_id), true);
  await timeUntil(() => atGateway(user.token), 401, 3000);
  console.log(`client removed → 401 at the gateway: ${(performance.now() - t0).toFixed(0)} ms`);
});

test("a client's own token (client credentials) is taken away everywhere when the client is removed", async () => {
  const created = await auth.admin.clients.add({ clientId: 'batch-job', grantTypes: ['client_credentials'], scope: 'orders:read', authMethod: 'client_secret_basic' });
  const t = await token({ client_id: created.client_id, client_secret: created.client_secret!, grant_types: ['client_credentials'] } as typeof client);
  assert.equal(await atGateway(t.token), 200);
  const t0 = performance.now();
  assert.equal(await auth.admin.clients.remove(created.client_id), true);
  await timeUntil(() => atGateway(t.token), 401, 3000);
  console.log(`client-credentials client removed → 401 at the gateway: ${(performance.now() - t0).toFixed(0)} ms`);
});

test('a jti the authority reports revoked is inactive at its own introspection (as at another replica)', async () => {
  const t = await token();
  assert.equal(await active(t.token), true);
  const r = await postEvents(dir, control.url, AUTHORITY_ID, [{ type: 'token_revoked', code: 'revoked', jti: t.jti, exp: t.exp }]);
  assert.deepEqual([r.status, r.body], [202, { accepted: 1, rejected: 0 }]);
  await timeUntil(async () => ((await active(t.token)) ? 1 : 0), 0, 2000);
  await timeUntil(() => atGateway(t.token), 401, 2000);
});

test("a user's jti the authority reports revoked is inactive at its userinfo too", async () => {
  // a second sign-in of the dev user: a new TOTP secret (the last step used is forgotten with the old one)
  const dev = auth.devCredentials!.users[0];
  const fresh = await auth.admin.users.resetMfa(dev.username);
  const web = { client_id: 'userinfo-web', redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code'], scope: 'openid orders:read' };
  const added = await auth.admin.clients.add({ clientId: web.client_id, grantTypes: ['authorization_code'], redirectUris: web.redirect_uris, scope: web.scope, authMethod: 'client_secret_basic', firstParty: true });
  const t = await fetchToken({ authority: auth.url, agent: tls, client: { ...web, client_secret: added.client_secret! }, scopes: ['orders:read'], user: { ...dev, totp_secret: fresh!.totp_secret } });
  const me = async () => {
    const r = await request(`${auth.url}/me`, { dispatcher: tls, headers: { authorization: `Bearer ${t.access_token}` } });
    await r.body.dump();
    return r.statusCode;
  };
  assert.equal(await me(), 200);
  const claims = decodeJwt(t.access_token);
  const r = await postEvents(dir, control.url, AUTHORITY_ID, [{ type: 'token_revoked', code: 'revoked', jti: String(claims.jti), exp: Number(claims.exp) }]);
  assert.deepEqual(r.body, { accepted: 1, rejected: 0 });
  await timeUntil(me, 401, 2000);
  await timeUntil(() => atGateway(t.access_token), 401, 2000);
});

test('a token_revoked event from a service identity is refused, counted, and changes nothing', async () => {
  const t = await token();
  const before = await admin('/revoked-tokens');
  const revision = control.revision();
  const r = await postEvents(dir, control.url, SERVICE_ID, [{ type: 'token_revoked', code: 'revoked', jti: t.jti, exp: t.exp }]);
  assert.deepEqual([r.status, r.body], [202, { accepted: 0, rejected: 1 }]);
  // nor from a gateway, nor with the authority's name in the event itself (pep is never believed)
  const g = await postEvents(dir, control.url, GATEWAY_ID, [{ type: 'token_revoked', code: 'revoked', jti: t.jti, exp: t.exp, peer: AUTHORITY_ID }]);
  assert.deepEqual(g.body, { accepted: 0, rejected: 1 });
  const after = await admin('/revoked-tokens?jti=' + encodeURIComponent(t.jti));
  assert.equal(after.forged, (before.forged as number) + 2);
  assert.equal(after.size, before.size);
  assert.equal(after.until, null);
  await delay(1200);
  assert.equal(control.revision(), revision);
  assert.equal(await atGateway(t.token), 200);
  assert.equal(await active(t.token), true);
  assert.ok(!(await decisionsOf(GATEWAY_ID)).revokedTokenIds.includes(t.jti));
});

test('hostile revocation reports from the authority are refused one by one; a far-future exp is clamped', async () => {
  const before = await admin('/revoked-tokens');
  const ok = 'ok-' + Date.now();
  const far = 'far-' + Date.now();
  const r = await postEvents(dir, control.url, AUTHORITY_ID, [
    { type: 'token_revoked', code: 'revoked', jti: 'x'.repeat(65), exp: nowSec() + 60 }, // longer than a jti may be
    { type: 'token_revoked', code: 'revoked', jti: 'x'.repeat(129), exp: nowSec() + 60 }, // beyond the event schema
    { type: 'token_revoked', code: 'revoked', jti: 'has"quote', exp: nowSec() + 60 },
    { type: 'token_revoked', code: 'revoked', jti: 'no-exp' },
    { type: 'token_revoked', code: 'revoked', jti: 'past', exp: nowSec() - 3600 },
    { type: 'token_revoked', code: 'revoked', jti: 'neg', exp: -5 },
    { type: 'token_revoked', code: 'revoked', jti: 'huge', exp: 2 ** 40 },
    { type: 'token_revoked', code: 'revoked', exp: nowSec() + 60 },
    { type: 'token_revoked', code: 'revoked', jti: ok, exp: nowSec() + 120 },
    { type: 'token_revoked', code: 'revoked', jti: far, exp: nowSec() + 10 * 365 * 86_400 },
  ]);
  assert.deepEqual([r.status, r.body], [202, { accepted: 2, rejected: 8 }]);
  const after = await admin(`/revoked-tokens?jti=${far}`);
  assert.equal(after.size, (before.size as number) + 2);
  assert.equal(after.reportsRefused, (before.reportsRefused as number) + 5); // the other three fail the event schema itself
  assert.equal(after.clamped, (before.clamped as number) + 1);
  // at most the zone's access-token lifetime (300 s) and the gateways' leeway (60 s) from now
  const ends = Date.parse(after.until as string);
  assert.ok(ends <= Date.now() + 360_000 && ends > Date.now() + 300_000, `clamped to ${after.until}`);
  await until('the bundle lists both', () => decisionsOf(GATEWAY_ID), (d) => d.revokedTokenIds.includes(ok) && d.revokedTokenIds.includes(far), 3000);
  const d = await decisionsOf(GATEWAY_ID);
  assert.ok(!d.revokedTokenIds.some((j) => j.startsWith('xxx') || j === 'no-exp' || j === 'past' || j === 'neg' || j === 'huge'));
  // the gateway still serves
  assert.equal(await atGateway((await token()).token), 200);
});

test('a flood of 10 000 revocations is taken, published and applied; the list stays bounded', async () => {
  const before = await admin('/revoked-tokens');
  const victim = await token();
  const exp = nowSec() + 200;
  const ids = Array.from({ length: 10_000 }, (_, i) => `flood-${i}-${Date.now()}`);
  ids[9_999] = victim.jti;
  const t0 = performance.now();
  for (let i = 0; i < ids.length; i += 500) {
    const r = await postEvents(dir, control.url, AUTHORITY_ID, ids.slice(i, i + 500).map((jti) => ({ type: 'token_revoked', code: 'revoked', jti, exp })));
    assert.equal(r.status, 202);
    assert.equal(r.body.accepted, 500);
  }
  const sent = performance.now() - t0;
  await timeUntil(() => atGateway(victim.token), 401, 5000);
  console.log(`10 000 revocations: sent in ${sent.toFixed(0)} ms, the last one refused at the gateway ${(performance.now() - t0).toFixed(0)} ms after the first was sent`);
  const after = await admin('/revoked-tokens');
  assert.equal(after.size, (before.size as number) + 10_000);
  assert.ok((after.size as number) <= 100_000);
  assert.equal((await decisionsOf(GATEWAY_ID)).revokedTokenIds.length, after.size);
  // a live token is still served
  assert.equal(await atGateway((await token()).token), 200);
});

test('the list survives a restart of the control plane', async () => {
  const t = await token();
  assert.equal((await oauth('revocation', t.token)).status, 200);
  await timeUntil(() => atGateway(t.token), 401, 2000);
  const size = (await admin('/revoked-tokens')).size;
  await control.close();
  control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
  assert.equal((await admin('/revoked-tokens')).size, size);
  assert.ok((await decisionsOf(GATEWAY_ID)).revokedTokenIds.includes(t.jti));
});

test('an entry leaves the list and every bundle by itself when it ends', async () => {
  // exp 57 s ago: still within the gateways' 60 s leeway, so listed for ~3 s more
  const jti = 'ending-' + Date.now();
  const r = await postEvents(dir, control.url, AUTHORITY_ID, [{ type: 'token_revoked', code: 'revoked', jti, exp: nowSec() - 57 }]);
  assert.deepEqual(r.body, { accepted: 1, rejected: 0 });
  await until('listed', () => decisionsOf(GATEWAY_ID), (d) => d.revokedTokenIds.includes(jti), 3000);
  const t0 = performance.now();
  await until('gone from the gateway bundle', () => decisionsOf(GATEWAY_ID), (d) => !d.revokedTokenIds.includes(jti), 8000);
  assert.ok(!(await decisionsOf(AUTHORITY_ID)).revokedTokenIds.includes(jti));
  assert.equal((await admin(`/revoked-tokens?jti=${jti}`)).until, null);
  console.log(`an entry ending ~3 s after it was listed left the bundles ${(performance.now() - t0).toFixed(0)} ms later`);
});
