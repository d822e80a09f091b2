// The sign-in pages: password, then a second factor: a TOTP code or a WebAuthn
// assertion (passkey / security key, webauthn.ts). Server-rendered, CSRF
// protected (a per-interaction HMAC token plus an Origin check); the password
// and code pages carry no script, the passkey part loads /assets/webauthn.js.
// Failures answer the same, in the same time, whether or not the user exists;
// throttling keeps separate budgets for passwords, codes and passkeys.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { ACR_MFA, ACR_PASSWORD } from './context.ts';
import { consentPage, HTML_CSP_BASE, HTML_CSP_SCRIPT, loginPage, messagePage, otpPage } from './views.ts';
import { apiScopesOf, isFirstParty, OIDC_SCOPES } from './client-registry.ts';
import { consentKeys, recordConsent, scopeWords } from './consent.ts';
import type { FederatedLogin } from './federation.ts';
import { MAX_PASSWORD } from './user-registry.ts';
import type { Budget, Charge, Reservation } from './throttle.ts';
import { amrFor, authenticationOptions, verifyAuthentication, WebAuthnError } from './webauthn.ts';
import { GatehouseError, type ProblemCode } from '../shared/errors.ts';
import { readBody } from '../shared/body.ts';
import { writeProblem } from '../shared/problem.ts';

const MAX_FORM_BYTES = 8 * 1024;
/** forms that carry a WebAuthn response */
export const MAX_WEBAUTHN_FORM_BYTES = 32 * 1024;
const MFA_PENDING_MS = 5 * 60_000;
const GENERIC_LOGIN_ERROR = 'The username or password is not correct.';
const GENERIC_OTP_ERROR = 'That code is not valid. Enter the current code from your app.';

/** A refused page or form: a registry code (status, title) and a message for the user. */
export class FormError extends GatehouseError {
  constructor(code: ProblemCode, message: string, headers?: Record<string, string>) {
    super(code, message, { headers });
    this.name = 'FormError';
  }
}

export async function readForm(req: IncomingMessage, limit = MAX_FORM_BYTES): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') throw new FormError('unsupported_media_type', 'The form must be sent as application/x-www-form-urlencoded.');
  let body: Buffer;
  try {
    body = await readBody(req, limit);
  } catch (error) {
    if (error instanceof GatehouseError && error.code === 'payload_too_large') throw new FormError('payload_too_large', 'The form is too large.');
    throw error;
  }
  const form = new URLSearchParams(body.toString('utf8'));
  for (const key of new Set(form.keys())) if (form.getAll(key).length > 1) throw new FormError('bad_request', 'A form field was sent twice.');
  return form;
}

/** A CSRF token bound to `binding` (an interaction uid, or `account|<session uid>`). */
export function csrfFor(ctx: AuthorityContext, uid: string): string {
  return createHmac('sha256', ctx.csrfKey).update(`csrf|${uid}`).digest('base64url');
}

export function csrfOk(ctx: AuthorityContext, uid: string, presented: string | null, req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== new URL(ctx.issuer).origin) return false;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  if (!presented) return false;
  const a = Buffer.from(csrfFor(ctx, uid));
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function send(res: ServerResponse, status: number, html: string, formAction: string[], headers: Record<string, string> = {}, script = false): void {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('content-security-policy', `${script ? HTML_CSP_SCRIPT : HTML_CSP_BASE}; form-action ${['\'self\'', ...formAction].join(' ')}`);
  res.setHeader('cache-control', 'no-store');
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.end(html);
}

function redirectOrigin(details: any): string[] {
  try {
    return [new URL(String(details.params.redirect_uri)).origin];
  } catch {
    return [];
  }
}

export function sourceOf(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}

export interface InteractionRoutes {
  handle(req: IncomingMessage, res: ServerResponse, path: string, requestId: string): Promise<void>;
}

export function createInteractions(getProvider: () => Provider, ctx: AuthorityContext): InteractionRoutes {
  const t = ctx.config.throttle;
  const otpAccountBudget: Budget = { maxFailures: t.otp.maxFailures * 4, lockoutSeconds: t.otp.lockoutSeconds };

  /** A failed attempt that was the last its budget allowed: the lockout starts now (it was charged before the check). */
  function auditLocks(verdict: Reservation, fields: (key: string) => Record<string, unknown>): void {
    for (const l of verdict.locks) ctx.audit('lockout', { ...fields(l.key), until: new Date(l.until).toISOString() });
  }

  async function pendingFor(uid: string): Promise<string | undefined> {
    const row = await ctx.db.selectFrom('mfa_pending').selectAll().where('uid', '=', uid).executeTakeFirst();
    return row && Number(row.expires_at) > ctx.now() ? row.account_id : undefined;
  }

  async function clientName(provider: Provider, clientId: string): Promise<string> {
    const client = await provider.Client.find(clientId);
    return client?.clientName ?? clientId;
  }

  async function showLogin(provider: Provider, res: ServerResponse, details: any, status: number, error?: string, username?: string, headers?: Record<string, string>) {
    send(
      res,
      status,
      loginPage({ uid: details.uid, csrf: csrfFor(ctx, details.uid), zone: ctx.zone, client: await clientName(provider, details.params.client_id), error, username, upstreams: ctx.federation?.upstreams }),
      [...redirectOrigin(details), ...(ctx.federation?.origins() ?? [])],
      headers,
    );
  }

  /** The second-factor page: a code form (TOTP users), a passkey button with fresh options (passkey users). */
  async function showOtp(res: ServerResponse, details: any, accountId: string, status: number, error?: string, headers?: Record<string, string>) {
    const user = await ctx.users.byId(accountId);
    const webauthnOptions = user && user.passkeys > 0 ? await authenticationOptions(ctx, accountId, details.uid) : undefined;
    send(
      res,
      status,
      otpPage({ uid: details.uid, csrf: csrfFor(ctx, details.uid), zone: ctx.zone, error, totp: user?.totp ?? true, webauthnOptions }),
      redirectOrigin(details),
      headers,
      webauthnOptions !== undefined,
    );
  }

  /** What the consent page grants: the request's scopes the client may have, OpenID and per audience (as loadExistingGrant narrows them). */
  async function consentRequest(provider: Provider, details: any) {
    const client = await provider.Client.find(String(details.params.client_id));
    if (!client) return undefined;
    const allowed = new Set<string>([...String(client.scope ?? '').split(' '), ...apiScopesOf(client)]);
    const requested = String(details.params.scope ?? '').split(' ').filter((x) => x && allowed.has(x));
    const audience = typeof details.params.resource === 'string' && ctx.audiences.includes(details.params.resource) ? details.params.resource : ctx.audience;
    const api = requested.filter((x) => ctx.scopes.includes(x));
    const oidcScopes = requested.filter((x) => OIDC_SCOPES.includes(x));
    const resources: Record<string, string[]> = api.length > 0 ? { [audience]: api } : {};
    return { client, oidc: oidcScopes, resources, api, keys: consentKeys(oidcScopes, resources) };
  }

  async function showConsent(provider: Provider, res: ServerResponse, details: any) {
    const wanted = await consentRequest(provider, details);
    if (!wanted) throw new FormError('bad_request', 'This application is not registered here.');
    send(
      res,
      200,
      consentPage({
        uid: details.uid,
        csrf: csrfFor(ctx, details.uid),
        zone: ctx.zone,
        client: wanted.client.clientName ?? wanted.client.clientId,
        clientId: wanted.client.clientId,
        firstParty: isFirstParty(wanted.client),
        scopes: [...wanted.oidc, ...wanted.api].map((x) => ({ scope: x, words: scopeWords(x) })),
        audiences: Object.keys(wanted.resources),
        keys: wanted.keys.join(' '),
      }),
      redirectOrigin(details),
    );
  }

  /** After the upstream: the zone's MFA, met upstream (mfa: upstream) or by the user's second factor here (mfa: local). */
  async function afterFederation(provider: Provider, req: IncomingMessage, res: ServerResponse, details: any, fed: FederatedLogin) {
    const uid = details.uid as string;
    const amrFed = ['fed'];
    if (fed.upstream.mfa === 'upstream') {
      if (fed.upstreamMfa) return finishLogin(provider, req, res, uid, fed.accountId, [...amrFed, 'mfa'], ACR_MFA);
      if (ctx.config.mfa.required) {
        ctx.audit('login.failure', { sub: fed.accountId, username: fed.username, upstream: fed.upstream.name, source: sourceOf(req), reason: 'the upstream did not sign in with MFA' });
        return showLogin(provider, res, details, 403, `Sign in at ${fed.upstream.name} with your second factor: this zone requires one.`);
      }
      return finishLogin(provider, req, res, uid, fed.accountId, amrFed, ACR_PASSWORD);
    }
    const user = await ctx.users.byId(fed.accountId);
    if (user?.mfa) {
      await ctx.db
        .insertInto('mfa_pending')
        .values({ uid, account_id: fed.accountId, expires_at: ctx.now() + MFA_PENDING_MS })
        .onConflict((oc) => oc.column('uid').doUpdateSet({ account_id: fed.accountId, expires_at: ctx.now() + MFA_PENDING_MS }))
        .execute();
      ctx.audit('mfa.challenge', { sub: fed.accountId, username: fed.username, upstream: fed.upstream.name, source: sourceOf(req) });
      // the second-factor page at the interaction's own URL (this one carries the spent code and state)
      res.statusCode = 303;
      res.setHeader('location', `/interaction/${uid}`);
      res.setHeader('cache-control', 'no-store');
      res.end();
      return;
    }
    if (ctx.config.mfa.required) {
      ctx.audit('login.failure', { sub: fed.accountId, username: fed.username, upstream: fed.upstream.name, source: sourceOf(req), reason: 'no second factor enrolled' });
      return showLogin(provider, res, details, 403, 'This account has no second factor here. Ask an administrator to enrol one.');
    }
    return finishLogin(provider, req, res, uid, fed.accountId, amrFed, ACR_PASSWORD);
  }

  /** A quarantined subject (gatehouse quarantine add --subject) signs in nowhere: audited (a token_refused event), and a page that says so. */
  function refuseQuarantined(req: IncomingMessage, sub: string, username: string | undefined): void {
    const q = ctx.quarantine?.subject(sub);
    if (!q) return;
    ctx.quarantine!.refused({ sub, username, source: sourceOf(req), where: 'sign-in', decision: q });
    throw new FormError('quarantined', `This account is quarantined until ${q.until}; sign-in is refused. Contact your security team.`);
  }

  async function finishLogin(provider: Provider, req: IncomingMessage, res: ServerResponse, uid: string, accountId: string, amr: string[], acr: string) {
    await ctx.db.deleteFrom('mfa_pending').where('uid', '=', uid).execute();
    const user = await ctx.users.byId(accountId);
    // every way in (password, second factor, passkey, federation) ends here
    refuseQuarantined(req, accountId, user?.username);
    ctx.audit('login.success', { sub: accountId, username: user?.username, amr, source: sourceOf(req) });
    await provider.interactionFinished(req, res, { login: { accountId, amr, acr, remember: false } }, { mergeWithLastSubmission: false });
  }

  return {
    async handle(req, res, path, requestId) {
      const provider = getProvider();
      const m = /^\/interaction\/([\w-]{1,64})(?:\/(login|otp|webauthn|consent|federate|federated|abort))?$/.exec(path);
      if (!m) throw new FormError('not_found', 'There is no such page.');
      const [, uid, action] = m;
      let details: any;
      try {
        details = await provider.interactionDetails(req, res);
      } catch {
        throw new FormError('bad_request', 'This sign-in request has expired or is not yours. Start again from the application.');
      }
      if (details.uid !== uid) throw new FormError('bad_request', 'This sign-in request does not match. Start again from the application.');

      if (action === undefined) {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new FormError('method_not_allowed', 'Method not allowed.', { allow: 'GET, HEAD' });
        if (details.prompt.name === 'login') {
          const pending = await pendingFor(uid);
          if (pending) return showOtp(res, details, pending, 200);
          return showLogin(provider, res, details, 200);
        }
        if (details.prompt.name === 'consent') return showConsent(provider, res, details);
        await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'this sign-in step is not offered here' }, { mergeWithLastSubmission: false });
        return;
      }

      if (action === 'federated') {
        // the upstream's answer, forwarded by /federation/callback (a GET: the state, not a CSRF token, binds it)
        if (req.method !== 'GET') throw new FormError('method_not_allowed', 'Method not allowed.', { allow: 'GET' });
        if (details.prompt.name !== 'login' || !ctx.federation) throw new FormError('bad_request', 'This sign-in request is already complete.');
        const fed = await ctx.federation.finish(req, uid);
        return afterFederation(provider, req, res, details, fed);
      }
      if (req.method !== 'POST') throw new FormError('method_not_allowed', 'Method not allowed.', { allow: 'POST' });
      const form = await readForm(req, action === 'webauthn' ? MAX_WEBAUTHN_FORM_BYTES : undefined);
      if (!csrfOk(ctx, uid, form.get('csrf'), req)) throw new FormError('forbidden', 'The form could not be verified. Reload the page and try again.');
      const source = sourceOf(req);

      if (action === 'abort') {
        await ctx.db.deleteFrom('mfa_pending').where('uid', '=', uid).execute();
        await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user cancelled the sign-in' }, { mergeWithLastSubmission: false });
        return;
      }
      if (action === 'consent') {
        if (details.prompt.name !== 'consent' || details.result?.consent) throw new FormError('bad_request', 'This request is already complete.');
        for (const key of form.keys()) if (key !== 'csrf' && key !== 'scopes') throw new FormError('bad_request', 'The consent form does not match this request.');
        const wanted = await consentRequest(provider, details);
        if (!wanted || form.get('scopes') !== wanted.keys.join(' ')) {
          ctx.audit('consent.refused', { sub: details.session?.accountId, client_id: details.params.client_id, source, reason: 'form does not match the request' });
          throw new FormError('bad_request', 'The consent form does not match this request. Start again from the application.');
        }
        const accountId = details.session?.accountId as string | undefined;
        if (!accountId) throw new FormError('bad_request', 'Sign in first.');
        const clientId = String(details.params.client_id);
        const grant = (details.grantId ? await provider.Grant.find(details.grantId) : undefined) ?? new provider.Grant({ accountId, clientId });
        if (grant.accountId !== accountId || grant.clientId !== clientId) throw new FormError('bad_request', 'This request is not yours.');
        grant.addOIDCScope(wanted.oidc.join(' '));
        for (const [aud, scopes] of Object.entries(wanted.resources)) grant.addResourceScope(aud, scopes.join(' '));
        const grantId = await grant.save();
        await recordConsent(ctx, accountId, clientId, wanted.keys);
        ctx.audit('consent.granted', { sub: accountId, client_id: clientId, scope: wanted.keys.join(' '), source });
        await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
        return;
      }
      if (details.prompt.name !== 'login') throw new FormError('bad_request', 'This sign-in request is already complete.');

      if (action === 'federate') {
        if (!ctx.federation) throw new FormError('not_found', 'There is no such page.');
        return ctx.federation.start(res, uid, form.get('upstream') ?? '');
      }

      if (action === 'login') {
        const username = (form.get('username') ?? '').trim();
        const password = form.get('password') ?? '';
        const keyName = username.toLowerCase().slice(0, 128);
        const keys: Charge[] = [
          { key: `pwd:${keyName}`, budget: t.password },
          { key: `src:${source}`, budget: t.source, delays: false },
        ];
        // charged before the password hash, so parallel guesses cannot all pass
        const verdict = await ctx.throttle.reserve(keys);
        if (!verdict.allowed) {
          ctx.audit('login.failure', { username: keyName, source, reason: verdict.reason === 'locked' ? 'locked out' : 'too fast' });
          return showLogin(provider, res, details, 429, `Too many attempts. Try again in ${verdict.retryAfterSec} seconds.`, username, {
            'retry-after': String(verdict.retryAfterSec),
          });
        }
        const valid = username.length > 0 && username.length <= 128 && password.length > 0 && password.length <= MAX_PASSWORD;
        const user = valid ? await ctx.users.checkPassword(username, password) : undefined;
        if (!user) {
          auditLocks(verdict, (k) => ({ username: keyName, source, budget: k.split(':')[0] }));
          ctx.audit('login.failure', { username: keyName, source, reason: 'bad credentials' });
          return showLogin(provider, res, details, 401, GENERIC_LOGIN_ERROR, username);
        }
        await ctx.throttle.refund(`src:${source}`, t.source);
        await ctx.throttle.reset(`pwd:${keyName}`);
        // refused before the second factor is asked for
        refuseQuarantined(req, user.id, user.username);
        if (!user.mfa) {
          if (ctx.config.mfa.required) {
            ctx.audit('login.failure', { sub: user.id, username: user.username, source, reason: 'no second factor enrolled' });
            return showLogin(provider, res, details, 403, 'This account has no second factor. Ask an administrator to enrol one.', username);
          }
          return finishLogin(provider, req, res, uid, user.id, ['pwd'], ACR_PASSWORD);
        }
        await ctx.db
          .insertInto('mfa_pending')
          .values({ uid, account_id: user.id, expires_at: ctx.now() + MFA_PENDING_MS })
          .onConflict((oc) => oc.column('uid').doUpdateSet({ account_id: user.id, expires_at: ctx.now() + MFA_PENDING_MS }))
          .execute();
        ctx.audit('mfa.challenge', { sub: user.id, username: user.username, source });
        res.statusCode = 303;
        res.setHeader('location', `/interaction/${uid}`);
        res.setHeader('cache-control', 'no-store');
        res.end();
        return;
      }

      const accountId = await pendingFor(uid);
      if (!accountId) return showLogin(provider, res, details, 400, 'Sign in with your password first.');

      if (action === 'webauthn') {
        // An assertion cannot be guessed, so no growing delay; failures still
        // count towards an account-wide lockout (a stolen password hammering).
        const keys: Charge[] = [{ key: `webauthn:${accountId}`, budget: otpAccountBudget, delays: false }];
        const verdict = await ctx.throttle.reserve(keys);
        if (!verdict.allowed) {
          ctx.audit('mfa.failure', { sub: accountId, source, reason: 'passkey: locked out' });
          return showOtp(res, details, accountId, 429, `Too many attempts. Try again in ${verdict.retryAfterSec} seconds.`, {
            'retry-after': String(verdict.retryAfterSec),
          });
        }
        const user = await ctx.users.byId(accountId);
        if (!user || user.locked) return showLogin(provider, res, details, 401, GENERIC_LOGIN_ERROR);
        let passkey;
        try {
          passkey = await verifyAuthentication(ctx, user, uid, form.get('response'));
        } catch (error) {
          if (!(error instanceof WebAuthnError)) {
            await ctx.throttle.refund(keys[0].key, keys[0].budget); // our failure, not the user's
            throw error;
          }
          auditLocks(verdict, () => ({ sub: accountId, source, budget: 'webauthn' }));
          ctx.audit('mfa.failure', { sub: accountId, source, reason: `passkey: ${error.reason}` });
          return showOtp(res, details, accountId, error.reason === 'malformed' ? 400 : 401, error.message);
        }
        await ctx.throttle.reset(keys[0].key);
        const amr = ['pwd', amrFor(passkey), 'mfa'];
        ctx.audit('mfa.success', { sub: accountId, source, amr, credential: passkey.id });
        return finishLogin(provider, req, res, uid, accountId, amr, ACR_MFA);
      }

      // action === 'otp'
      const keys: Charge[] = [
        { key: `otp:${accountId}:${source}`, budget: t.otp },
        { key: `otp:${accountId}`, budget: otpAccountBudget, delays: false },
      ];
      const verdict = await ctx.throttle.reserve(keys);
      if (!verdict.allowed) {
        ctx.audit('mfa.failure', { sub: accountId, source, reason: verdict.reason === 'locked' ? 'locked out' : 'too fast' });
        return showOtp(res, details, accountId, 429, `Too many attempts. Try again in ${verdict.retryAfterSec} seconds.`, {
          'retry-after': String(verdict.retryAfterSec),
        });
      }
      const user = await ctx.users.byId(accountId);
      const code = (form.get('otp') ?? '').replace(/\s/g, '');
      const result = user && !user.locked ? await ctx.users.checkTotp(accountId, code) : 'invalid';
      if (result !== 'ok') {
        auditLocks(verdict, (k) => ({ sub: accountId, source, budget: k === `otp:${accountId}` ? 'otp-account' : 'otp' }));
        ctx.audit('mfa.failure', { sub: accountId, source, reason: result === 'replayed' ? 'code already used' : 'wrong code' });
        return showOtp(res, details, accountId, 401, GENERIC_OTP_ERROR);
      }
      await ctx.throttle.refund(`otp:${accountId}`, otpAccountBudget);
      await ctx.throttle.reset(`otp:${accountId}:${source}`);
      ctx.audit('mfa.success', { sub: accountId, source });
      return finishLogin(provider, req, res, uid, accountId, ['pwd', 'otp', 'mfa'], ACR_MFA);
    },
  };
}

/** A refused page: an HTML page for browsers, problem+json (the registry's writer) for everything else. */
export function sendFormError(res: ServerResponse, req: IncomingMessage, error: GatehouseError, requestId: string): void {
  const wantsHtml = (req.headers.accept ?? '').includes('text/html');
  if (wantsHtml && !res.headersSent) {
    const headers: Record<string, string> = { ...error.headers };
    if (error.closeConnection) headers.connection = 'close';
    send(res, error.status, messagePage('Sign-in problem', error.message, requestId), [], headers);
    return;
  }
  writeProblem(res, error, requestId);
}
