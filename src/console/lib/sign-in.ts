// Operators sign in to the console at the zone authority named by
// `monitor.console.zone`: authorization code + PKCE with state and nonce kept
// here (bounded, ten minutes), bound to the browser by a cookie set when the
// sign-in starts (a response that belongs to another browser is refused:
// login CSRF); the ID token is verified by openid-client, the zone's MFA is
// required (acr), and the username (userinfo) must be one of `operators`.
// Deny by default: no zone, no operators, no grant or a failed check refuse.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { Agent, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { GatehouseError } from '../../shared/errors.ts';
import type { Clock } from '../../shared/clock.ts';
import type { MonitorConfig } from '../../topology/schema-monitor.ts';
import { readConsoleGrant, type ConsoleGrant } from '../../monitor/console-grant.ts';

/** The authority's acr for a sign-in that passed its second factor. */
export const ACR_MFA = 'urn:gatehouse:acr:mfa';
const PENDING_MS = 10 * 60_000;
const MAX_PENDING = 1000;

export interface Operator {
  username: string;
  sub: string;
  issuer: string;
}

export interface SignIn {
  /** The authorization URL to send the browser to, and the browser binding to set as a cookie. */
  start(): Promise<{ location: string; binding: string }>;
  /** The callback: the browser's binding cookie and the URL it arrived at. */
  finish(binding: string | undefined, url: URL): Promise<Operator>;
}

const refused = (detail: string) => new GatehouseError('unauthorized', detail);

export function createSignIn(o: { stateDir: string; clock: Clock; console: () => MonitorConfig['console']; log: { warn(obj: object, msg: string): void } }): SignIn {
  // the public roots, and the dev CA of the state dir (written by the first authority, which may start after us)
  const caFile = path.join(o.stateDir, 'tls', 'dev-ca.pem');
  let agent: { dev: string; agent: Agent } | undefined;
  const agentNow = (): Agent => {
    const dev = existsSync(caFile) ? readFileSync(caFile, 'utf8') : '';
    if (agent?.dev !== dev) {
      void agent?.agent.close();
      agent = { dev, agent: new Agent({ connect: { ca: [...rootCertificates, ...(dev ? [dev] : [])], minVersion: 'TLSv1.2' }, headersTimeout: 10_000, bodyTimeout: 10_000 }) };
    }
    return agent.agent;
  };
  const viaAgent = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agentNow() })) as unknown as typeof fetch;
  const pending = new Map<string, { binding: string; nonce: string; verifier: string; expires: number; grant: ConsoleGrant }>();
  let cached: { key: string; config: Promise<oidc.Configuration> } | undefined;

  const grantOf = (): ConsoleGrant => {
    const c = o.console();
    if (!c.zone) throw new GatehouseError('forbidden', 'The console has no sign-in zone (monitor.console.zone).');
    if (c.operators.length === 0) throw new GatehouseError('forbidden', 'The console has no operators (monitor.console.operators).');
    const g = readConsoleGrant(o.stateDir);
    if (!g || g.zone !== c.zone)
      throw new GatehouseError('upstream_unavailable', `The sign-in at zone ${c.zone} is not ready yet (its authority registers the console's client).`, { headers: { 'retry-after': '5' } });
    return g;
  };

  const configOf = (g: ConsoleGrant): Promise<oidc.Configuration> => {
    const key = JSON.stringify(g);
    if (cached?.key === key) return cached.config;
    const config = oidc
      .discovery(new URL(g.issuer), g.client_id, { redirect_uris: [g.redirect_uri], response_types: ['code'] }, oidc.ClientSecretBasic(g.client_secret), {
        [oidc.customFetch]: viaAgent as never,
        timeout: 10,
      })
      .catch((error: unknown) => {
        cached = undefined;
        throw new GatehouseError('upstream_unavailable', 'The sign-in authority cannot be reached now.', { headers: { 'retry-after': '5' }, cause: error });
      });
    cached = { key, config };
    return config;
  };

  return {
    async start() {
      const g = grantOf();
      const config = await configOf(g);
      const now = o.clock.now();
      for (const [k, p] of pending) if (p.expires <= now) pending.delete(k);
      if (pending.size >= MAX_PENDING) pending.delete(pending.keys().next().value as string);
      const state = randomBytes(32).toString('base64url');
      const binding = randomBytes(32).toString('base64url');
      const nonce = randomBytes(32).toString('base64url');
      const verifier = oidc.randomPKCECodeVerifier();
      pending.set(state, { binding, nonce, verifier, expires: now + PENDING_MS, grant: g });
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: g.redirect_uri,
        scope: 'openid profile',
        state,
        nonce,
        acr_values: ACR_MFA,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      return { location: url.href, binding };
    },

    async finish(binding, url) {
      const state = url.searchParams.get('state') ?? '';
      const p = /^[\w-]{20,64}$/.test(state) ? pending.get(state) : undefined;
      if (!p || p.expires <= o.clock.now()) throw refused('This sign-in is unknown, expired or already used. Start again.');
      // used once, whatever happens next
      pending.delete(state);
      if (!binding || binding !== p.binding) throw refused('This sign-in was started in another browser. Start again.');
      const config = await configOf(p.grant);
      let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
      try {
        tokens = await oidc.authorizationCodeGrant(config, url, { pkceCodeVerifier: p.verifier, expectedState: state, expectedNonce: p.nonce, idTokenExpected: true });
      } catch (error) {
        o.log.warn({ err: error }, 'console sign-in refused');
        throw refused('The sign-in could not be verified. Start again.');
      }
      const claims = tokens.claims()!;
      if (claims.acr !== ACR_MFA) throw new GatehouseError('forbidden', 'The console needs a sign-in with a second factor.');
      const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub).catch((error: unknown) => {
        throw new GatehouseError('upstream_unavailable', 'The sign-in authority did not say who signed in.', { cause: error });
      });
      const username = typeof info.preferred_username === 'string' ? info.preferred_username : '';
      const c = o.console();
      if (c.zone !== p.grant.zone || !c.operators.includes(username)) {
        o.log.warn({ event: 'security', kind: 'console_refused', username: username.slice(0, 128), sub: claims.sub }, 'console sign-in of a non-operator refused');
        throw new GatehouseError('forbidden', 'This account may not open the console.');
      }
      return { username, sub: claims.sub, issuer: p.grant.issuer };
    },
  };
}
