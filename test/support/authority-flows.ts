// The whole authorization-code + PKCE flow through the real sign-in and TOTP
// forms, driven the way a browser and openid-client would.
import * as oidc from 'openid-client';
import { Browser, type Page } from './authority-browser.ts';
import { REDIRECT, type Harness } from './authority-harness.ts';

export interface LoginResult {
  callback: URL;
  verifier: string;
  state: string;
  browser: Browser;
}

export async function authorize(
  h: Harness,
  config: oidc.Configuration,
  params: Record<string, string> = {},
  browser = new Browser(h.fetch),
): Promise<{ page: Page; verifier: string; state: string; browser: Browser }> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid offline_access orders:read',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    ...params,
  });
  const page = await browser.follow(url.toString(), h.auth.issuer);
  return { page, verifier, state, browser };
}

/** Password and TOTP; returns where the browser lands: the consent page (200, third-party clients) or the client's callback (status 0). */
export async function signInUntilConsent(
  h: Harness,
  config: oidc.Configuration,
  user: { username: string; password: string; totp_secret: string },
  params: Record<string, string> = {},
): Promise<{ page: Page; verifier: string; state: string; browser: Browser }> {
  const { page, verifier, state, browser } = await authorize(h, config, params);
  if (page.status !== 200) throw new Error(`login page answered ${page.status}: ${page.url} ${page.html.slice(0, 200)}`);
  const otpPage = await browser.submit(page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  if (otpPage.status !== 200 || !otpPage.html.includes('name="otp"')) throw new Error(`password step answered ${otpPage.status}`);
  const done = await browser.submit(otpPage, '/otp', { otp: await h.totp(user.totp_secret) }, h.auth.issuer);
  return { page: done, verifier, state, browser };
}

export async function signIn(
  h: Harness,
  config: oidc.Configuration,
  user: { username: string; password: string; totp_secret: string },
  params: Record<string, string> = {},
): Promise<LoginResult> {
  const { page: done, verifier, state, browser } = await signInUntilConsent(h, config, user, params);
  if (done.status !== 0) throw new Error(`otp step answered ${done.status}: ${done.html.slice(0, 300)}`);
  return { callback: new URL(done.url), verifier, state, browser };
}

export async function codeTokens(config: oidc.Configuration, login: LoginResult) {
  return oidc.authorizationCodeGrant(config, login.callback, {
    pkceCodeVerifier: login.verifier,
    expectedState: login.state,
    idTokenExpected: true,
  });
}
