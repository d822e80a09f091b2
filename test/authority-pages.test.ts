// Every HTML page the authority serves carries the strict CSP and no inline
// script: the test walks sign-in, wrong password, too fast, second factor,
// error pages (ours and oidc-provider's), the account page signed in and not,
// logout with and without a session, its success page, and a form_post
// authorization response, recording every HTML answer on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { startHarness, REDIRECT, type Harness, type TestFetch } from './support/authority-harness.ts';
import { authorize } from './support/authority-flows.ts';
import { Browser, parseForm } from './support/authority-browser.ts';

interface Seen {
  url: string;
  status: number;
  csp: string | null;
  html: string;
}

function recording(h: Harness): { fetch: TestFetch; seen: Promise<Seen>[] } {
  const seen: Promise<Seen>[] = [];
  const fetch: TestFetch = async (input, init) => {
    const res = await h.fetch(input, init);
    if ((res.headers.get('content-type') ?? '').startsWith('text/html')) {
      const copy = res.clone();
      seen.push(copy.text().then((html) => ({ url: String(input), status: res.status, csp: res.headers.get('content-security-policy'), html })));
    }
    return res;
  };
  return { fetch, seen };
}

const titleOf = (html: string) => /<title>([^<]*)<\/title>/.exec(html)?.[1] ?? '(no title)';

test('every HTML page carries the strict CSP and no inline script', async () => {
  const h = await startHarness();
  try {
    const rec = recording(h);
    const w = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
    const web = await h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
    const user = await h.auth.admin.users.add({ username: 'paige' });
    const issuer = h.auth.issuer;

    // sign-in, a wrong password, one too fast, the second factor, a wrong code
    const browser = new Browser(rec.fetch);
    const { page } = await authorize(h, web, { scope: 'openid orders:read' }, browser);
    const wrong = await browser.submit(page, '/login', { username: user.username, password: 'wrong-password-1' }, issuer);
    assert.equal(wrong.status, 401);
    const tooFast = await browser.submit(wrong, '/login', { username: user.username, password: 'wrong-password-2' }, issuer);
    assert.equal(tooFast.status, 429);
    h.clock.advance(31_000);
    const otp = await browser.submit(tooFast, '/login', { username: user.username, password: user.password }, issuer);
    assert.equal(otp.status, 200);
    const badCode = await browser.submit(otp, '/otp', { otp: '000000' === (await h.totp(user.totp_secret!)) ? '111111' : '000000' }, issuer);
    assert.equal(badCode.status, 401);
    h.clock.advance(31_000);
    const done = await browser.submit(badCode, '/otp', { otp: await h.totp(user.totp_secret!) }, issuer);
    assert.equal(done.status, 0, 'signed in');

    // the account page, signed in (it offers a passkey: the one external script) and not
    assert.equal((await browser.follow(`${issuer}/account`, issuer)).status, 200);
    const stranger = new Browser(rec.fetch);
    assert.equal((await stranger.follow(`${issuer}/account`, issuer)).status, 401);

    // error pages: ours (interaction, form) and oidc-provider's (renderError)
    assert.equal((await stranger.follow(`${issuer}/interaction/nosuchinteraction`, issuer)).status, 400);
    assert.equal((await browser.follow(`${issuer}/interaction/x/nosuchstep`, issuer)).status, 404);
    assert.equal((await stranger.follow(`${issuer}/auth?client_id=nobody&response_type=code&scope=openid`, issuer)).status, 400);

    // a form_post authorization response (the session is still there: no login)
    const fp = await authorize(h, web, { scope: 'openid orders:read', response_mode: 'form_post' }, browser);
    assert.equal(fp.page.status, 200);
    const posted = parseForm(fp.page.html, new URL(REDIRECT).pathname);
    assert.ok(posted.hidden.code, 'the form carries the code');
    assert.equal(posted.hidden.iss, issuer);

    // logout with a session: confirm page, then the success page
    const logout = await browser.follow(`${issuer}/session/end`, issuer);
    assert.equal(logout.status, 200);
    assert.match(logout.html, /op\.logoutForm/);
    const signedOut = await browser.submit(logout, '/session/end/confirm', { logout: 'yes' }, issuer);
    assert.equal(signedOut.status, 200);
    // logout without a session: oidc-provider's auto-submitting form, now a plain one
    const noSession = await stranger.follow(`${issuer}/session/end`, issuer);
    assert.equal(noSession.status, 200);
    const finish = await stranger.submit(noSession, '/session/end/confirm', {}, issuer);
    assert.equal(finish.status, 200, 'the plain form finishes the logout without script');

    const seen = await Promise.all(rec.seen);
    for (const s of seen) {
      const where = `${s.status} ${s.url} (${titleOf(s.html)})`;
      assert.ok(s.csp, `${where}: has a CSP`);
      assert.match(s.csp!, /(^|; )default-src 'none'(;|$)/, `${where}: default-src 'none'`);
      assert.match(s.csp!, /frame-ancestors 'none'/, `${where}: not framed`);
      assert.match(s.csp!, /base-uri 'none'/, `${where}`);
      assert.doesNotMatch(s.csp!, /unsafe-inline|unsafe-eval|sha256-|nonce-/, `${where}: no inline allowance`);
      assert.doesNotMatch(s.html, /<script(?![^>]*\bsrc="\/assets\/webauthn\.js")[^>]*>/i, `${where}: no inline script`);
      assert.doesNotMatch(s.html, /\son[a-z]+\s*=|javascript:|\sstyle=/i, `${where}: no inline handler or style`);
      if (/<script/i.test(s.html)) assert.match(s.csp!, /script-src 'self'/, `${where}: a page with the script allows only it`);
    }
    const titles = new Set(seen.map((s) => titleOf(s.html)));
    for (const expected of ['Sign in - public', 'Verification - public', 'Your sign-in methods - public', 'Not signed in', 'Sign-in problem', 'Sign out - public', 'Signed out', 'Continue - public'])
      assert.ok(titles.has(expected), `walked a page titled ${expected} (saw ${[...titles].join(', ')})`);
    console.log(`# ${seen.length} HTML answers walked: ${[...titles].join(' | ')}`);
  } finally {
    await h.close();
  }
});
