// Consents and sessions of a user. A third-party client (not `firstParty`)
// gets only what the user consented to on the consent page, recorded per
// user and client as a scope set (OpenID scopes, and `<audience>|<scope>` for
// API scopes); a request for anything outside it shows the page again.
// Consents outlive browser sessions. Revoking one (at /account) ends every
// grant of that client for that user: its refresh tokens and codes are
// deleted and its JWT access tokens marked revoked (introspection inactive,
// listed in the revocation feed the gateway polls). Ending a session ends the
// grants made in it the same way.
import type { AuthorityContext } from './context.ts';
import { markGrantRevoked } from './oidc-adapter.ts';

/** Plain words for the scopes a consent page names; an unknown scope is shown as itself. */
export const SCOPE_WORDS: Record<string, string> = {
  openid: 'Know who you are (your account identifier)',
  profile: 'See your username',
  email: 'See your e-mail address',
  offline_access: 'Keep access while you are away (a refresh token)',
};

export function scopeWords(scope: string): string {
  if (SCOPE_WORDS[scope]) return SCOPE_WORDS[scope];
  const [resource, action] = scope.split(':');
  if (action === 'read') return `Read your ${resource}`;
  if (action === 'write') return `Change your ${resource}`;
  return `Use "${scope}"`;
}

/** The scope set of one authorization request: its OpenID scopes and, per audience, its API scopes. */
export function consentKeys(oidcScopes: Iterable<string>, resources: Record<string, Iterable<string>>): string[] {
  const keys = new Set<string>(oidcScopes);
  for (const [aud, scopes] of Object.entries(resources)) for (const s of scopes) keys.add(`${aud}|${s}`);
  return [...keys].sort();
}

export async function consentedKeys(ctx: AuthorityContext, accountId: string, clientId: string): Promise<Set<string> | undefined> {
  const row = await ctx.db.selectFrom('consents').select('scopes').where('account_id', '=', accountId).where('client_id', '=', clientId).executeTakeFirst();
  return row ? new Set(row.scopes.split(' ').filter(Boolean)) : undefined;
}

/** Adds `keys` to the user's consent for the client (a consent only grows until it is revoked). */
export async function recordConsent(ctx: AuthorityContext, accountId: string, clientId: string, keys: string[]): Promise<void> {
  const had = (await consentedKeys(ctx, accountId, clientId)) ?? new Set<string>();
  const scopes = [...new Set([...had, ...keys])].sort().join(' ');
  await ctx.db
    .insertInto('consents')
    .values({ account_id: accountId, client_id: clientId, scopes, granted_at: ctx.now() })
    .onConflict((oc) => oc.columns(['account_id', 'client_id']).doUpdateSet({ scopes, granted_at: ctx.now() }))
    .execute();
}

export interface ConsentView {
  clientId: string;
  scopes: string[];
  grantedAt: number;
}

export async function consentsOf(ctx: AuthorityContext, accountId: string): Promise<ConsentView[]> {
  const rows = await ctx.db.selectFrom('consents').selectAll().where('account_id', '=', accountId).orderBy('client_id').execute();
  return rows.map((r) => ({ clientId: r.client_id, scopes: r.scopes.split(' ').filter(Boolean), grantedAt: Number(r.granted_at) }));
}

async function endGrants(ctx: AuthorityContext, grantIds: string[]): Promise<void> {
  for (const id of grantIds) {
    await markGrantRevoked(ctx.db, id, ctx.now());
    await ctx.db.deleteFrom('oidc_models').where('grant_id', '=', id).execute();
  }
}

/** Revokes the consent and ends every grant of that client for that user. False: there was none. */
export async function revokeConsent(ctx: AuthorityContext, accountId: string, clientId: string): Promise<boolean> {
  const r = await ctx.db.deleteFrom('consents').where('account_id', '=', accountId).where('client_id', '=', clientId).executeTakeFirst();
  const grants = await ctx.db.selectFrom('oidc_models').select(['id', 'payload']).where('model', '=', 'Grant').execute();
  const ids = grants
    .filter((g) => {
      const p = JSON.parse(g.payload) as { accountId?: string; clientId?: string };
      return p.accountId === accountId && p.clientId === clientId;
    })
    .map((g) => g.id);
  await endGrants(ctx, ids);
  return Number(r.numDeletedRows) > 0 || ids.length > 0;
}

export interface SessionView {
  uid: string;
  loginTs?: number;
  acr?: string;
  clients: string[];
}

interface SessionPayload {
  uid?: string;
  accountId?: string;
  loginTs?: number;
  acr?: string;
  authorizations?: Record<string, { grantId?: string }>;
}

async function sessionRows(ctx: AuthorityContext, accountId: string): Promise<{ id: string; p: SessionPayload }[]> {
  const rows = await ctx.db.selectFrom('oidc_models').select(['id', 'payload', 'expires_at']).where('model', '=', 'Session').execute();
  return rows
    .filter((r) => r.expires_at === null || Number(r.expires_at) > ctx.now())
    .map((r) => ({ id: r.id, p: JSON.parse(r.payload) as SessionPayload }))
    .filter((r) => r.p.accountId === accountId && typeof r.p.uid === 'string');
}

/** The user's live sign-in sessions, by their uid (never the cookie value, which is the row id). */
export async function sessionsOf(ctx: AuthorityContext, accountId: string): Promise<SessionView[]> {
  return (await sessionRows(ctx, accountId)).map(({ p }) => ({ uid: p.uid!, loginTs: p.loginTs, acr: p.acr, clients: Object.keys(p.authorizations ?? {}) }));
}

/** Ends one of the user's sessions and the grants made in it. False: no such session of this user. */
export async function endSession(ctx: AuthorityContext, accountId: string, uid: string): Promise<boolean> {
  const row = (await sessionRows(ctx, accountId)).find((r) => r.p.uid === uid);
  if (!row) return false;
  await endGrants(ctx, Object.values(row.p.authorizations ?? {}).flatMap((a) => (typeof a.grantId === 'string' ? [a.grantId] : [])));
  await ctx.db.deleteFrom('oidc_models').where('model', '=', 'Session').where('id', '=', row.id).execute();
  return true;
}
