// The passkey path in a real browser: headless Chromium with its virtual
// authenticator (DevTools WebAuthn domain: CTAP2 over USB, resident keys, user
// verification), driven by playwright-core (support/authority-chromium.ts).
// As a user would, with the keyboard: password + TOTP, /account, "Add a
// passkey" (focus + Enter), sign out, password + the key instead of a code;
// the access token then says hwk/swk + mfa. Along the way: no script error,
// no CSP violation, no 'unsafe-inline'; with JavaScript off the code path
// still works and the passkey button is not shown. A screenshot of the
// second-factor page with the passkey option is written to
// <tmpdir>/gatehouse-browser-webauthn/ (its path is printed).
//
// Browsers refuse an IP address as RP ID, so the authority listens on
// localhost and its issuer (and RP ID) is https://localhost:<port>.
// Certificates: Chromium trusts the dev-CA-issued server certificate through
// --ignore-certificate-errors-spki-list=<SHA-256 of its SubjectPublicKeyInfo>,
// which ignores errors for that one key only (not --ignore-certificate-errors,
// which would accept any certificate).
//
// Skipped, with the reason, where /usr/bin/chromium is missing; under CI=true it must
// run (.ci/run installs Debian's chromium), so a missing browser fails there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { startHarness, REDIRECT, type Harness } from './support/authority-harness.ts';
import { Chromium, requireChromium, type Tab } from './support/authority-chromium.ts';
import { serverSpkiHash } from './support/authority-spki.ts';

const AUTHORITY = `listen: localhost:0
scopes: [orders:read, orders:write, catalog:read]
webauthn:
  rpId: localhost
`;

interface Started {
  url: string;
  verifier: string;
  state: string;
}

async function authorizationUrl(config: oidc.Configuration): Promise<Started> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid offline_access orders:read',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  });
  return { url: url.toString(), verifier, state };
}

const isCallback = (u: string) => u.startsWith(REDIRECT);
/** the screenshot, overwritten on each run */
const SHOT_DIR = path.join(tmpdir(), 'gatehouse-browser-webauthn');

test('Chromium + virtual authenticator: enrol a security key at /account, sign in with it; no inline script, works without JS', { timeout: 60_000 }, async (t) => {
  if (!requireChromium(t)) return;
  const started = Date.now();
  let h: Harness | undefined;
  let chromium: Chromium | undefined;
  try {
    h = await startHarness({ authorityYaml: AUTHORITY });
    const issuer = h.auth.issuer;
    assert.match(issuer, /^https:\/\/localhost:\d+$/);
    const w = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
    const web = await h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
    const u = await h.auth.admin.users.add({ username: 'keyholder' });
    const user = { id: u.id, username: u.username, password: u.password, secret: u.totp_secret! };

    chromium = await Chromium.launch([`--ignore-certificate-errors-spki-list=${await serverSpkiHash(issuer)}`]);
    const tab = await chromium.newTab();
    const callbacks: string[] = [];
    await tab.intercept(REDIRECT, (url) => callbacks.push(url));
    await tab.send('WebAuthn.enable', { enableUI: false });
    const { authenticatorId } = await tab.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });

    const csp = (tb: Tab, url: string) => {
      const value = tb.document((d) => d === url).headers['content-security-policy'];
      assert.ok(value, `a CSP on ${url}`);
      assert.match(value, /default-src 'none'/);
      assert.doesNotMatch(value, /unsafe-inline|unsafe-eval|unsafe-hashes|'sha|'nonce/, url);
      return value;
    };
    const scripts = (tb: Tab) => tb.evaluate<string[]>('[...document.scripts].map((s) => s.src || "inline")');
    const text = (tb: Tab) => tb.evaluate<string>('document.body.innerText');
    const expectNoComplaints = (where: string, tb = tab) =>
      assert.deepEqual(
        tb.complaints.filter((c) => !c.url?.endsWith('/favicon.ico')), // the browser asks for one; there is none (404)
        [],
        `no script error, console error or CSP violation (${where})`,
      );

    /** the sign-in page: the username field has the focus; type, Tab to the password, type, Enter */
    const password = async (tb: Tab, start: Started) => {
      const login = await tb.goto(start.url, (x) => x.startsWith(`${issuer}/interaction/`));
      assert.doesNotMatch(csp(tb, login), /script-src/, 'the password page runs no script');
      // autofocus applies at the browser's next rendering opportunity, which a loaded machine delays: wait for it, boundedly
      await tb.until(async () => (await tb.evaluate('document.activeElement && document.activeElement.id')) === 'username', 'autofocus on the username', 3_000);
      await tb.type(user.username);
      await tb.press('Tab');
      await tb.type(user.password);
      // the form posts to …/login and is answered 303 to the interaction page again, now the second step
      return tb.navigation(() => tb.press('Enter'), (x) => x.startsWith(login));
    };
    const tokensFor = async (start: Started, callback: string) => {
      const tokens = await oidc.authorizationCodeGrant(web, new URL(callback), { pkceCodeVerifier: start.verifier, expectedState: start.state, idTokenExpected: true });
      return { tokens, at: decodeJwt(tokens.access_token) };
    };

    // 1. password + TOTP, keyboard only (no passkey yet: no script on the code page)
    const first = await authorizationUrl(web);
    const codeUrl = await password(tab, first);
    assert.doesNotMatch(csp(tab, codeUrl), /script-src/);
    assert.deepEqual(await scripts(tab), []);
    await tab.until(async () => (await tab.evaluate('document.activeElement && document.activeElement.id')) === 'otp', 'autofocus on the code', 3_000);
    await tab.type(await h.totp(user.secret));
    const cb1 = await tab.navigation(() => tab.press('Enter'), isCallback);
    assert.deepEqual((await tokensFor(first, cb1)).at.amr, ['pwd', 'otp', 'mfa']);
    await assert.rejects(tokensFor(first, cb1), 'a code works once');

    // 2. /account: the script reveals "Add a passkey"; name it, focus the button, Enter
    const account = await tab.goto(h.auth.accountUrl);
    assert.match(csp(tab, account), /script-src 'self'(;|$)/);
    assert.deepEqual(await scripts(tab), [`${issuer}/assets/webauthn.js`]);
    assert.equal(await tab.rendered('[data-webauthn-section]'), true, 'the script showed the passkey section');
    assert.equal(await tab.rendered('[data-webauthn-unsupported]'), false);
    await tab.focus('#passkey-name');
    await tab.type('Virtual USB key');
    const addButton = 'form[data-webauthn="create"] button[type="submit"]';
    await tab.focus(addButton);
    const added = await tab.navigation(() => tab.press('Enter'), (x) => x !== account);
    assert.equal(added, `${issuer}/account?done=added`, await text(tab));
    assert.match(await text(tab), /The passkey was added[\s\S]*Virtual USB key/);
    const { credentials } = await tab.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].rpId, 'localhost');
    const [saved] = await h.auth.admin.users.passkeys(user.id);
    assert.equal(saved.id, Buffer.from(credentials[0].credentialId, 'base64').toString('base64url'), "the server stored the authenticator's credential");
    assert.equal(saved.name, 'Virtual USB key');
    assert.deepEqual(saved.transports, ['usb']);
    // the same key again: excluded by the authenticator; the page says so and gives the button back
    await tab.focus(addButton);
    await tab.press('Enter');
    await tab.until(async () => /already registered/.test(await tab.evaluate<string>('document.querySelector("[data-webauthn-status]").textContent')), 'the already-registered message');
    assert.equal(await tab.evaluate(`document.activeElement === document.querySelector('${addButton}') && !document.activeElement.disabled`), true, 'focus back on the enabled button');
    assert.equal((await h.auth.admin.users.passkeys(user.id)).length, 1);
    expectNoComplaints('enrolment');

    // 3. sign out the way the application sends the user (RP-initiated logout); "Yes" has the focus: Enter
    const end = oidc.buildEndSessionUrl(web, { client_id: w.client_id, post_logout_redirect_uri: REDIRECT, state: 'bye' });
    const logout = await tab.goto(end.toString(), (x) => x.startsWith(`${issuer}/session/end`));
    assert.doesNotMatch(csp(tab, logout), /script-src/);
    await tab.until(async () => (await tab.evaluate('document.activeElement && document.activeElement.value')) === 'yes', 'autofocus on "sign out of every application"', 3_000);
    const bye = await tab.navigation(() => tab.press('Enter'), (x) => x !== logout);
    assert.ok(isCallback(bye) && new URL(bye).searchParams.get("state") === "bye", `signed out, back at the application: ${bye}`);
    assert.ok(h.audit.some((e) => e.event === 'logout'));

    // 4. password (the session is gone: the sign-in page again), then the key instead of a code
    const second = await authorizationUrl(web);
    const factorUrl = await password(tab, second);
    assert.match(csp(tab, factorUrl), /script-src 'self'(;|$)/);
    assert.deepEqual(await scripts(tab), [`${issuer}/assets/webauthn.js`]);
    const useKey = 'form[data-webauthn="get"] button[type="submit"]';
    assert.equal(await tab.rendered(useKey), true, 'the passkey button is shown');
    assert.equal(await tab.rendered('input[name="otp"]'), true, 'and the code form is still there');
    mkdirSync(SHOT_DIR, { recursive: true });
    const shot = path.join(SHOT_DIR, 'second-factor-with-passkey.png');
    const png = await tab.screenshot();
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    writeFileSync(shot, png);
    t.diagnostic(`screenshot of the second-factor page: ${shot}`);
    await tab.focus(useKey);
    const cb2 = await tab.navigation(() => tab.press('Enter'), isCallback);
    const { at, tokens } = await tokensFor(second, cb2);
    const amr = at.amr as string[];
    assert.ok(amr.includes('hwk') || amr.includes('swk'), `amr ${amr}`);
    assert.ok(amr.includes('mfa'), `amr ${amr}`);
    assert.ok(!amr.includes('otp'), 'the key, not a code');
    assert.equal(at.acr, 'urn:gatehouse:acr:mfa');
    assert.equal(tokens.claims()!.sub, user.id);
    const after = await tab.send('WebAuthn.getCredentials', { authenticatorId });
    assert.ok(after.credentials[0].signCount >= 1);
    assert.equal((await h.auth.admin.users.passkeys(user.id))[0].counter, after.credentials[0].signCount, "the stored counter follows the key's");
    assert.ok(h.audit.some((e) => e.event === 'mfa.success' && e.sub === user.id && e.credential === saved.id));
    expectNoComplaints('passkey sign-in');
    assert.equal(callbacks.length, 3, 'two sign-ins and one sign-out reached the application');

    // 5. JavaScript off (another browser context): the passkey parts stay hidden, the code works
    const noJs = await chromium.newTab({ javaScript: false });
    await noJs.intercept(REDIRECT, () => {});
    const third = await authorizationUrl(web);
    const noJsFactor = await password(noJs, third);
    assert.match(csp(noJs, noJsFactor), /script-src 'self'/, 'the page that offers the key…');
    assert.equal(await noJs.rendered(useKey), false, '…does not show its button without script');
    assert.equal(await noJs.rendered('input[name="otp"]'), true);
    h.clock.advance(30_000); // the next TOTP step: a code works once
    await noJs.focus('#otp');
    await noJs.type(await h.totp(user.secret));
    const cb3 = await noJs.navigation(() => noJs.press('Enter'), isCallback);
    assert.deepEqual((await tokensFor(third, cb3)).at.amr, ['pwd', 'otp', 'mfa']);
    await noJs.goto(h.auth.accountUrl);
    assert.equal(await noJs.rendered(addButton), false, 'no "Add a passkey" without script');
    assert.equal(await noJs.rendered('[data-webauthn-unsupported]'), true, 'but a word on why');
    assert.match(await text(noJs), /Virtual USB key/);
    expectNoComplaints('JavaScript off', noJs);

    const took = Date.now() - started;
    t.diagnostic(`browser test took ${took} ms`);
    assert.ok(took < 60_000);
  } finally {
    await chromium?.close();
    await h?.close();
  }
});
