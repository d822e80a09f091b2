// The authority as an enforcement point of the monitor, end to end with a
// real control plane and a real zone authority on one state dir:
// - the authority has its own workload identity (spiffe://<td>/zone/<zone>/authority),
//   follows its signed bundle (the control plane's status lists it) and sends
//   its events over mTLS: they are attributed to that identity;
// - a scripted credential-stuffing run at the token endpoint (wrong client
//   secrets) reaches the control plane as auth_failure events attributed to
//   the authority, and the stuffing detector quarantines the source;
// - a quarantined subject cannot sign in (the page says so), refresh its
//   tokens nor have them exchanged, within 2 s of the decision (measured);
// - issued tokens are reported with their jti and where they were obtained;
// - a client quarantined through the control plane can obtain no token within
//   2 s (measured: from the decision to the first refusal), whether it names
//   itself in the Basic header, in the body (client_secret_post) or at the
//   authorization endpoint; other clients are served, their bodies intact;
//   released, it is served again; each refusal is a token_refused event;
// - the audit → event mapping for every event kind the authority sends;
// - fail closed: an authority that never got a bundle refuses sign-in and
//   tokens (503) but serves discovery; one whose control plane goes away keeps
//   its last bundle and serves sign-in pages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { request, Agent } from 'undici';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { initCa } from '../src/pki/index.ts';
import { authoritySpiffeId } from '../src/pki/spiffe-id.ts';
import { fetchToken } from '../src/cli/dev-token.ts';
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
let controlClosed = false;
closer(() => (controlClosed ? undefined : control.close()));
const auth = await startAuthority({ topology: loadTopology(file), zone: 'public', stateDir: dir, dev: true, logger: quiet, control: control.bundlesUrl });
const AUTHORITY_ID = authoritySpiffeId('authority-monitor.test', 'public');
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

test('the authority has its own workload identity and follows its bundle', async () => {
  assert.equal(auth.spiffeId, AUTHORITY_ID);
  const pep = await until('authority in status', async () => control.status().peps.find((p) => p.id === AUTHORITY_ID), (p) => p !== undefined && p.revision === control.revision());
  assert.equal(pep!.kind, 'authority');
  // the loopback admin API takes no events any more: nobody on this machine can speak for the authority there
  const forged = await request(`${control.adminUrl}/events`, { method: 'POST', headers: { 'content-type': 'application/json', 'gatehouse-component': 'authority:public' }, body: '[]' });
  assert.equal(forged.statusCode, 405);
  await forged.body.dump();
});

test('issued tokens are reported with their jti and where they were obtained', async () => {
  const r = await token({ basic: [service.client_id, service.client_secret!] });
  assert.equal(r.status, 200);
  const jti = JSON.parse(Buffer.from(String(r.body.access_token).split('.')[1], 'base64url').toString()).jti as string;
  const [e] = await until('token_issued event', async () => (await events('token_issued')).filter((x) => x.jti === jti), (l) => l.length === 1);
  assert.equal(e.client, service.client_id);
  assert.equal(e.source, '127.0.0.1');
  assert.equal(e.pep, AUTHORITY_ID);
});

test('a scripted credential-stuffing run at the token endpoint is seen by the control plane and its source quarantined', async () => {
  for (let i = 0; i < 4; i++) assert.equal((await token({ basic: [service.client_id, `guess-${i}`] })).status, 401);
  const failures = await until('auth_failure events', async () => (await events('auth_failure')).filter((e) => e.client === service.client_id), (l) => l.length >= 4);
  assert.equal(failures[0].code, 'client');
  assert.equal(failures[0].pep, AUTHORITY_ID);
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
    [{ event: 'login.success', username: 'alice', sub: 'u1', source: '10.0.0.1' }, { type: 'auth_success', code: 'login', account: 'alice', subject: 'u1', source: '10.0.0.1' }],
    [{ event: 'mfa.challenge', username: 'alice' }, undefined],
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

const addQuarantine = async (scope: string, value: string) => {
  const add = await request(`${control.adminUrl}/quarantines`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ scope, value, for: '1m', reason: 'account takeover suspected' }),
  });
  assert.equal(add.statusCode, 201);
  await add.body.dump();
};

let quarantinedSub = '';
test('a quarantined subject cannot sign in, refresh or exchange its token within 2 s; released, it refreshes again', async (t) => {
  const user = auth.devCredentials!.users[0];
  const web = auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const signIn = () => fetchToken({ authority: auth.issuer, agent: tls, client: web, scopes: [], user });
  const before = await signIn();
  assert.equal(typeof before.refresh_token, 'string', 'the web client gets a refresh token');
  const sub = JSON.parse(Buffer.from(before.access_token.split('.')[1], 'base64url').toString()).sub as string;
  await addQuarantine('subject', sub);
  const t0 = performance.now();
  const refresh = () =>
    request(`${auth.issuer}/token`, {
      method: 'POST',
      dispatcher: tls,
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(web.client_id, web.client_secret!) },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: String(before.refresh_token) }).toString(),
    }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as Record<string, unknown> }));
  // the refresh is tried only once the authority enforces the decision: one that went through before
  // would rotate the refresh token, and the released subject would have none left to refresh with
  await until('the quarantine in force at the authority', async () => control.status().peps.find((p) => p.id === AUTHORITY_ID)?.revision, (r) => r === control.revision(), 4000);
  const ms = performance.now() - t0;
  const refused = await refresh();
  assert.equal(refused.status, 400);
  t.diagnostic(`a subject quarantine enforced at the authority ${ms.toFixed(0)} ms after the decision`);
  assert.ok(ms < 2000, `${ms} ms`);
  assert.equal(refused.body.error, 'invalid_grant');
  assert.match(String(refused.body.error_description), /quarantined/);
  // interactive sign-in: refused after the password, with a page that says why
  await assert.rejects(signIn(), /403 .*quarantined until/);
  // token exchange of the subject's token by a service
  const exchange = await token({
    basic: [service.client_id, service.client_secret!],
    body: { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: before.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' },
  });
  assert.equal(exchange.status, 400);
  assert.equal(exchange.body.error, 'invalid_grant');
  const ev = await until('token_refused for the subject', async () => (await events('token_refused')).filter((e) => e.subject === sub), (l) => l.length >= 3);
  assert.deepEqual([...new Set(ev.map((e) => e.pep))], [AUTHORITY_ID]);
  assert.ok(ev.some((e) => String(e.detail).startsWith('sign-in:') && e.account === user.username), 'the sign-in refusal names the account');
  const del = await request(`${control.adminUrl}/quarantines?scope=subject&value=${encodeURIComponent(sub)}`, { method: 'DELETE' });
  assert.equal(del.statusCode, 200);
  await del.body.dump();
  // released: its refresh token works again (a second sign-in would reuse the TOTP code of this 30 s window)
  const again = await until('refreshes again', refresh, (r) => r.status === 200, 4000);
  assert.equal(typeof again.body.access_token, 'string');
  quarantinedSub = sub;
});

test('the sign-in page of a quarantined subject says so', async () => {
  const user = auth.devCredentials!.users[0];
  const web = auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const sub = quarantinedSub;
  assert.ok(sub, 'the subject of the test before');
  await addQuarantine('subject', sub);
  await until('bundle applied', async () => control.status().peps.find((p) => p.id === AUTHORITY_ID)?.revision, (r) => r === control.revision(), 4000);
  // the authorization request, then the password form as a browser posts it
  const auth0 = await request(`${auth.issuer}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', scope: 'openid', redirect_uri: web.redirect_uris![0], code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' })}`, { dispatcher: tls });
  assert.equal(auth0.statusCode, 303);
  await auth0.body.dump();
  const interaction = String(auth0.headers.location);
  const cookie = ([] as string[]).concat(auth0.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
  const page = await request(new URL(interaction, auth.issuer), { dispatcher: tls, headers: { cookie } });
  const html = await page.body.text();
  const hidden = Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const action = /<form[^>]+action="([^"]*\/login)"/.exec(html)?.[1];
  assert.ok(action, 'a sign-in form');
  const posted = await request(new URL(action!, auth.issuer), {
    method: 'POST',
    dispatcher: tls,
    headers: { cookie, accept: 'text/html', origin: new URL(auth.issuer).origin, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ ...hidden, username: user.username, password: user.password }).toString(),
  });
  assert.equal(posted.statusCode, 403);
  assert.match(await posted.body.text(), /quarantined until/);
  const del = await request(`${control.adminUrl}/quarantines?scope=subject&value=${encodeURIComponent(sub)}`, { method: 'DELETE' });
  await del.body.dump();
});

test('fail closed: without any bundle an authority refuses sign-in and tokens, serves discovery; with its last bundle it keeps serving when the control plane is away', async () => {
  const other = tempDir('gh-monitor-authority-closed-');
  writeFileSync(path.join(other, 'gatehouse.yaml'), `version: 1\ntrustDomain: authority-monitor.test\nzones:\n  public:\n    authority: { listen: 127.0.0.1:0, scopes: [orders:read] }\n`);
  const otherFile = path.join(other, 'gatehouse.yaml');
  await initCa({ stateDir: other, topology: loadTopology(otherFile).topology, passphrase: 'correct horse battery staple' });
  // a control plane that is not there: nothing listens on that port
  const closed = await startAuthority({ topology: loadTopology(otherFile), zone: 'public', stateDir: other, dev: true, logger: quiet, control: 'https://127.0.0.1:9/v1/bundles', firstBundleWaitMs: 100 });
  try {
    const c = closed.devCredentials!.clients.find((x) => x.grant_types.includes('client_credentials') && x.client_secret)!;
    const r = await request(`${closed.issuer}/token`, {
      method: 'POST',
      dispatcher: tls,
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(c.client_id, c.client_secret!) },
      body: 'grant_type=client_credentials&scope=orders:read',
    });
    assert.equal(r.statusCode, 503);
    assert.equal(((await r.body.json()) as { error: string }).error, 'temporarily_unavailable');
    const a = await request(`${closed.issuer}/auth?client_id=x&response_type=code&scope=openid`, { dispatcher: tls });
    assert.equal(a.statusCode, 503);
    await a.body.dump();
    const d = await request(`${closed.issuer}/.well-known/openid-configuration`, { dispatcher: tls });
    assert.equal(d.statusCode, 200);
    await d.body.dump();
    // revoking a token only takes access away: still answered
    const revoke = await request(`${closed.issuer}/token/revocation`, {
      method: 'POST',
      dispatcher: tls,
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(c.client_id, c.client_secret!) },
      body: 'token=unknown-token',
    });
    assert.equal(revoke.statusCode, 200);
    await revoke.body.dump();
  } finally {
    await closed.close();
  }
  // the shared authority, its control plane gone: the last bundle stays in force
  controlClosed = true;
  await control.close();
  const web = auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const a = await request(`${auth.issuer}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', scope: 'openid', redirect_uri: web.redirect_uris![0], code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' })}`, { dispatcher: tls });
  assert.equal(a.statusCode, 303);
  await a.body.dump();
  const cookie = ([] as string[]).concat(a.headers['set-cookie'] ?? []).map((c) => c.split(';')[0]).join('; ');
  const page = await request(new URL(String(a.headers.location), auth.issuer), { dispatcher: tls, headers: { cookie } });
  assert.equal(page.statusCode, 200);
  assert.match(await page.body.text(), /name="password"/);
  assert.equal((await token({ basic: [service.client_id, service.client_secret!] })).status, 200);
});
