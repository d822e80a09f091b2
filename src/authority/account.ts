// /account: the signed-in user's own page, where passkeys and security keys
// are added (the WebAuthn registration ceremony, webauthn.ts) and removed.
// "Signed in" is the authority's own browser session (the gh_session_<zone> cookie
// the sign-in pages set); adding or removing a factor also needs a recent
// sign-in (ENROL_MAX_AGE_S) and, when the user already has a second factor,
// a session that used one (acr MFA): a password alone never adds a factor to
// an account that has one. Forms are CSRF protected (an HMAC bound to the
// session plus an Origin check), like the sign-in pages.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { ACR_MFA } from './context.ts';
import { csrfFor, csrfOk, FormError, MAX_WEBAUTHN_FORM_BYTES, readForm, send, sourceOf } from './interactions.ts';
import { accountPage, messagePage } from './views.ts';
import type { UserRecord } from './user-registry.ts';
import { amrFor, registrationOptions, verifyRegistration, WebAuthnError } from './webauthn.ts';
import { consentsOf, endSession, revokeConsent, scopeWords, sessionsOf } from './consent.ts';

/** a factor is added or removed only this long after signing in */
export const ENROL_MAX_AGE_S = 15 * 60;

const NOTICES: Record<string, string> = {
  added: 'The passkey was added. It works as your second factor from your next sign-in.',
  removed: 'The passkey was removed.',
  revoked: "The application's access was revoked; its tokens no longer work.",
  ended: 'That sign-in was ended.',
};

const ACTIONS: Record<string, 'register' | 'remove' | 'revoke' | 'end'> = {
  '/account/webauthn/register': 'register',
  '/account/webauthn/remove': 'remove',
  '/account/consents/revoke': 'revoke',
  '/account/sessions/end': 'end',
};

interface SignedIn {
  session: { uid: string; accountId: string; acr?: string; loginTs?: number };
  user: UserRecord;
}

export interface AccountRoutes {
  handle(req: IncomingMessage, res: ServerResponse, path: string, requestId: string): Promise<void>;
}

export function createAccountPages(getProvider: () => Provider, ctx: AuthorityContext): AccountRoutes {
  async function signedIn(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<SignedIn | undefined> {
    const session = await provider.Session.get(provider.createContext(req, res));
    if (!session?.accountId || typeof session.uid !== 'string') return undefined;
    const user = await ctx.users.byId(session.accountId);
    if (!user || user.locked) return undefined;
    return { session, user };
  }

  /** Why this session may not add or remove a factor now (undefined: it may). */
  function enrolBlocked(s: SignedIn): string | undefined {
    const age = ctx.now() / 1000 - Number(s.session.loginTs ?? 0);
    if (!(age >= -60 && age <= ENROL_MAX_AGE_S))
      return `Your sign-in is older than ${ENROL_MAX_AGE_S / 60} minutes. Sign in again (through an application of this zone), then come back here to change your sign-in methods.`;
    if (s.user.mfa && s.session.acr !== ACR_MFA)
      return 'You signed in without your second factor. Sign in again with it to change your sign-in methods.';
    return undefined;
  }

  async function show(res: ServerResponse, s: SignedIn, status: number, extra: { notice?: string; error?: string } = {}) {
    const blocked = enrolBlocked(s);
    const passkeys = await ctx.users.passkeys(s.user.id);
    const registerOptions = blocked ? undefined : await registrationOptions(ctx, s.user, s.session.uid);
    send(
      res,
      status,
      accountPage({
        zone: ctx.zone,
        username: s.user.username,
        csrf: csrfFor(ctx, `account|${s.session.uid}`),
        passkeys: passkeys.map((p) => ({
          id: p.id,
          name: p.name,
          createdAt: p.createdAt,
          lastUsedAt: p.lastUsedAt,
          kind: amrFor(p) === 'hwk' ? 'bound to one device' : 'may sync between devices',
        })),
        totp: s.user.totp,
        registerOptions,
        enrolBlocked: blocked,
        consents: await Promise.all(
          (await consentsOf(ctx, s.user.id)).map(async (c) => ({
            clientId: c.clientId,
            client: (await ctx.clients.find(c.clientId))?.metadata.client_name?.toString() ?? c.clientId,
            grantedAt: c.grantedAt,
            scopes: c.scopes.map((k) => k.split('|').pop()!).map((x) => ({ scope: x, words: scopeWords(x) })),
          })),
        ),
        sessions: (await sessionsOf(ctx, s.user.id)).map((x) => ({ ...x, current: x.uid === s.session.uid, mfa: x.acr === ACR_MFA })),
        ...extra,
      }),
      [],
      {},
      registerOptions !== undefined,
    );
  }

  function seeOther(res: ServerResponse, location: string): void {
    res.statusCode = 303;
    res.setHeader('location', location);
    res.setHeader('cache-control', 'no-store');
    res.end();
  }

  return {
    async handle(req, res, path, requestId) {
      const provider = getProvider();
      const action = path === '/account' ? 'view' : Object.hasOwn(ACTIONS, path) ? ACTIONS[path] : undefined;
      if (!action) throw new FormError('not_found', 'There is no such page.');
      if (action === 'view' && req.method !== 'GET' && req.method !== 'HEAD') throw new FormError('method_not_allowed', 'Method not allowed.', { allow: 'GET, HEAD' });
      if (action !== 'view' && req.method !== 'POST') throw new FormError('method_not_allowed', 'Method not allowed.', { allow: 'POST' });

      const s = await signedIn(provider, req, res);
      if (!s) {
        if (action !== 'view') throw new FormError('unauthorized', 'You are not signed in. Sign in through an application of this zone first.');
        send(res, 401, messagePage('Not signed in', 'You are not signed in here. Sign in through an application of this zone, then come back to this page.', requestId), []);
        return;
      }
      if (action === 'view') {
        const done = new URL(req.url ?? '/', ctx.issuer).searchParams.get('done');
        return show(res, s, 200, { notice: done ? NOTICES[done] : undefined });
      }

      const form = await readForm(req, MAX_WEBAUTHN_FORM_BYTES);
      if (!csrfOk(ctx, `account|${s.session.uid}`, form.get('csrf'), req)) throw new FormError('forbidden', 'The form could not be verified. Reload the page and try again.');
      const source = sourceOf(req);
      // taking access away needs no recent sign-in: it only ever lowers what is allowed
      if (action === 'revoke') {
        const clientId = form.get('client') ?? '';
        if (!(await revokeConsent(ctx, s.user.id, clientId))) return show(res, s, 404, { error: 'You have not allowed such an application.' });
        ctx.audit('consent.revoked', { sub: s.user.id, client_id: clientId, source });
        return seeOther(res, '/account?done=revoked');
      }
      if (action === 'end') {
        const uid = form.get('session') ?? '';
        if (!(await endSession(ctx, s.user.id, uid))) return show(res, s, 404, { error: 'You have no such sign-in.' });
        ctx.audit('session.ended', { sub: s.user.id, source, reason: uid === s.session.uid ? 'this browser' : 'another sign-in' });
        return seeOther(res, uid === s.session.uid ? '/account' : '/account?done=ended');
      }
      const blocked = enrolBlocked(s);
      if (blocked) {
        ctx.audit('webauthn.refused', { sub: s.user.id, source, reason: 'sign-in not recent or without second factor' });
        return show(res, s, 403, { error: blocked });
      }

      if (action === 'register') {
        let passkey;
        try {
          passkey = await verifyRegistration(ctx, s.user, s.session.uid, form.get('response'), form.get('name'));
        } catch (error) {
          if (!(error instanceof WebAuthnError)) throw error;
          ctx.audit('webauthn.refused', { sub: s.user.id, source, reason: error.reason });
          return show(res, s, error.status, { error: error.message });
        }
        ctx.audit('webauthn.registered', { sub: s.user.id, username: s.user.username, source, credential: passkey.id, amr: [amrFor(passkey)] });
        return seeOther(res, '/account?done=added');
      }

      // remove
      const credential = form.get('credential') ?? '';
      if (ctx.config.mfa.required && !s.user.totp && s.user.passkeys <= 1)
        return show(res, s, 409, { error: 'This is your only second factor, and this zone requires one: add another before removing it.' });
      if (!(await ctx.users.removePasskey(s.user.id, credential))) return show(res, s, 404, { error: 'You have no such passkey.' });
      ctx.audit('webauthn.removed', { sub: s.user.id, username: s.user.username, source, credential });
      return seeOther(res, '/account?done=removed');
    },
  };
}
