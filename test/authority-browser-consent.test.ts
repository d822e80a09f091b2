// The consent page and the account page's consents and sessions in a real
// browser (headless Chromium driven by playwright-core): a third-party client
// asks for offline_access with prompt=consent; the user signs in with the
// keyboard, reads the consent page (no script, a CSP without 'unsafe-inline',
// the Allow button focused, the scope list labelled by the heading) and
// allows with Enter; at /account they revoke that application's access with
// the keyboard and the refresh token stops working. Without JavaScript the
// same path works (the pages carry no script). No script error, console error
// or CSP violation along the way.
//
// Skipped, with the reason, where /usr/bin/chromium is missing; under CI=true
// it must run (.ci/run installs Debian's chromium).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as oidc from 'openid-client';
import { startHarness, REDIRECT, type Harness } from './support/authority-harness.ts';
import { Chromium, requireChromium, type Tab } from './support/authority-chromium.ts';
import { serverSpkiHash } from './support/authority-spki.ts';

const AUTHORITY = `listen: localhost:0
scopes: [orders:read, orders:write]
`;

test('Chromium: consent with the keyboard, then revoke it at /account; the same without JavaScript', { timeout: 90_000 }, async (t) => {
  if (!requireChromium(t)) return;
  let h: Harness | undefined;
  let chromium: Chromium | undefined;
  try {
    h = await startHarness({ authorityYaml: AUTHORITY });
    const harness = h;
    const issuer = h.auth.issuer;
    const c = await h.auth.admin.clients.add({
      clientId: `partner-${randomUUID().slice(0, 6)}`,
      name: 'Acme Partner App',
      grantTypes: ['authorization_code', 'refresh_token'],
      redirectUris: [REDIRECT],
      scope: 'openid offline_access orders:read',
      authMethod: 'client_secret_basic',
    });
    const partner = await h.discover(c.client_id, oidc.ClientSecretBasic(c.client_secret!), { redirect_uris: [REDIRECT] });
    const u = await h.auth.admin.users.add({ username: `u${randomUUID().slice(0, 6)}` });
    chromium = await Chromium.launch([`--ignore-certificate-errors-spki-list=${await serverSpkiHash(issuer)}`]);

    const noComplaints = (tab: Tab, where: string) =>
      assert.deepEqual(tab.complaints.filter((x) => !x.url?.endsWith('/favicon.ico') && !/favicon/.test(x.text)), [], `no script error, console error or CSP violation (${where})`);
    const noScriptCsp = (tab: Tab, url: string) => {
      const csp = tab.document((d) => d === url).headers['content-security-policy'];
      assert.match(csp, /default-src 'none'/);
      assert.doesNotMatch(csp, /script-src|unsafe-inline/, url);
    };

    /** password, Tab, password, Enter; the code, Enter: lands on the consent page */
    async function toConsent(tab: Tab, totpStep: number) {
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(partner, {
        redirect_uri: REDIRECT,
        scope: 'openid offline_access orders:read',
        prompt: 'consent',
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
      });
      const login = await tab.goto(url.toString(), (x) => x.startsWith(`${issuer}/interaction/`));
      // then a new interaction: the consent prompt
      const consent = await tab.signInWithKeyboard(
        login,
        { username: u.username, password: u.password },
        () => {
          harness.clock.advance(totpStep * 30_000);
          return harness.totp(u.totp_secret!);
        },
        (x) => x.startsWith(`${issuer}/interaction/`) && x !== login,
      );
      return { consent, verifier, state };
    }

    for (const javaScript of [true, false]) {
      const where = javaScript ? 'scripts on' : 'scripts off';
      const tab = await chromium.newTab({ javaScript });
      const callbacks: string[] = [];
      await tab.intercept(REDIRECT, (x) => callbacks.push(x));
      const { consent, verifier, state } = await toConsent(tab, javaScript ? 0 : 1);
      noScriptCsp(tab, consent);
      const text = await tab.evaluate<string>('document.body.innerText');
      assert.match(text, /Allow Acme Partner App access\?/, where);
      assert.match(text, /Read your orders/, where);
      assert.match(text, /Keep access while you are away/, where);
      // autofocus lands at the page's next rendering update: on a busy machine, a moment after the load event
      await tab.until(async () => (await tab.evaluate('document.activeElement && document.activeElement.textContent')) === 'Allow', `${where}: Allow has the focus`, 3_000);
      assert.equal(await tab.evaluate('document.querySelector("ul[aria-labelledby=consent-heading]") !== null'), true, 'the scope list is named by the heading');
      assert.equal(await tab.rendered('button.secondary'), true, 'Deny is there');
      const back = await tab.navigation(() => tab.press('Enter'), (x) => x.startsWith(REDIRECT));
      const tokens = await oidc.authorizationCodeGrant(partner, new URL(back), { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
      assert.ok(tokens.refresh_token, `${where}: offline access was allowed`);

      const account = await tab.goto(h.auth.accountUrl);
      const page = await tab.evaluate<string>('document.body.innerText');
      assert.match(page, /Applications you allowed[\s\S]*Acme Partner App/, where);
      assert.match(page, /Where you are signed in[\s\S]*This browser/, where);
      await tab.focus('button[aria-label="Revoke access of Acme Partner App"]');
      const revoked = await tab.navigation(() => tab.press('Enter'), (x) => x !== account);
      assert.equal(revoked, `${issuer}/account?done=revoked`);
      assert.match(await tab.evaluate<string>('document.body.innerText'), /access was revoked/);
      await assert.rejects(oidc.refreshTokenGrant(partner, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant', `${where}: the refresh token died with the consent`);
      noComplaints(tab, where);
      assert.equal(callbacks.length, 1);
      await tab.context.close();
    }
  } finally {
    await chromium?.close();
    await h?.close();
  }
});
