// WebAuthn (passkeys, security keys) as the second factor, end to end over
// HTTP with a software authenticator (test/support/authority-webauthn.ts):
// enrolment at /account by a signed-in user, sign-in with an assertion instead
// of a TOTP code, amr/acr in the tokens, and hostile responses (replay,
// challenge reuse, wrong origin, wrong RP ID, counter regression, another
// user's credential, malformed and oversized) that each fail precisely and
// change nothing. The PostgreSQL case runs a passkey-only user end to end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { randomUUID } from 'node:crypto';
import { startHarness, tempDir, postgresForTests, DEFAULT_AUTHORITY, REDIRECT, type Harness } from './support/authority-harness.ts';
import { authorize, signIn, codeTokens } from './support/authority-flows.ts';
import { Browser, type Page } from './support/authority-browser.ts';
import { SoftAuthenticator, pageOptions, FLAG_UP, FLAG_AT } from './support/authority-webauthn.ts';
import { ACR_MFA } from '../src/authority/index.ts';

let h: Harness;
let web: oidc.Configuration;

async function webConfig(harness: Harness) {
  const w = harness.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  return harness.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
}

before(async () => {
  h = await startHarness();
  web = await webConfig(h);
});
after(() => h.close());

interface TestUser {
  id: string;
  username: string;
  password: string;
  totp_secret: string;
}

async function newUser(harness = h): Promise<TestUser> {
  const u = await harness.auth.admin.users.add({ username: `w${randomUUID().slice(0, 8)}` });
  return { id: u.id, username: u.username, password: u.password, totp_secret: u.totp_secret! };
}

/** Signs in with password + TOTP, opens /account and adds the authenticator there. */
async function enrol(user: TestUser, authn: SoftAuthenticator, name = 'Desk key', harness = h, config = web) {
  const login = await signIn(harness, config, user);
  const page = await login.browser.follow(harness.auth.accountUrl, harness.auth.issuer);
  assert.equal(page.status, 200, page.html);
  const options = pageOptions(page.html, 'create');
  const done = await login.browser.submit(page, '/account/webauthn/register', { response: JSON.stringify(authn.register(options)), name }, harness.auth.issuer);
  return { done, browser: login.browser, options, page };
}

/** Starts a sign-in and passes the password step; returns the second-factor page. */
async function toSecondFactor(user: TestUser, harness = h, config = web, params: Record<string, string> = {}) {
  const { page, browser, verifier, state } = await authorize(harness, config, params);
  const second = await browser.submit(page, '/login', { username: user.username, password: user.password }, harness.auth.issuer);
  assert.equal(second.status, 200, second.html.slice(0, 300));
  return { second, browser, verifier, state };
}

const send = (browser: Browser, page: Page, response: unknown, harness = h) =>
  browser.submit(page, '/webauthn', { response: typeof response === 'string' ? response : JSON.stringify(response) }, harness.auth.issuer);

const alertOf = (html: string) => /role="alert"[^>]*>([^<]*)</.exec(html)?.[1]?.replace(/&#39;/g, "'");

async function stored(userId: string, harness = h) {
  return harness.auth.admin.users.passkeys(userId);
}

test('a signed-in user adds a security key at /account, then signs in with it: amr hwk+mfa, acr MFA', async () => {
  const user = await newUser();
  const key = new SoftAuthenticator(h.auth.issuer);
  const { done, page } = await enrol(user, key, 'Desk key');

  // the account page: strict CSP, the one same-origin script, keyboard-usable controls
  const csp = page.headers.get('content-security-policy')!;
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|'sha|'nonce/);
  assert.deepEqual([...page.html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]), ['<script src="/assets/webauthn.js" defer>']);
  assert.doesNotMatch(page.html, /<script>|\son[a-z]+=|style="|tabindex="-/i);
  assert.match(page.html, /<button type="submit">Add a passkey<\/button>/);
  assert.match(page.html, /<label for="passkey-name">/);
  const script = await h.fetch(`${h.auth.issuer}/assets/webauthn.js`);
  assert.equal(script.status, 200);
  assert.match(script.headers.get('content-type')!, /^text\/javascript/);
  const source = await script.text();
  assert.match(source, /navigator\.credentials\.create/);
  assert.doesNotMatch(source, /innerHTML|eval\(|new Function/);

  assert.equal(done.status, 200);
  assert.match(done.url, /\/account\?done=added$/);
  assert.match(done.html, /The passkey was added/);
  assert.match(done.html, /Desk key/);
  const [saved] = await stored(user.id);
  assert.equal(saved.id, key.id);
  assert.equal(saved.counter, 0);
  assert.equal(saved.deviceType, 'singleDevice');
  assert.deepEqual(saved.transports, ['usb']);
  assert.ok(h.audit.some((e) => e.event === 'webauthn.registered' && e.sub === user.id && e.credential === key.id));
  assert.equal((await h.auth.admin.users.byId(user.id))!.passkeys, 1);

  // sign-in: the second step offers the passkey (and still the code)
  // acr_values asks for the acr in the ID token too (OpenID Connect Core 3.1.2.1)
  const { second, browser, verifier, state } = await toSecondFactor(user, h, web, { acr_values: ACR_MFA });
  assert.match(second.headers.get('content-security-policy')!, /script-src 'self'/);
  assert.match(second.html, /data-webauthn="get"/);
  assert.match(second.html, /name="otp"/, 'the TOTP form is still there');
  const options = pageOptions(second.html, 'get');
  assert.deepEqual(options.allowCredentials.map((c: { id: string }) => c.id), [key.id]);
  assert.equal(options.rpId, new URL(h.auth.issuer).hostname);
  const finished = await send(browser, second, key.assert(options));
  assert.equal(finished.status, 0, finished.html.slice(0, 400));
  const tokens = await codeTokens(web, { callback: new URL(finished.url), verifier, state, browser });
  const at = decodeJwt(tokens.access_token);
  assert.deepEqual(at.amr, ['pwd', 'hwk', 'mfa']);
  assert.equal(at.acr, ACR_MFA);
  const id = tokens.claims()!;
  assert.equal(id.acr, ACR_MFA);
  const refreshed = await oidc.refreshTokenGrant(web, tokens.refresh_token!);
  assert.deepEqual(decodeJwt(refreshed.access_token).amr, ['pwd', 'hwk', 'mfa'], 'a refreshed token keeps how the user signed in');
  const [after1] = await stored(user.id);
  assert.equal(after1.counter, 1);
  assert.ok(after1.lastUsedAt);
  assert.ok(h.audit.some((e) => e.event === 'mfa.success' && e.sub === user.id && e.credential === key.id));

  // removal from /account (the user still has TOTP)
  const acct = await browser.follow(h.auth.accountUrl, h.auth.issuer);
  const removed = await browser.submit(acct, '/account/webauthn/remove', {}, h.auth.issuer);
  assert.match(removed.url, /done=removed/);
  assert.equal((await stored(user.id)).length, 0);
  const noPasskey = await toSecondFactor(user);
  assert.doesNotMatch(noPasskey.second.html, /data-webauthn|<script/, 'no passkey, no script');
});

test('a synced passkey (backup eligible) signs in as amr swk', async () => {
  const user = await newUser();
  const passkey = new SoftAuthenticator(h.auth.issuer, { backupEligible: true });
  await enrol(user, passkey, 'Phone');
  assert.equal((await stored(user.id))[0].deviceType, 'multiDevice');
  const { second, browser, verifier, state } = await toSecondFactor(user);
  const finished = await send(browser, second, passkey.assert(pageOptions(second.html, 'get')));
  const tokens = await codeTokens(web, { callback: new URL(finished.url), verifier, state, browser });
  assert.deepEqual(decodeJwt(tokens.access_token).amr, ['pwd', 'swk', 'mfa']);
});

test('hostile assertions fail precisely and change nothing', async () => {
  const alice = await newUser();
  const bob = await newUser();
  const aliceKey = new SoftAuthenticator(h.auth.issuer);
  const bobKey = new SoftAuthenticator(h.auth.issuer);
  await enrol(alice, aliceKey);
  await enrol(bob, bobKey);

  // a good sign-in, whose assertion is then replayed
  let flow = await toSecondFactor(alice);
  const good = aliceKey.assert(pageOptions(flow.second.html, 'get'));
  const ok = await send(flow.browser, flow.second, good);
  assert.equal(ok.status, 0);
  const counterAfterGood = (await stored(alice.id))[0].counter;

  flow = await toSecondFactor(alice);
  let page = flow.second;
  const expectRefused = async (response: unknown, status: number, message: RegExp, what: string) => {
    const before = await stored(alice.id);
    const r = await send(flow.browser, page, response);
    assert.equal(r.status, status, `${what}: ${r.html.slice(0, 300)}`);
    assert.match(alertOf(r.html) ?? '', message, what);
    assert.deepEqual(await stored(alice.id), before, `${what} changes nothing`);
    page = r; // the answer carries a fresh challenge
    return r;
  };
  const opts = () => pageOptions(page.html, 'get');

  await expectRefused(good, 401, /expired or was already used/, 'replayed assertion');
  const burnt = opts().challenge;
  await expectRefused(aliceKey.assert(opts(), { origin: 'https://evil.example' }), 401, /another origin/, 'wrong origin');
  // challenge reuse: a well-formed, well-signed assertion over the challenge that attempt consumed
  await expectRefused(aliceKey.assert({ ...opts(), challenge: burnt }), 401, /expired or was already used/, 'challenge reuse');
  await expectRefused(aliceKey.assert(opts(), { origin: h.auth.issuer.replace('https:', 'http:') }), 401, /another origin/, 'same host over http');
  await expectRefused(aliceKey.assert(opts(), { rpId: 'evil.example' }), 401, /another relying party/, 'wrong RP ID');
  await expectRefused(aliceKey.assert(opts(), { counter: counterAfterGood }), 401, /counter went backwards/, 'counter not above the stored one');
  await expectRefused(aliceKey.assert(opts(), { counter: 0 }), 401, /counter went backwards/, 'counter reset to 0');
  await expectRefused(bobKey.assert(opts()), 401, /not registered for this account/, "another user's credential");
  await expectRefused(aliceKey.assert(opts(), { type: 'webauthn.create' }), 401, /another kind of request/, 'a registration response type');
  await expectRefused(aliceKey.assert(opts(), { crossOrigin: true }), 401, /frame of another site/, 'cross-origin iframe');
  await expectRefused(aliceKey.assert(opts(), { flags: 0x04 }), 401, /present/, 'user presence flag missing');
  await expectRefused(aliceKey.assert(opts(), { userHandle: Buffer.from(bob.id).toString('base64url') }), 401, /another account/, 'user handle of another account');
  const forged = aliceKey.assert(opts());
  forged.response.signature = bobKey.assert(opts()).response.signature;
  await expectRefused(forged, 401, /signature or data is not valid/, 'signature by another key');

  // a challenge is replaced by the next one issued to the same interaction
  const replaced = opts().challenge;
  await expectRefused('not json', 400, /malformed/, 'not JSON');
  await expectRefused(aliceKey.assert({ ...opts(), challenge: replaced }), 401, /expired or was already used/, 'a replaced challenge');
  // a challenge issued to another interaction (bob's) is not alice's
  const bobFlow = await toSecondFactor(bob);
  await expectRefused(aliceKey.assert(opts(), { challenge: pageOptions(bobFlow.second.html, 'get').challenge }), 401, /expired or was already used/, "another interaction's challenge");

  // after all that, the real authenticator still signs in, and its counter moves on
  const fine = await send(flow.browser, page, aliceKey.assert(opts()));
  assert.equal(fine.status, 0, fine.html.slice(0, 300));
  assert.ok((await stored(alice.id))[0].counter > counterAfterGood);
  for (const reason of ['challenge_unknown', 'wrong_origin', 'wrong_rp_id', 'counter_regression', 'not_this_users_credential'])
    assert.ok(h.audit.some((e) => e.event === 'mfa.failure' && e.sub === alice.id && e.reason === `passkey: ${reason}`), reason);
  assert.ok(!JSON.stringify(h.audit).includes(good.response.signature), 'no assertion in the audit log');

  // short-lived: a challenge answered after its two minutes is refused
  const slow = await toSecondFactor(alice);
  h.clock.advance(121_000);
  const late = await send(slow.browser, slow.second, aliceKey.assert(pageOptions(slow.second.html, 'get')));
  assert.equal(late.status, 401);
  assert.match(alertOf(late.html)!, /expired or was already used/);
  const inTime = await send(slow.browser, late, aliceKey.assert(pageOptions(late.html, 'get')));
  assert.equal(inTime.status, 0, 'the fresh challenge of the answer page works');
});

test('malformed, oversized and CSRF-less passkey answers; 20 failures lock the passkey step', async () => {
  const carol = await newUser();
  const key = new SoftAuthenticator(h.auth.issuer);
  await enrol(carol, key);
  const flow = await toSecondFactor(carol);
  let page = flow.second;
  const opts = () => pageOptions(page.html, 'get');
  const expectRefused = async (response: unknown, status: number, message: RegExp, what: string) => {
    const before = await stored(carol.id);
    const r = await send(flow.browser, page, response);
    assert.equal(r.status, status, `${what}: ${r.html.slice(0, 300)}`);
    assert.match(alertOf(r.html) ?? '', message, what);
    assert.deepEqual(await stored(carol.id), before, `${what} changes nothing`);
    page = r;
  };
  for (const [junk, what] of [
    ['{}', 'empty object'],
    [JSON.stringify({ ...key.assert(opts()), rawId: 'AAAA' }), 'id and rawId differ'],
    [JSON.stringify({ ...key.assert(opts()), type: 'password' }), 'not a public-key credential'],
    [JSON.stringify({ ...key.assert(opts()), response: { clientDataJSON: '!!!', authenticatorData: 'AA', signature: 'AA' } }), 'not base64url'],
    [JSON.stringify({ ...key.assert(opts()), response: { ...key.assert(opts()).response, clientDataJSON: Buffer.from('[1,2]').toString('base64url') } }), 'clientDataJSON not an object'],
    [JSON.stringify([1, 2, 3]), 'an array'],
    ['', 'empty'],
  ] as const)
    await expectRefused(junk, 400, /malformed/, what);

  // oversized: refused before it is parsed
  const big = await send(flow.browser, page, 'x'.repeat(40_000));
  assert.equal(big.status, 413);
  const bigField = await send(flow.browser, page, JSON.stringify({ ...key.assert(opts()), pad: 'x'.repeat(20_000) }));
  assert.equal(bigField.status, 400, 'a response over 16 KiB inside a form under 32 KiB');
  page = bigField;

  // the CSRF token is checked before anything
  const noCsrf = await flow.browser.request(`${h.auth.issuer}${/action="(\/interaction\/[^"]+\/webauthn)"/.exec(page.html)![1]}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', origin: h.auth.issuer },
    body: new URLSearchParams({ response: JSON.stringify(key.assert(opts())) }).toString(),
  });
  assert.equal(noCsrf.status, 403);
  assert.equal(noCsrf.headers.get('content-type'), 'application/problem+json');
  assert.ok(((await noCsrf.json()) as any).request_id);

  // nothing of that locked the real key out: it signs in (and clears the failure count)
  const fine = await send(flow.browser, page, key.assert(opts()));
  assert.equal(fine.status, 0, fine.html.slice(0, 300));
  assert.ok(h.audit.some((e) => e.event === 'mfa.failure' && e.sub === carol.id && e.reason === 'passkey: malformed'));

  // hammering: 20 failures lock the passkey step for the account, even for a valid answer
  const dave = await newUser();
  const daveKey = new SoftAuthenticator(h.auth.issuer);
  await enrol(dave, daveKey);
  const d = await toSecondFactor(dave);
  let dp = d.second;
  for (let i = 0; i < 20; i++) {
    dp = await send(d.browser, dp, '{}');
    assert.equal(dp.status, 400, `attempt ${i + 1}`);
  }
  const locked = await send(d.browser, dp, daveKey.assert(pageOptions(dp.html, 'get')));
  assert.equal(locked.status, 429);
  assert.ok(Number(locked.headers.get('retry-after')) > 0);
  assert.ok(h.audit.some((e) => e.event === 'lockout' && e.sub === dave.id && e.budget === 'webauthn'));
});

test('hostile enrolment: no session, stale sign-in, CSRF, wrong origin or RP ID, challenge reuse, a credential twice, junk', async () => {
  // no session
  const anon = new Browser(h.fetch);
  const noSession = await anon.follow(h.auth.accountUrl, h.auth.issuer);
  assert.equal(noSession.status, 401);
  assert.match(noSession.html, /not signed in/);
  const post = await anon.request(`${h.auth.issuer}/account/webauthn/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: 'csrf=x&response=%7B%7D',
  });
  assert.equal(post.status, 401);
  assert.equal(post.headers.get('content-type'), 'application/problem+json');
  assert.ok(((await post.json()) as any).request_id);

  const user = await newUser();
  const login = await signIn(h, web, user);
  const browser = login.browser;
  let page = await browser.follow(h.auth.accountUrl, h.auth.issuer);
  const key = new SoftAuthenticator(h.auth.issuer);
  const expectRefused = async (fields: Record<string, string>, status: number, message: RegExp, what: string) => {
    const r = await browser.submit(page, '/account/webauthn/register', fields, h.auth.issuer);
    assert.equal(r.status, status, `${what}: ${r.html.slice(0, 300)}`);
    assert.match(alertOf(r.html) ?? '', message, what);
    assert.equal((await stored(user.id)).length, 0, `${what} adds nothing`);
    page = r;
  };
  const opts = () => pageOptions(page.html, 'create');
  const reg = (bend = {}) => JSON.stringify(key.register(opts(), bend));

  assert.equal(opts().rp.id, new URL(h.auth.issuer).hostname);
  assert.equal(opts().attestation, 'none');
  assert.equal(Buffer.from(opts().user.id, 'base64url').toString(), user.id, 'the user handle is the user id, not the name');
  await expectRefused({ response: reg({ origin: 'https://evil.example' }) }, 400, /another origin/, 'wrong origin');
  await expectRefused({ response: reg({ rpId: 'evil.example' }) }, 400, /another relying party/, 'wrong RP ID');
  await expectRefused({ response: reg({ type: 'webauthn.get' }) }, 400, /another kind of request/, 'wrong type');
  await expectRefused({ response: reg({ flags: FLAG_AT }) }, 400, /present/, 'no user presence');
  await expectRefused({ response: reg({ flags: FLAG_UP }) }, 400, /malformed/, 'no attested credential data');
  await expectRefused({ response: '{"id":"AA","rawId":"AA","type":"public-key","response":{}}' }, 400, /malformed/, 'no attestation');
  await expectRefused({ response: reg(), name: 'a\u0000b' }, 400, /malformed/, 'a control character in the name');
  const big = await browser.submit(page, '/account/webauthn/register', { response: 'x'.repeat(40_000) }, h.auth.issuer);
  assert.equal(big.status, 413);

  // forged CSRF / cross-origin post
  const csrfless = await browser.request(`${h.auth.issuer}/account/webauthn/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', origin: 'https://evil.example' },
    body: new URLSearchParams({ csrf: /name="csrf" value="([^"]+)"/.exec(page.html)![1], response: reg() }).toString(),
  });
  assert.equal(csrfless.status, 403);

  // a good enrolment; then the same challenge again with another key: refused
  const used = opts();
  const ok = await browser.submit(page, '/account/webauthn/register', { response: JSON.stringify(key.register(used)), name: 'One' }, h.auth.issuer);
  assert.match(ok.url, /done=added/);
  page = ok;
  const other = new SoftAuthenticator(h.auth.issuer);
  const reuse = await browser.submit(page, '/account/webauthn/register', { response: JSON.stringify(other.register(used)) }, h.auth.issuer);
  assert.equal(reuse.status, 400);
  assert.match(alertOf(reuse.html)!, /expired or was already used/);
  page = reuse;
  // the same credential a second time (its id is in excludeCredentials, and the server checks it too)
  assert.deepEqual(opts().excludeCredentials.map((c: { id: string }) => c.id), [key.id]);
  const twice = await browser.submit(page, '/account/webauthn/register', { response: reg() }, h.auth.issuer);
  assert.equal(twice.status, 409);
  assert.match(alertOf(twice.html)!, /already registered/);
  assert.equal((await stored(user.id)).length, 1);

  // another user cannot register a credential someone already has
  const mallory = await newUser();
  const m = await enrol(mallory, key);
  assert.equal(m.done.status, 409);
  assert.equal((await stored(mallory.id)).length, 0);

  // a stale sign-in may look at the page but not add a factor
  page = await browser.follow(h.auth.accountUrl, h.auth.issuer);
  const fresh = opts();
  h.clock.advance(16 * 60_000);
  const stale = await browser.follow(h.auth.accountUrl, h.auth.issuer);
  assert.equal(stale.status, 200);
  assert.doesNotMatch(stale.html, /data-webauthn|<script/);
  assert.match(stale.html, /older than 15 minutes/);
  const late = await browser.submit(page, '/account/webauthn/register', { response: JSON.stringify(other.register(fresh)) }, h.auth.issuer);
  assert.equal(late.status, 403);
  assert.equal((await stored(user.id)).length, 1);
  assert.ok(h.audit.some((e) => e.event === 'webauthn.refused' && e.sub === user.id && e.reason === 'wrong_origin'));
});

test('PostgreSQL: a passkey-only user (zone without required MFA) enrols after a password sign-in, then needs the passkey', async (t) => {
  const pg = await postgresForTests();
  if ('skip' in pg) {
    t.skip(pg.skip);
    return;
  }
  const tmp = tempDir();
  let p: Harness | undefined;
  try {
    p = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: `${DEFAULT_AUTHORITY}storage: ${JSON.stringify(pg.url)}\nmfa:\n  required: false\n` });
    assert.equal(p.auth.storage, 'postgres');
    const config = await webConfig(p);
    const u = await p.auth.admin.users.add({ username: 'paula', totp: false });
    const user = { id: u.id, username: u.username, password: u.password, totp_secret: '' };

    // first sign-in: password only (no factor yet), then /account
    const first = await toSecondFactorOrDone(p, config, user);
    assert.equal(first.page.status, 0, 'signed in with the password alone');
    assert.deepEqual(decodeJwt((await codeTokens(config, first.login)).access_token).amr, ['pwd']);
    const acct = await first.login.browser.follow(p.auth.accountUrl, p.auth.issuer);
    assert.doesNotMatch(acct.html, /older than/);
    const key = new SoftAuthenticator(p.auth.issuer);
    const added = await first.login.browser.submit(acct, '/account/webauthn/register', { response: JSON.stringify(key.register(pageOptions(acct.html, 'create'))), name: 'Only key' }, p.auth.issuer);
    assert.match(added.url, /done=added/);
    // the only factor of a zone that does not require one can be removed; here it stays

    // next sign-in: the passkey is required; no code form is offered
    const { second, browser, verifier, state } = await toSecondFactor(user, p, config);
    assert.doesNotMatch(second.html, /name="otp"/);
    assert.match(second.html, /data-webauthn-unsupported/, 'a browser without WebAuthn is told why');
    const csrf = /name="csrf" value="([^"]+)"/.exec(second.html)![1];
    const code = await browser.request(`${second.url}/otp`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: p.auth.issuer },
      body: new URLSearchParams({ csrf, otp: '123456' }).toString(),
    });
    assert.equal(code.status, 401, 'no code works for a user without TOTP');
    await code.arrayBuffer();
    const again = await browser.follow(second.url, p.auth.issuer);
    const done = await send(browser, again, key.assert(pageOptions(again.html, 'get')), p);
    assert.equal(done.status, 0, done.html.slice(0, 300));
    const tokens = await codeTokens(config, { callback: new URL(done.url), verifier, state, browser });
    assert.deepEqual(decodeJwt(tokens.access_token).amr, ['pwd', 'hwk', 'mfa']);
    // replay against the shared database
    const flow2 = await toSecondFactor(user, p, config);
    const replay = await send(flow2.browser, flow2.second, key.assert(pageOptions(again.html, 'get')), p);
    assert.equal(replay.status, 401);
    assert.equal((await p.auth.admin.users.passkeys(user.id))[0].counter, 1);
  } finally {
    await p?.close();
    tmp.remove();
    await pg.drop();
  }
});

/** A sign-in that may end at the password step (no second factor). */
async function toSecondFactorOrDone(harness: Harness, config: oidc.Configuration, user: { username: string; password: string }) {
  const { page, browser, verifier, state } = await authorize(harness, config);
  const next = await browser.submit(page, '/login', { username: user.username, password: user.password }, harness.auth.issuer);
  return { page: next, login: { callback: next.status === 0 ? new URL(next.url) : new URL(harness.auth.issuer), verifier, state, browser } };
}
