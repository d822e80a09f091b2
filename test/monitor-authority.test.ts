// The authority as an enforcement point of the monitor, end to end with a
// real control plane and a real zone authority on one state dir:
// - a scripted credential-stuffing run at the token endpoint (wrong client
//   secrets) reaches the control plane as auth_failure events attributed to
//   local:authority:<zone>, and the stuffing detector quarantines the source;
// - issued tokens are reported with their jti and where they were obtained;
// - a client quarantined through the control plane can obtain no token within
//   2 s (measured: from the decision to the first refusal), whether it names
//   itself in the Basic header, in the body (client_secret_post) or at the
//   authorization endpoint; other clients are served, their bodies intact;
//   released, it is served again; each refusal is a token_refused event;
// - the audit → event mapping for every event kind the authority sends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { request, Agent } from 'undici';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { initCa } from '../src/pki/index.ts';
import { startControlServer } from '../src/control/index.ts';
import { startAuthority } from '../src/authority/index.ts';
import { securityEventOf } from '../src/authority/monitor.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';

const quiet = createLogger({ name: 'test', level: 'silent' });
const closer = closeAfterAll();
const dir = tempDir('gh-monitor-authority-');
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  `version: 1
trustDomain: authority-monitor.test
zones:
  public:
    authority: { listen: 127.0.0.1:0, scopes: [orders:read] }
monitor:
  detectors:
    stuffing: { threshold: 4, windowSeconds: 60, quarantineFor: 1m }
`,
);
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
closer(() => control.close());
const auth = await startAuthority({ topology: loadTopology(file), zone: 'public', stateDir: dir, dev: true, logger: quiet });
closer(() => auth.close());
const tls = new Agent({ connect: { rejectUnauthorized: false } });
closer(() => tls.close());
const service = auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
// clients that name themselves in the body: private_key_jwt (the client assertion's sub)
async function jwtClient(clientId: string) {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  await auth.admin.clients.add({ clientId, grantTypes: ['client_credentials'], scope: 'orders:read', authMethod: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(publicKey)), alg: 'ES256', use: 'sig' }] } });
  return async (o: { sub?: string } = {}) => ({
    client_id: clientId,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer(clientId)
      .setSubject(o.sub ?? clientId)
      .setAudience(auth.issuer)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(privateKey),
  });
}
const poster = await jwtClient('poster');

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
async function token(o: { basic?: [string, string]; body?: Record<string, string> }): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await request(`${auth.issuer}/token`, {
    method: 'POST',
    dispatcher: tls,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(o.basic ? { authorization: basic(...o.basic) } : {}) },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read', ...o.body }).toString(),
  });
  return { status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> };
}
const events = async (type: string) => (await (await request(`${control.adminUrl}/events?type=${type}&since=1h`)).body.json()) as Record<string, unknown>[];
const quarantines = async () => (await (await request(`${control.adminUrl}/quarantines`)).body.json()) as { scope: string; value: string; origin: string }[];

test('issued tokens are reported with their jti and where they were obtained', async () => {
  const r = await token({ basic: [service.client_id, service.client_secret!] });
  assert.equal(r.status, 200);
  const jti = JSON.parse(Buffer.from(String(r.body.access_token).split('.')[1], 'base64url').toString()).jti as string;
  const [e] = await until('token_issued event', async () => (await events('token_issued')).filter((x) => x.jti === jti), (l) => l.length === 1);
  assert.equal(e.client, service.client_id);
  assert.equal(e.source, '127.0.0.1');
  assert.equal(e.pep, 'local:authority:public');
});

test('a scripted credential-stuffing run at the token endpoint is seen by the control plane and its source quarantined', async () => {
  for (let i = 0; i < 4; i++) assert.equal((await token({ basic: [service.client_id, `guess-${i}`] })).status, 401);
  const failures = await until('auth_failure events', async () => (await events('auth_failure')).filter((e) => e.client === service.client_id), (l) => l.length >= 4);
  assert.equal(failures[0].code, 'client');
  assert.equal(failures[0].pep, 'local:authority:public');
  const [q] = await until('stuffing quarantine', quarantines, (l) => l.some((x) => x.origin === 'detector:stuffing'));
  assert.deepEqual([q.scope, q.value], ['source', '127.0.0.1']);
  const r = await request(`${control.adminUrl}/quarantines?scope=source&value=127.0.0.1`, { method: 'DELETE' });
  assert.equal(r.statusCode, 200);
  await r.body.dump();
});

test('a quarantined client obtains no token within 2 s, however it names itself; others are served; released, it is served again', async (t) => {
  const first = await token({ body: await poster() });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const add = await request(`${control.adminUrl}/quarantines`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ scope: 'client', value: 'poster', for: '1m', reason: 'leaked secret' }),
  });
  assert.equal(add.statusCode, 201);
  await add.body.dump();
  const t0 = performance.now();
  const refused = await until('poster refused', async () => token({ body: await poster() }), (r) => r.status === 400, 4000);
  const ms = performance.now() - t0;
  t.diagnostic(`a client quarantine enforced at the authority ${ms.toFixed(0)} ms after the decision`);
  assert.ok(ms < 2000, `${ms} ms`);
  assert.deepEqual(refused.body, { error: 'unauthorized_client', error_description: 'this client is quarantined' });
  // named only in the assertion, in the Basic header (percent-encoded as RFC 6749 says), or at the authorization endpoint
  const { client_id: _, ...assertionOnly } = await poster();
  assert.equal((await token({ body: assertionOnly })).status, 400);
  assert.equal((await token({ basic: ['poster', 'any secret'] })).status, 400);
  const authorize = await request(`${auth.issuer}/auth?client_id=poster&response_type=code&scope=openid`, { dispatcher: tls });
  assert.equal(authorize.statusCode, 403);
  assert.match(String(authorize.headers['content-type']), /application\/problem\+json/);
  assert.equal(((await authorize.body.json()) as { code: string }).code, 'quarantined');
  // another client is served while the body is read first: the provider gets it whole
  assert.equal((await token({ basic: [service.client_id, service.client_secret!] })).status, 200);
  const other = await jwtClient('other-poster');
  const served = await token({ body: await other() });
  assert.equal(served.status, 200, JSON.stringify(served.body));
  const replayed = await other();
  assert.equal((await token({ body: replayed })).status, 200);
  assert.equal((await token({ body: replayed })).status, 401, 'the provider still checks the assertion it was handed (a replayed jti)');
  // an oversized chunked body while a decision is in force: refused, never half-read into the provider
  const big = await request(`${auth.issuer}/token`, {
    method: 'POST',
    dispatcher: tls,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: Readable.from(
      (function* () {
        yield Buffer.from('grant_type=client_credentials&pad=');
        for (let i = 0; i < 80; i++) yield Buffer.alloc(1024, 'a');
      })(),
    ),
  });
  assert.equal(big.statusCode, 413);
  await big.body.dump();
  const refusedEvents = await until('token_refused events', () => events('token_refused'), (l) => l.length >= 3);
  assert.equal(refusedEvents[0].client, 'poster');
  const del = await request(`${control.adminUrl}/quarantines?scope=client&value=poster`, { method: 'DELETE' });
  assert.equal(del.statusCode, 200);
  await del.body.dump();
  await until('poster served again', async () => token({ body: await poster() }), (r) => r.status === 200, 4000);
});

test('the audit lines the authority turns into security events', () => {
  const cases: [Record<string, unknown>, Record<string, unknown> | undefined][] = [
    [{ event: 'login.failure', username: 'alice', source: '10.0.0.1', reason: 'bad credentials' }, { type: 'auth_failure', code: 'login', source: '10.0.0.1', account: 'alice', detail: 'bad credentials' }],
    [{ event: 'mfa.failure', sub: 'u1', source: '10.0.0.1' }, { type: 'auth_failure', code: 'mfa', subject: 'u1', source: '10.0.0.1' }],
    [{ event: 'client.auth_failure', client_id: 'c', source: '10.0.0.2', reason: 'bad credentials' }, { type: 'auth_failure', code: 'client', client: 'c', source: '10.0.0.2', detail: 'bad credentials' }],
    [{ event: 'lockout', username: 'alice', budget: 'user', until: '2026-01-01T00:00:00.000Z' }, { type: 'lockout', code: 'user', account: 'alice', detail: 'until 2026-01-01T00:00:00.000Z' }],
    [{ event: 'token.exchanged', client_id: 'bff', sub: 'u1', jti: 'j1', actor: 'bff' }, { type: 'token_exchange', code: 'exchanged', client: 'bff', subject: 'u1', jti: 'j1', detail: 'actor bff' }],
    [{ event: 'token.exchange_refused', client_id: 'bff', reason: 'audience not allowed' }, { type: 'token_exchange', code: 'refused', client: 'bff', detail: 'audience not allowed' }],
    [{ event: 'login.success', username: 'alice' }, undefined],
    [{ event: 'login.failure', username: 'x'.repeat(5000), source: 's'.repeat(500) }, undefined],
  ];
  for (const [line, expected] of cases) {
    const got = securityEventOf(line);
    if (line.username === 'x'.repeat(5000)) {
      assert.ok(got && got.source!.length <= 64 && got.account!.length <= 128, 'bounded');
      continue;
    }
    assert.deepEqual(got && Object.fromEntries(Object.entries(got).filter(([, v]) => v !== undefined)), expected, String(line.event));
  }
});
