// Sign-in through an upstream OpenID Provider (`authority.federation`): the
// enterprise's SSO, or another Gatehouse zone. The sign-in page offers one
// button per upstream; the button starts an authorization code flow there
// (PKCE S256, a nonce and a state, each 256 random bits, kept server-side for
// 10 minutes and bound to this browser's interaction). The upstream answers
// at <issuer>/federation/callback, which only forwards the browser to its
// interaction (whose cookie is scoped there) by a page that navigates on its
// own (hopPage: a redirect would be checked against the upstream page's
// form-action); the interaction then:
//   - consumes the state once (a replayed or unknown state is refused) and
//     checks that it belongs to this browser's interaction (code injection:
//     a code and state made for someone else's sign-in);
//   - checks the response's `iss` (RFC 9207) is the upstream the request went
//     to (mix-up: a response from another upstream);
//   - redeems the code with openid-client, which verifies the ID token:
//     signature by the upstream's JWKS (never unsigned), iss, aud, nonce;
//   - reads userinfo, links the account by (issuer, sub), or by a verified
//     e-mail when `link: email`, or creates a local user `<name>@<upstream>`;
//     refuses an e-mail outside `allowedDomains`; maps the upstream's roles.
// The zone's MFA is met by the user's local second factor after this
// (mfa: local), or by the upstream's ID token saying MFA (mfa: upstream).
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type * as Oidc from 'openid-client';
import type { AuthorityContext } from './context.ts';
import type { AuthorityConfig } from '../topology/schema-authority.ts';
import { publicFile } from './trusted-issuers.ts';
import { readFederationGrant } from './federation-seed.ts';
import { GatehouseError } from '../shared/errors.ts';
import { HTML_CSP_BASE, hopPage } from './views.ts';

export const FEDERATION_CALLBACK = '/federation/callback';
const PENDING_MS = 10 * 60_000;
const MAX_USERNAME = 128;

export type Upstream = AuthorityConfig['federation'][number];

export interface FederatedLogin {
  accountId: string;
  username: string;
  upstream: Upstream;
  /** the upstream's ID token says the user passed MFA there (amr mfa, or Gatehouse's MFA acr) */
  upstreamMfa: boolean;
}

export interface Federation {
  upstreams: { name: string; label: string }[];
  /** origins the sign-in page's form may lead to (CSP form-action): the upstreams' */
  origins(): string[];
  /** 303 to the upstream's authorization endpoint, for the interaction `uid` */
  start(res: ServerResponse, uid: string, name: string): Promise<void>;
  /** GET /federation/callback: forwards the browser to its interaction, where its cookie is */
  bounce(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** In the interaction `uid`: verifies the upstream's response and returns the local account. */
  finish(req: IncomingMessage, uid: string): Promise<FederatedLogin>;
}

const refused = (detail: string) => new GatehouseError('bad_request', detail);

export function createFederation(ctx: AuthorityContext, stateDir: string, devCaFile: string | undefined): Federation {
  const list = ctx.config.federation;
  const callback = `${ctx.issuer}${FEDERATION_CALLBACK}`;
  const ca = [...rootCertificates, ...(devCaFile && existsSync(devCaFile) ? [readFileSync(devCaFile, 'utf8')] : [])];
  // openid-client and undici (some 250 modules) load with the first federated sign-in: most zones federate with nobody
  let client: Promise<{ oidc: typeof Oidc; viaAgent: typeof fetch }> | undefined;
  const loadClient = () =>
    (client ??= (async () => {
      const [oidc, { Agent, fetch: undiciFetch }] = await Promise.all([import('openid-client'), import('undici')]);
      const agent = new Agent({ connect: { ca, minVersion: 'TLSv1.2' }, headersTimeout: 10_000, bodyTimeout: 10_000 });
      const viaAgent = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as typeof fetch;
      return { oidc, viaAgent };
    })());

  const issuerOf = (f: Upstream): string => {
    if (f.issuer) return f.issuer;
    const file = publicFile(stateDir, f.zone!);
    if (!existsSync(file)) throw new GatehouseError('upstream_unavailable', `The ${f.name} sign-in is not available yet.`, { headers: { 'retry-after': '5' } });
    return (JSON.parse(readFileSync(file, 'utf8')) as { issuer: string }).issuer;
  };

  // keyed by upstream, issuer and secret: a zone upstream restarted at another
  // address, or a secret it granted again, is discovered afresh
  const configs = new Map<string, Promise<Oidc.Configuration>>();
  const configOf = (f: Upstream): Promise<Oidc.Configuration> => {
    // the variable, or for a zone upstream on this machine the secret it granted this zone (federation-seed.ts)
    const granted = f.zone ? readFederationGrant(stateDir, ctx.zone, f.zone) : undefined;
    const secret = process.env[f.clientSecretEnv] ?? (granted?.client_id === f.clientId ? granted.client_secret : undefined);
    if (!secret) return Promise.reject(new GatehouseError('upstream_unavailable', `The ${f.name} sign-in is not configured here.`, { headers: { 'retry-after': '60' } }));
    let issuer: string;
    try {
      issuer = issuerOf(f);
    } catch (error) {
      return Promise.reject(error);
    }
    const key = JSON.stringify([f.name, issuer, secret]);
    let c = configs.get(key);
    if (!c) {
      for (const k of configs.keys()) if (JSON.parse(k)[0] === f.name) configs.delete(k);
      c = loadClient()
        .then(({ oidc, viaAgent }) =>
          oidc.discovery(new URL(issuer), f.clientId, { redirect_uris: [callback], response_types: ['code'] }, oidc.ClientSecretBasic(secret), {
            [oidc.customFetch]: viaAgent as never,
            timeout: 10,
          }),
        )
        .catch((error: unknown) => {
          configs.delete(key);
          throw new GatehouseError('upstream_unavailable', `The ${f.name} sign-in cannot be reached now.`, { headers: { 'retry-after': '5' }, cause: error });
        });
      configs.set(key, c);
    }
    return c;
  };

  async function pending(state: string | null) {
    if (typeof state !== 'string' || !/^[\w-]{20,64}$/.test(state)) return undefined;
    const row = await ctx.db.selectFrom('federation_pending').selectAll().where('state', '=', state).executeTakeFirst();
    return row && Number(row.expires_at) > ctx.now() ? row : undefined;
  }

  return {
    upstreams: list.map((f) => ({ name: f.name, label: f.label ?? `Sign in with ${f.name}` })),
    origins() {
      const out: string[] = [];
      for (const f of list) {
        try {
          out.push(new URL(issuerOf(f)).origin);
        } catch {
          // not yet known: the button answers 503 until it is
        }
      }
      return out;
    },

    async start(res, uid, name) {
      const f = list.find((x) => x.name === name);
      if (!f) throw refused('There is no such way to sign in here.');
      const config = await configOf(f);
      const { oidc } = await loadClient();
      const state = randomBytes(32).toString('base64url');
      const nonce = randomBytes(32).toString('base64url');
      const verifier = oidc.randomPKCECodeVerifier();
      await ctx.db.deleteFrom('federation_pending').where('expires_at', '<', ctx.now()).execute();
      await ctx.db.insertInto('federation_pending').values({ state, uid, upstream: f.name, nonce, verifier, expires_at: ctx.now() + PENDING_MS }).execute();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: callback,
        scope: f.scope,
        state,
        nonce,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
      });
      ctx.audit('federation.started', { upstream: f.name, reason: `interaction ${uid}` });
      res.statusCode = 303;
      res.setHeader('location', url.href);
      res.setHeader('cache-control', 'no-store');
      res.end();
    },

    async bounce(req, res) {
      if (req.method !== 'GET') throw new GatehouseError('method_not_allowed', 'Method not allowed.', { headers: { allow: 'GET' } });
      const url = new URL(req.url ?? '/', ctx.issuer);
      const row = await pending(url.searchParams.get('state'));
      if (!row) throw refused('This sign-in response is unknown, expired or already used. Start again from the application.');
      // a page, not a 303: the upstream's sign-in form led here, and its form-action cannot name what follows
      res.statusCode = 200;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.setHeader('content-security-policy', `${HTML_CSP_BASE}; form-action 'none'`);
      res.setHeader('cache-control', 'no-store');
      res.end(hopPage(`/interaction/${row.uid}/federated?${url.searchParams.toString()}`));
    },

    async finish(req, uid) {
      const url = new URL(req.url ?? '/', ctx.issuer);
      const state = url.searchParams.get('state');
      const row = await pending(state);
      // consumed once: a replayed response finds nothing
      const taken = row ? await ctx.db.deleteFrom('federation_pending').where('state', '=', row.state).executeTakeFirst() : undefined;
      if (!row || Number(taken?.numDeletedRows ?? 0) !== 1) throw refused('This sign-in response is unknown, expired or already used. Start again from the application.');
      const f = list.find((x) => x.name === row.upstream);
      if (!f) throw refused('This way to sign in is no longer offered.');
      const fail = (reason: string, detail = 'The sign-in at the other provider could not be verified. Start again from the application.') => {
        ctx.audit('federation.failure', { upstream: f.name, reason, source: req.socket.remoteAddress });
        return new GatehouseError('unauthorized', detail);
      };
      if (row.uid !== uid) throw fail('state of another sign-in (code injection)', 'This sign-in response belongs to another sign-in. Start again from the application.');
      const config = await configOf(f);
      const { oidc } = await loadClient();
      const expectedIss = config.serverMetadata().issuer;
      // RFC 9207: the response names its issuer; one from another provider is a mix-up
      if (url.searchParams.get('iss') !== expectedIss) throw fail(`response iss ${JSON.stringify(url.searchParams.get('iss'))} is not ${expectedIss} (mix-up)`);
      if (url.searchParams.has('error')) {
        const error = url.searchParams.get('error');
        ctx.audit('federation.failure', { upstream: f.name, reason: `upstream answered ${error}` });
        throw new GatehouseError('forbidden', `The other provider did not sign you in (${error}).`);
      }
      const current = new URL(callback);
      for (const k of ['code', 'state', 'iss']) {
        const v = url.searchParams.get(k);
        if (v !== null) current.searchParams.set(k, v);
      }
      let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
      try {
        tokens = await oidc.authorizationCodeGrant(config, current, { pkceCodeVerifier: row.verifier, expectedState: row.state, expectedNonce: row.nonce, idTokenExpected: true });
      } catch (error) {
        throw fail(`code or ID token refused: ${(error as Error).message}`);
      }
      const id = tokens.claims()!;
      let info: Record<string, unknown> = {};
      if (config.serverMetadata().userinfo_endpoint) {
        try {
          info = await oidc.fetchUserInfo(config, tokens.access_token, id.sub);
        } catch (error) {
          throw fail(`userinfo refused: ${(error as Error).message}`);
        }
      }
      const claim = (k: string) => info[k] ?? id[k];
      const email = typeof claim('email') === 'string' ? String(claim('email')).toLowerCase() : undefined;
      const emailVerified = claim('email_verified') === true;
      if (f.allowedDomains.length > 0) {
        const domain = email?.split('@').pop();
        if (!email || !emailVerified || !domain || !f.allowedDomains.includes(domain)) {
          ctx.audit('federation.failure', { upstream: f.name, sub: id.sub, reason: 'e-mail not verified or not in an allowed domain' });
          throw new GatehouseError('forbidden', 'This account is not admitted here.');
        }
      }
      const issuer = String(id.iss);
      const linked = await ctx.db.selectFrom('federated_identities').select('user_id').where('issuer', '=', issuer).where('subject', '=', id.sub).executeTakeFirst();
      let user = linked ? await ctx.users.byId(linked.user_id) : undefined;
      if (!user && f.link === 'email' && email && emailVerified) user = (await ctx.users.list()).find((u) => typeof u.claims.email === 'string' && u.claims.email.toLowerCase() === email);
      if (!user) {
        const base = String(claim('preferred_username') ?? id.sub).replace(/[^A-Za-z0-9._+-]/g, '_');
        const username = `${base}@${f.name}`.slice(-MAX_USERNAME);
        if (await ctx.users.byUsername(username)) throw fail(`local username ${username} is taken by another account`, 'An account of that name exists here already; ask an administrator to link it.');
        const created = await ctx.users.add({ username, totp: false, claims: email ? { email } : {} });
        user = await ctx.users.byId(created.id);
        ctx.audit('user.added', { sub: created.id, username, upstream: f.name, reason: 'first sign-in through federation' });
      }
      if (!user) throw fail('local account vanished');
      if (!linked) await ctx.db.insertInto('federated_identities').values({ issuer, subject: id.sub, user_id: user.id, created_at: ctx.now() }).execute();
      if (user.locked) throw new GatehouseError('forbidden', 'This account is locked here.');
      const raw = claim(f.roles.claim);
      const values = Array.isArray(raw) ? raw.filter((v): v is string => typeof v === 'string') : typeof raw === 'string' ? raw.split(' ') : [];
      const roles = [...new Set(values.flatMap((v) => (Object.hasOwn(f.roles.map, v) ? [f.roles.map[v]] : [])))];
      await ctx.users.setClaims(user.id, { ...user.claims, ...(email ? { email } : {}), roles });
      const amr = Array.isArray(id.amr) ? id.amr.filter((x): x is string => typeof x === 'string') : [];
      const upstreamMfa = amr.includes('mfa') || id.acr === 'urn:gatehouse:acr:mfa';
      ctx.audit('federation.success', { upstream: f.name, sub: user.id, username: user.username, amr, reason: `upstream sub ${id.sub}, acr ${String(id.acr)}${upstreamMfa ? ', MFA upstream' : ''}` });
      return { accountId: user.id, username: user.username, upstream: f, upstreamMfa };
    },
  };
}

