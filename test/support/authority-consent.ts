// The tokens of a sign-in that went through the consent page (third-party
// clients; signInUntilConsent in authority-flows.ts drives the sign-in).
import * as oidc from 'openid-client';
import type { Browser, Page } from './authority-browser.ts';

export interface Pending {
  page: Page;
  verifier: string;
  state: string;
  browser: Browser;
}

/** The tokens of a flow that reached the client's callback. */
export function tokensOf(config: oidc.Configuration, p: Pending, idTokenExpected = true) {
  if (p.page.status !== 0) throw new Error(`the flow did not reach the client (${p.page.status}: ${p.page.html.slice(0, 200)})`);
  return oidc.authorizationCodeGrant(config, new URL(p.page.url), { pkceCodeVerifier: p.verifier, expectedState: p.state, idTokenExpected });
}
