// What a user and the zone's gateway rely on when access ends: RP-initiated
// logout ends the session and the grants made in it (refresh tokens stop,
// access tokens read inactive), and every revocation (RFC 7009, refresh-token
// reuse, grant revocation by logout, client removal) reaches the gateway
// through GET /revocations, which only an allowed client may read.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { startHarness, type Harness, REDIRECT, tempDir, writeTopology, trustingFetch, silentLogger } from './support/authority-harness.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startAuthority } from '../src/authority/index.ts';
import { signIn, codeTokens, authorize } from './support/authority-flows.ts';

let h: Harness;
let web: oidc.Configuration;
let service: oidc.Configuration;
let gateway: { id: string; secret: string };

before(async () => {
  h = await startHarness();
  const creds = h.auth.devCredentials!;
  const s = creds.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  const w = creds.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  service = await h.discover(s.client_id, oidc.ClientSecretBasic(s.client_secret!));
  web = await h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
  const g = await h.auth.admin.clients.add({
    clientId: 'public-gateway',
    grantTypes: ['client_credentials'],
    scope: '',
    authMethod: 'client_secret_basic',
    revocationFeed: true,
  });
  gateway = { id: g.client_id, secret: g.client_secret! };
});
after(() => h.close());

const basic = (id: string, secret: string) => 'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');

interface Feed {
  jtis: { jti: string; exp: number }[];
  until: number;
}

async function feed(since?: number, headers: Record<string, string> = {}): Promise<{ status: number; body: Feed; headers: Headers }> {
  const res = await h.fetch(`${h.auth.revocationFeed}${since === undefined ? '' : `?since=${since}`}`, {
    headers: { authorization: basic(gateway.id, gateway.secret), ...headers },
  });
  return { status: res.status, body: res.status === 200 ? ((await res.json()) as Feed) : ((await res.text()) as any), headers: res.headers };
}

const jtisOf = (f: Feed) => new Set(f.jtis.map((j) => j.jti));

async function newUser() {
  const u = await h.auth.admin.users.add({ username: `r${randomUUID().slice(0, 8)}` });
  return { username: u.username, password: u.password, totp_secret: u.totp_secret!, id: u.id };
}

test('the revocation feed answers only a client allowed to read it; everything else is problem+json', async () => {
  const problems: [string, RequestInit][] = [
    ['', {}],
    ['', { headers: { authorization: basic(gateway.id, 'wrong-secret-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx') } }],
    ['', { headers: { authorization: basic('nobody', gateway.secret) } }],
    ['', { headers: { authorization: 'Basic !!!' } }],
    ['', { headers: { authorization: 'Bearer ' + 'x'.repeat(40) } }],
  ];
  // a client with the right secret but without the revocation-feed permission
  const svc = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  problems.push(['', { headers: { authorization: basic(svc.client_id, svc.client_secret!) } }]);
  for (const [query, init] of problems) {
    const res = await h.fetch(`${h.auth.revocationFeed}${query}`, init);
    assert.equal(res.status, 401, JSON.stringify(init.headers));
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.match(res.headers.get('www-authenticate')!, /^Basic /);
    const body = (await res.json()) as any;
    assert.equal(body.code, 'unauthorized');
    assert.equal(body.request_id, res.headers.get('x-request-id'));
  }
  const auth = { authorization: basic(gateway.id, gateway.secret) };
  for (const [query, status] of [
    ['?since=abc', 400],
    ['?since=-1', 400],
    [`?since=${Date.now() + 3_600_000}`, 400],
    ['?since=1&since=2', 400],
    ['?jti=x', 400],
  ] as const) {
    const res = await h.fetch(`${h.auth.revocationFeed}${query}`, { headers: auth });
    assert.equal(res.status, status, query);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
  }
  const post = await h.fetch(h.auth.revocationFeed, { method: 'POST', headers: auth });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');

  const ok = await feed();
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('content-type'), 'application/json');
  assert.equal(ok.headers.get('cache-control'), 'private, max-age=5');
  assert.ok(Array.isArray(ok.body.jtis));
  assert.ok(Math.abs(ok.body.until - (h.clock.now() - 5_000)) < 2_000, 'until lags now by the 5 s overlap');
  const again = await feed(undefined, { 'if-none-match': ok.headers.get('etag')! });
  assert.equal(again.status, 304, 'nothing new: 304');
});

test('RFC 7009 revocation, refresh-token reuse and refresh-token revocation reach the feed with the token exp', async () => {
  // client credentials token revoked by its client
  const cc = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  const ccJti = decodeJwt(cc.access_token).jti!;
  assert.ok(!jtisOf((await feed()).body).has(ccJti), 'not listed before it is revoked');
  await oidc.tokenRevocation(service, cc.access_token);
  const listed = (await feed()).body.jtis.find((j) => j.jti === ccJti);
  assert.deepEqual(listed, { jti: ccJti, exp: decodeJwt(cc.access_token).exp }, 'visible as soon as the revocation answered');

  // refresh-token reuse: every access token of the grant
  const user = await newUser();
  const first = await codeTokens(web, await signIn(h, web, user));
  const second = await oidc.refreshTokenGrant(web, first.refresh_token!);
  await assert.rejects(oidc.refreshTokenGrant(web, first.refresh_token!), (e: any) => e.error === 'invalid_grant');
  let jtis = jtisOf((await feed()).body);
  assert.ok(jtis.has(decodeJwt(first.access_token).jti!), 'the first access token of the reused grant');
  assert.ok(jtis.has(decodeJwt(second.access_token).jti!), 'the access token of the rotated refresh token');

  // the client revokes its refresh token: the grant ends
  const user2 = await newUser();
  const t2 = await codeTokens(web, await signIn(h, web, user2));
  await oidc.tokenRevocation(web, t2.refresh_token!);
  jtis = jtisOf((await feed()).body);
  assert.ok(jtis.has(decodeJwt(t2.access_token).jti!));
  assert.equal((await oidc.tokenIntrospection(web, t2.access_token)).active, false);

  // a live token is never listed
  const live = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  assert.ok(!jtis.has(decodeJwt(live.access_token).jti!));
});

test('a token exchanged from a user token ends with the user grant', async () => {
  const user = await newUser();
  const tokens = await codeTokens(web, await signIn(h, web, user));
  const exchanged = await oidc.genericGrantRequest(service, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: tokens.access_token,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  });
  const twice = await oidc.genericGrantRequest(service, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: exchanged.access_token,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
  });
  assert.equal((await oidc.tokenIntrospection(service, exchanged.access_token)).active, true);
  await oidc.tokenRevocation(web, tokens.refresh_token!);
  const jtis = jtisOf((await feed()).body);
  for (const t of [exchanged, twice]) {
    assert.ok(jtis.has(decodeJwt(t.access_token).jti!), 'listed for the gateway');
    assert.equal((await oidc.tokenIntrospection(service, t.access_token)).active, false, 'inactive at introspection');
  }
});

test('removing a client lists the access tokens of its grants', async () => {
  const c = await h.auth.admin.clients.add({
    clientId: `gone-${randomUUID().slice(0, 6)}`,
    grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [REDIRECT],
    scope: 'openid orders:read',
    authMethod: 'client_secret_basic',
    firstParty: true,
  });
  const cfg = await h.discover(c.client_id, oidc.ClientSecretBasic(c.client_secret!), { redirect_uris: [REDIRECT] });
  const user = await newUser();
  const tokens = await codeTokens(cfg, await signIn(h, cfg, user, { scope: 'openid orders:read' }));
  await h.auth.admin.clients.remove(c.client_id);
  assert.ok(jtisOf((await feed()).body).has(decodeJwt(tokens.access_token).jti!));
});

test('logout (RP-initiated): the session and every grant made in it end; the gateway learns the tokens', async () => {
  const user = await newUser();
  const login = await signIn(h, web, user);
  const tokens = await codeTokens(web, login);
  const browser = login.browser;
  // a second application signed in through the same session (no login page: the session is there)
  const other = await h.auth.admin.clients.add({
    clientId: `second-${randomUUID().slice(0, 6)}`,
    grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [REDIRECT],
    scope: 'openid orders:read',
    authMethod: 'client_secret_basic',
    firstParty: true,
  });
  const otherCfg = await h.discover(other.client_id, oidc.ClientSecretBasic(other.client_secret!), { redirect_uris: [REDIRECT] });
  const sso = await authorize(h, otherCfg, { scope: 'openid orders:read' }, browser);
  assert.equal(sso.page.status, 0, 'single sign-on: straight back with a code');
  const otherTokens = await codeTokens(otherCfg, { callback: new URL(sso.page.url), verifier: sso.verifier, state: sso.state, browser });
  assert.equal((await browser.follow(h.auth.accountUrl, h.auth.issuer)).status, 200, 'signed in at the authority');

  const end = oidc.buildEndSessionUrl(web, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: REDIRECT, state: 'bye' });
  const page = await browser.follow(end.toString(), h.auth.issuer);
  assert.equal(page.status, 200);
  assert.doesNotMatch(page.headers.get('content-security-policy')!, /script-src/);
  // browsers check the redirect after the POST against form-action: the client's post-logout URI must be in it
  assert.match(page.headers.get('content-security-policy')!, new RegExp(`form-action 'self' ${new URL(REDIRECT).origin}(;|$)`));
  assert.doesNotMatch(page.html, /<script/i);
  assert.match(page.html, /<button type="submit" form="op.logoutForm" name="logout" value="yes"/);
  const done = await browser.submit(page, '/session/end/confirm', { logout: 'yes' }, h.auth.issuer);
  assert.equal(done.status, 0);
  const back = new URL(done.url);
  assert.equal(back.origin + back.pathname, REDIRECT);
  assert.equal(back.searchParams.get('state'), 'bye');
  assert.ok(h.audit.some((e) => e.event === 'logout'));

  // what the user relies on: nothing of that session works any more
  for (const [cfg, t, who] of [[web, tokens, 'the app that signed out'], [otherCfg, otherTokens, 'the other app of the session']] as const) {
    await assert.rejects(oidc.refreshTokenGrant(cfg, t.refresh_token!), (e: any) => e.error === 'invalid_grant', `${who}: refresh`);
    assert.equal((await oidc.tokenIntrospection(cfg, t.access_token)).active, false, `${who}: access token inactive`);
  }
  const jtis = jtisOf((await feed()).body);
  assert.ok(jtis.has(decodeJwt(tokens.access_token).jti!) && jtis.has(decodeJwt(otherTokens.access_token).jti!), 'the gateway learns both');
  assert.equal((await browser.follow(h.auth.accountUrl, h.auth.issuer)).status, 401, 'no session at the authority');
  const silent = await authorize(h, web, { prompt: 'none' }, browser);
  assert.equal(new URL(silent.page.url).searchParams.get('error'), 'login_required', 'no silent sign-in after logout');
});

test('logout of one application only ends its grant; the session and other applications go on', async () => {
  const user = await newUser();
  const login = await signIn(h, web, user);
  const tokens = await codeTokens(web, login);
  const end = oidc.buildEndSessionUrl(web, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: REDIRECT });
  const page = await login.browser.follow(end.toString(), h.auth.issuer);
  const done = await login.browser.submit(page, '/session/end/confirm', {}, h.auth.issuer);
  assert.equal(done.status, 0);
  await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant');
  assert.equal((await login.browser.follow(h.auth.accountUrl, h.auth.issuer)).status, 200, 'still signed in at the authority');
  // a forged confirmation (no xsrf from the page) does nothing
  const forged = await login.browser.request(`${h.auth.issuer}/session/end/confirm`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'logout=yes&xsrf=forged',
  });
  assert.equal(forged.status, 400);
  assert.equal((await login.browser.follow(h.auth.accountUrl, h.auth.issuer)).status, 200);
});

test('the feed is incremental (since = the previous until) and forgets tokens once they expired', async () => {
  const a = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  await oidc.tokenRevocation(service, a.access_token);
  h.clock.advance(10_000);
  const first = await feed();
  assert.ok(jtisOf(first.body).has(decodeJwt(a.access_token).jti!));
  const b = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  await oidc.tokenRevocation(service, b.access_token);
  const next = await feed(first.body.until);
  assert.ok(jtisOf(next.body).has(decodeJwt(b.access_token).jti!), 'the new revocation');
  assert.ok(!jtisOf(next.body).has(decodeJwt(a.access_token).jti!), 'not what the previous answer already gave');
  // an entry stays until its token expired (plus a minute of leeway), then drops out
  h.clock.advance(300_000 + 61_000);
  const later = await feed();
  assert.ok(!jtisOf(later.body).has(decodeJwt(a.access_token).jti!) && !jtisOf(later.body).has(decodeJwt(b.access_token).jti!));
});

test("dev mode seeds the feed-only client the zone's revocationFeed names: it reads the feed and nothing else, with the same secret after a restart", async () => {
  const tmp = tempDir();
  const zone = (clientId: string) =>
    `gateway: {}\nauthority:\n  listen: 127.0.0.1:0\n  scopes: [orders:read]\nauthentication:\n  revocationFeed: { clientId: ${clientId}, clientSecretEnv: GH_TEST_FEED_SECRET }\n`;
  const stateDir = path.join(tmp.dir, 'state');
  const start = (clientId: string) =>
    startAuthority({ topology: loadTopology(writeTopology(tmp.dir, { public: zone(clientId) })), zone: 'public', stateDir, dev: true, logger: silentLogger() });
  let auth = await start('gateway-public');
  const tf = trustingFetch(auth.caFile!);
  try {
    const seeded = auth.devFeedClient!;
    assert.equal(seeded.client_id, 'gateway-public');
    assert.ok(!auth.devCredentials!.clients.some((c) => c.client_id === 'gateway-public'), 'not one of the demo identities');
    const listed = (await auth.admin.clients.list()).find((c) => c.client_id === 'gateway-public')!;
    assert.deepEqual([listed.grant_types, listed.scope, listed.revocation_feed], [[], '', true]);
    const feedClient = { id: seeded.client_id, secret: seeded.client_secret };
    assert.equal((await tf.fetch(auth.revocationFeed, { headers: { authorization: basic(feedClient.id, feedClient.secret) } })).status, 200);
    for (const [endpoint, form] of [
      [auth.tokenEndpoint, { grant_type: 'client_credentials' }],
      [auth.introspectionEndpoint, { token: 'x' }],
      [auth.revocationEndpoint, { token: 'x' }],
    ] as const) {
      const res = await tf.fetch(endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(feedClient.id, feedClient.secret) },
        body: new URLSearchParams(form).toString(),
      });
      assert.equal(res.status, 401, endpoint);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_client', `${endpoint}: the feed client is no OAuth client`);
    }
    // a feed-only client holds nothing else; a client without grant types is one
    await assert.rejects(auth.admin.clients.add({ grantTypes: [], scope: '', authMethod: 'client_secret_basic' }), /at least one grant type/);
    await assert.rejects(auth.admin.clients.add({ grantTypes: [], scope: 'orders:read', authMethod: 'client_secret_basic', revocationFeed: true }), /no scope/);
    await auth.close();
    auth = await start('gateway-public');
    assert.deepEqual(auth.devFeedClient, seeded, 'the same client and secret after a restart');
    await auth.close();
    // a name that is already a client able to do more is never taken over
    await assert.rejects(start('public-service'), /revocationFeed\.clientId "public-service" is already a client that is not a feed-only client/);
  } finally {
    await auth.close();
    await tf.close();
    tmp.remove();
  }
});
