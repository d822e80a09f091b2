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
import { HTML_CSP_BASE, HTML_CSP_SCRIPT, loginPage, messagePage, otpPage } from './views.ts';
import { MAX_PASSWORD } from './user-registry.ts';
import type { Budget } from './throttle.ts';
import { amrFor, authenticationOptions, verifyAuthentication, WebAuthnError } from './webauthn.ts';

const MAX_FORM_BYTES = 8 * 1024;
/** forms that carry a WebAuthn response */
export const MAX_WEBAUTHN_FORM_BYTES = 32 * 1024;
const MFA_PENDING_MS = 5 * 60_000;
const GENERIC_LOGIN_ERROR = 'The username or password is not correct.';
const GENERIC_OTP_ERROR = 'That code is not valid. Enter the current code from your app.';

export class FormError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export function readForm(req: IncomingMessage, limit = MAX_FORM_BYTES): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') return reject(new FormError(415, 'The form must be sent as application/x-www-form-urlencoded.'));
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) return reject(new FormError(413, 'The form is too large.'));
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.destroy();
        reject(new FormError(413, 'The form is too large.'));
      } else chunks.push(chunk);
    });
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      for (const key of new Set(form.keys()))
        if (form.getAll(key).length > 1) return reject(new FormError(400, 'A form field was sent twice.'));
      resolve(form);
    });
    req.on('error', reject);
  });
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
      loginPage({ uid: details.uid, csrf: csrfFor(ctx, details.uid), zone: ctx.zone, client: await clientName(provider, details.params.client_id), error, username }),
      redirectOrigin(details),
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

  async function finishLogin(provider: Provider, req: IncomingMessage, res: ServerResponse, uid: string, accountId: string, amr: string[], acr: string) {
    await ctx.db.deleteFrom('mfa_pending').where('uid', '=', uid).execute();
    const user = await ctx.users.byId(accountId);
    ctx.audit('login.success', { sub: accountId, username: user?.username, amr, source: sourceOf(req) });
    await provider.interactionFinished(req, res, { login: { accountId, amr, acr, remember: false } }, { mergeWithLastSubmission: false });
  }

  return {
    async handle(req, res, path, requestId) {
      const provider = getProvider();
      const m = /^\/interaction\/([\w-]{1,64})(?:\/(login|otp|webauthn|abort))?$/.exec(path);
      if (!m) throw new FormError(404, 'There is no such page.');
      const [, uid, action] = m;
      let details: any;
      try {
        details = await provider.interactionDetails(req, res);
      } catch {
        throw new FormError(400, 'This sign-in request has expired or is not yours. Start again from the application.');
      }
      if (details.uid !== uid) throw new FormError(400, 'This sign-in request does not match. Start again from the application.');

      if (action === undefined) {
        if (req.method !== 'GET' && req.method !== 'HEAD') throw new FormError(405, 'Method not allowed.');
        if (details.prompt.name === 'login') {
          const pending = await pendingFor(uid);
          if (pending) return showOtp(res, details, pending, 200);
          return showLogin(provider, res, details, 200);
        }
        // Consent is implicit for the zone's registered clients (loadExistingGrant);
        // reaching here means the grant could not be built: refuse.
        await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'consent cannot be given here' }, { mergeWithLastSubmission: false });
        return;
      }

      if (req.method !== 'POST') throw new FormError(405, 'Method not allowed.');
      const form = await readForm(req, action === 'webauthn' ? MAX_WEBAUTHN_FORM_BYTES : undefined);
      if (!csrfOk(ctx, uid, form.get('csrf'), req)) throw new FormError(403, 'The form could not be verified. Reload the page and try again.');
      const source = sourceOf(req);

      if (action === 'abort') {
        await ctx.db.deleteFrom('mfa_pending').where('uid', '=', uid).execute();
        await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user cancelled the sign-in' }, { mergeWithLastSubmission: false });
        return;
      }
      if (details.prompt.name !== 'login') throw new FormError(400, 'This sign-in request is already complete.');

      if (action === 'login') {
        const username = (form.get('username') ?? '').trim();
        const password = form.get('password') ?? '';
        const keyName = username.toLowerCase().slice(0, 128);
        const keys = [
          { key: `pwd:${keyName}`, budget: t.password },
          { key: `src:${source}`, budget: t.source, delays: false },
        ];
        const verdict = await ctx.throttle.check(keys);
        if (!verdict.allowed) {
          ctx.audit('login.failure', { username: keyName, source, reason: verdict.reason === 'locked' ? 'locked out' : 'too fast' });
          return showLogin(provider, res, details, 429, `Too many attempts. Try again in ${verdict.retryAfterSec} seconds.`, username, {
            'retry-after': String(verdict.retryAfterSec),
          });
        }
        const valid = username.length > 0 && username.length <= 128 && password.length > 0 && password.length <= MAX_PASSWORD;
        const user = valid ? await ctx.users.checkPassword(username, password) : undefined;
        if (!user) {
          for (const k of keys) {
            const until = await ctx.throttle.fail(k.key, k.budget);
            if (until) ctx.audit('lockout', { username: keyName, source, budget: k.key.split(':')[0], until: new Date(until).toISOString() });
          }
          ctx.audit('login.failure', { username: keyName, source, reason: 'bad credentials' });
          return showLogin(provider, res, details, 401, GENERIC_LOGIN_ERROR, username);
        }
        await ctx.throttle.reset(`pwd:${keyName}`);
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
        const keys = [{ key: `webauthn:${accountId}`, budget: otpAccountBudget, delays: false }];
        const verdict = await ctx.throttle.check(keys);
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
          if (!(error instanceof WebAuthnError)) throw error;
          const until = await ctx.throttle.fail(keys[0].key, keys[0].budget);
          if (until) ctx.audit('lockout', { sub: accountId, source, budget: 'webauthn', until: new Date(until).toISOString() });
          ctx.audit('mfa.failure', { sub: accountId, source, reason: `passkey: ${error.reason}` });
          return showOtp(res, details, accountId, error.reason === 'malformed' ? 400 : 401, error.message);
        }
        await ctx.throttle.reset(keys[0].key);
        const amr = ['pwd', amrFor(passkey), 'mfa'];
        ctx.audit('mfa.success', { sub: accountId, source, amr, credential: passkey.id });
        return finishLogin(provider, req, res, uid, accountId, amr, ACR_MFA);
      }

      // action === 'otp'
      const keys = [
        { key: `otp:${accountId}:${source}`, budget: t.otp },
        { key: `otp:${accountId}`, budget: otpAccountBudget, delays: false },
      ];
      const verdict = await ctx.throttle.check(keys);
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
        for (const k of keys) {
          const until = await ctx.throttle.fail(k.key, k.budget);
          if (until) ctx.audit('lockout', { sub: accountId, source, budget: k.key === `otp:${accountId}` ? 'otp-account' : 'otp', until: new Date(until).toISOString() });
        }
        ctx.audit('mfa.failure', { sub: accountId, source, reason: result === 'replayed' ? 'code already used' : 'wrong code' });
        return showOtp(res, details, accountId, 401, GENERIC_OTP_ERROR);
      }
      await ctx.throttle.reset(`otp:${accountId}:${source}`);
      ctx.audit('mfa.success', { sub: accountId, source });
      return finishLogin(provider, req, res, uid, accountId, ['pwd', 'otp', 'mfa'], ACR_MFA);
    },
  };
}

export function sendFormError(res: ServerResponse, req: IncomingMessage, error: FormError, requestId: string): void {
  const wantsHtml = (req.headers.accept ?? '').includes('text/html');
  if (wantsHtml) {
    send(res, error.status, messagePage('Sign-in problem', error.message, requestId), []);
    return;
  }
  res.statusCode = error.status;
  res.setHeader('content-type', 'application/problem+json');
  res.setHeader('cache-control', 'no-store');
  res.end(
    JSON.stringify({
      type: `urn:gatehouse:problem:${error.status === 404 ? 'not_found' : error.status === 403 ? 'forbidden' : error.status === 413 ? 'payload_too_large' : error.status === 415 ? 'unsupported_media_type' : error.status === 405 ? 'method_not_allowed' : 'bad_request'}`,
      title: 'Sign-in request refused',
      status: error.status,
      detail: error.message,
      request_id: requestId,
    }),
  );
}
