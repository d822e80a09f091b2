// Federated sign-in in a real browser (headless Chromium driven by
// playwright-core): the internal zone's sign-in page offers "Sign in with
// Corp SSO"; with the keyboard the user presses it, signs in at the corp
// authority (password, Tab, password, Enter; the code, Enter) and comes back
// signed in to the internal zone's application, with corp's MFA and the
// mapped role. Chromium enforces the pages' CSP form-action on the redirect
// to the upstream, so this also shows the sign-in page allows exactly that.
// No script error, console error or CSP violation along the way.
//
// Skipped, with the reason, where /usr/bin/chromium is missing; under CI=true
// it must run (.ci/run installs Debian's chromium).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { tempDir, offsetClock, REDIRECT } from './support/authority-harness.ts';
import { startFederatedPair, type FederatedPair } from './support/authority-federation.ts';
import { Chromium, requireChromium } from './support/authority-chromium.ts';
import { serverSpkiHash } from './support/authority-spki.ts';
import { generate } from 'otplib';

test('Chromium: sign in to the internal zone through the corp upstream with the keyboard', { timeout: 90_000 }, async (t) => {
  if (!requireChromium(t)) return;
  const tmp = tempDir();
  const clock = offsetClock();
  let pair: FederatedPair | undefined;
  let chromium: Chromium | undefined;
  try {
    pair = await startFederatedPair(tmp.dir, clock);
    const { corp, internal, web } = pair;
    const spki = [await serverSpkiHash(corp.issuer), await serverSpkiHash(internal.issuer)].join(',');
    chromium = await Chromium.launch([`--ignore-certificate-errors-spki-list=${spki}`]);
    const tab = await chromium.newTab();
    const callbacks: string[] = [];
    await tab.intercept(REDIRECT, (x) => callbacks.push(x));

    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = oidc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid admin:read', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state });
    const login = await tab.goto(url.toString(), (x) => x.startsWith(`${internal.issuer}/interaction/`));
    const csp = tab.document((d) => d === login).headers['content-security-policy'];
    assert.ok(csp.includes(`form-action 'self' http://127.0.0.1:8765 ${corp.issuer}`), csp);
    assert.doesNotMatch(csp, /script-src|unsafe-inline/);

    // Tab from the password form's button to the upstream's
    await tab.focus('form[action$="/federate"] button');
    assert.equal(await tab.evaluate('document.activeElement.textContent'), 'Sign in with Corp SSO');
    const corpLogin = await tab.navigation(() => tab.press('Enter'), (x) => x.startsWith(`${corp.issuer}/interaction/`));

    const user = corp.devCredentials!.users[0];
    const back = await tab.signInWithKeyboard(corpLogin, user, () => generate({ secret: user.totp_secret, epoch: Math.floor(clock.now() / 1000) }), (x) => x.startsWith(REDIRECT));

    const tokens = await oidc.authorizationCodeGrant(web, new URL(back), { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
    const at = decodeJwt(tokens.access_token);
    assert.deepEqual(at.amr, ['fed', 'mfa']);
    assert.deepEqual(at.roles, ['admin']);
    assert.equal(callbacks.length, 1);
    assert.deepEqual(tab.complaints.filter((x) => !/favicon/.test(`${x.url} ${x.text}`)), [], 'no script error, console error or CSP violation');
  } finally {
    await chromium?.close();
    await pair?.close();
    tmp.remove();
  }
});
