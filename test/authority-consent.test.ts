// Consent (OIDC Core §3.1.2.4, §11): a third-party client is consented once
// per scope set, on a server-rendered page; prompt=consent always shows it;
// prompt=none without consent is consent_required; a first-party client skips
// it unless asked. The user sees and revokes consents and sessions at
// /account, and revoking ends the grant's tokens. Bad input: a consent form
// replayed, posted cross-site, with scopes added or an extra field.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { startHarness, REDIRECT, type Harness } from './support/authority-harness.ts';
import { authorize, signInUntilConsent } from './support/authority-flows.ts';
import { parseForm } from './support/authority-browser.ts';
import { tokensOf } from './support/authority-consent.ts';

let h: Harness;
let partner: oidc.Configuration;
let partnerId: string;

before(async () => {
  h = await startHarness();
  const c = await h.auth.admin.clients.add({
    clientId: `partner-${randomUUID().slice(0, 6)}`,
    name: 'Acme Partner App',
    grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [REDIRECT],
    scope: 'openid offline_access orders:read orders:write',
    authMethod: 'client_secret_basic',
  });
  partnerId = c.client_id;
  partner = await h.discover(c.client_id, oidc.ClientSecretBasic(c.client_secret!), { redirect_uris: [REDIRECT] });
});
after(() => h.close());

async function newUser() {
  const u = await h.auth.admin.users.add({ username: `u${randomUUID().slice(0, 8)}` });
  return { username: u.username, password: u.password, totp_secret: u.totp_secret! };
}

const CONSENT_SCOPE = { scope: 'openid offline_access orders:read', prompt: 'consent' };

test('a third-party client: the consent page names the client, the scopes in words and the audience; allowing it yields a refresh token', async () => {
  const user = await newUser();
  const p = await signInUntilConsent(h, partner, user, CONSENT_SCOPE);
  assert.equal(p.page.status, 200);
  const html = p.page.html;
  assert.match(html, /<h1 id="consent-heading">Allow Acme Partner App access\?<\/h1>/);
  assert.match(html, /not operated by this zone/);
  assert.match(html, /Read your orders <small><code>orders:read<\/code>/);
  assert.match(html, /Keep access while you are away/);
  assert.match(html, new RegExp(`<code>${h.auth.audience}</code>`));
  assert.doesNotMatch(html, /orders:write/, 'only what was asked');
  assert.match(p.page.headers.get('content-security-policy')!, /form-action 'self' http:\/\/127\.0\.0\.1:8765/);
  assert.doesNotMatch(p.page.headers.get('content-security-policy')!, /script-src/);
  assert.match(html, /<button type="submit" autofocus>Allow<\/button>/, 'keyboard: the main action has focus');

  const done = await p.browser.submit(p.page, '/consent', {}, h.auth.issuer);
  const tokens = await tokensOf(partner, { ...p, page: done });
  assert.ok(tokens.refresh_token, 'offline_access with prompt=consent, consented: a refresh token');
  assert.equal(decodeJwt(tokens.access_token).client_id, partnerId);
  assert.ok(h.audit.some((e) => e.event === 'consent.granted' && e.client_id === partnerId));

  // consented once for this scope set: prompt=none comes straight back with a code
  const again = await authorize(h, partner, { scope: 'openid orders:read', prompt: 'none' }, p.browser);
  assert.equal(again.page.status, 0);
  assert.ok(new URL(again.page.url).searchParams.get('code'));
  // more than was consented: prompt=none answers consent_required
  const more = await authorize(h, partner, { scope: 'openid orders:read orders:write', prompt: 'none' }, p.browser);
  assert.equal(new URL(more.page.url).searchParams.get('error'), 'consent_required');
  // and without prompt=none, the page again, for the larger set
  const page = await authorize(h, partner, { scope: 'openid orders:read orders:write' }, p.browser);
  assert.equal(page.page.status, 200);
  assert.match(page.page.html, /Change your orders/);
  // prompt=consent shows the page even for what was consented
  const forced = await authorize(h, partner, { scope: 'openid orders:read', prompt: 'consent' }, p.browser);
  assert.equal(forced.page.status, 200);
  assert.match(forced.page.html, /consent-heading/);
});

test('prompt=none before any consent is consent_required; a first-party client skips the page unless prompt=consent', async () => {
  const user = await newUser();
  const p = await signInUntilConsent(h, partner, user, { scope: 'openid orders:read' });
  assert.equal(p.page.status, 200, 'the consent page');
  const none = await authorize(h, partner, { scope: 'openid orders:read', prompt: 'none' }, p.browser);
  assert.equal(new URL(none.page.url).searchParams.get('error'), 'consent_required');

  const web = h.auth.devCredentials!.clients.find((c) => c.client_id === 'public-web')!;
  const first = await h.discover(web.client_id, oidc.ClientSecretBasic(web.client_secret!));
  const silent = await authorize(h, first, { scope: 'openid orders:read' }, p.browser);
  assert.equal(silent.page.status, 0, 'first party: no consent page');
  const asked = await authorize(h, first, { scope: 'openid orders:read', prompt: 'consent' }, p.browser);
  assert.equal(asked.page.status, 200, 'first party with prompt=consent: the page');
  assert.doesNotMatch(asked.page.html, /not operated by this zone/);
});

test('bad input: a consent form posted cross-site, with scopes added, with an extra field, replayed, or denied', async () => {
  const user = await newUser();
  const p = await signInUntilConsent(h, partner, user, { scope: 'openid orders:read' });
  const form = parseForm(p.page.html, '/consent');
  const action = new URL(form.action, p.page.url).toString();
  const post = (fields: Record<string, string>, origin = h.auth.issuer, extra: Record<string, string> = {}) =>
    p.browser.request(action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin, accept: 'application/json', ...extra },
      body: new URLSearchParams(fields).toString(),
    });

  const cross = await post(form.hidden, 'https://evil.example');
  assert.equal(cross.status, 403);
  assert.equal(((await cross.json()) as any).code, 'forbidden');
  const site = await post(form.hidden, h.auth.issuer, { 'sec-fetch-site': 'cross-site' });
  assert.equal(site.status, 403);
  const added = await post({ ...form.hidden, scopes: `${form.hidden.scopes} ${h.auth.audience}|orders:write` });
  assert.equal(added.status, 400);
  assert.equal(((await added.json()) as any).code, 'bad_request');
  const extra = await post({ ...form.hidden, scope: 'orders:write' });
  assert.equal(extra.status, 400);
  const noCsrf = await post({ scopes: form.hidden.scopes });
  assert.equal(noCsrf.status, 403);
  assert.ok(h.audit.some((e) => e.event === 'consent.refused'));

  const ok = await post(form.hidden);
  assert.equal(ok.status, 303);
  const replay = await post(form.hidden);
  assert.equal(replay.status, 400, 'the same form again: the request is complete');
  await ok.arrayBuffer();

  // Deny: access_denied at the client
  const user2 = await newUser();
  h.clock.advance(30_000);
  const q = await signInUntilConsent(h, partner, user2, { scope: 'openid orders:read' });
  const denied = await q.browser.submit(q.page, '/abort', {}, h.auth.issuer);
  assert.equal(new URL(denied.url).searchParams.get('error'), 'access_denied');
});

test('/account lists consents and sessions; revoking a consent ends its tokens; ending a session signs it out', async () => {
  const user = await newUser();
  h.clock.advance(30_000);
  const p = await signInUntilConsent(h, partner, user, CONSENT_SCOPE);
  const tokens = await tokensOf(partner, { ...p, page: await p.browser.submit(p.page, '/consent', {}, h.auth.issuer) });
  assert.equal((await oidc.tokenIntrospection(partner, tokens.access_token)).active, true);

  const account = await p.browser.follow(h.auth.accountUrl, h.auth.issuer);
  assert.equal(account.status, 200);
  assert.ok(p.browser.cookies.has('gh_session_public'), 'cookies are named per zone (two zones on one host keep their sessions)');
  assert.match(account.html, /<h2>Applications you allowed<\/h2>/);
  assert.match(account.html, /<strong>Acme Partner App<\/strong> <small>since \d{4}-\d\d-\d\d: [^<]*Know who you are[^<]*Read your orders/);
  assert.match(account.html, /aria-label="Revoke access of Acme Partner App"/);
  assert.match(account.html, /<strong>This browser<\/strong> <small>signed in .* with a second factor; used by /);

  // a revoke posted cross-site is refused
  const form = parseForm(account.html, '/account/consents/revoke');
  const cross = await p.browser.request(new URL(form.action, h.auth.issuer).toString(), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example', accept: 'application/json' },
    body: new URLSearchParams(form.hidden).toString(),
  });
  assert.equal(cross.status, 403);

  const revoked = await p.browser.submit(account, '/account/consents/revoke', {}, h.auth.issuer);
  assert.equal(revoked.status, 200);
  assert.match(revoked.html, /access was revoked/);
  assert.match(revoked.html, /You have not allowed any other application/);
  assert.equal((await oidc.tokenIntrospection(partner, tokens.access_token)).active, false, 'the access token is revoked');
  await assert.rejects(oidc.refreshTokenGrant(partner, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant', 'the refresh token is gone');
  const feedRow = await h.auth.admin.clients.list();
  assert.ok(feedRow.find((c) => c.client_id === partnerId)?.first_party === false);
  const none = await authorize(h, partner, { scope: 'openid orders:read', prompt: 'none' }, p.browser);
  assert.equal(new URL(none.page.url).searchParams.get('error'), 'consent_required', 'consent must be given again');

  // ending this browser's session signs it out
  const again = await p.browser.follow(h.auth.accountUrl, h.auth.issuer);
  const unknown = await p.browser.submit(again, '/account/sessions/end', { session: 'not-a-session' }, h.auth.issuer);
  assert.equal(unknown.status, 404);
  const ended = await p.browser.submit(again, '/account/sessions/end', {}, h.auth.issuer);
  assert.equal(ended.status, 401, 'signed out: the account page asks to sign in');
  assert.ok(h.audit.some((e) => e.event === 'session.ended'));
});
