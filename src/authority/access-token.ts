// Verifying this zone's own JWT access tokens (introspection, revocation,
// token exchange) and whether one is still live: not revoked, its grant not
// revoked, its client not removed.
import { createLocalJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { AuthorityContext } from './context.ts';
import type { KeySet } from './keys/key-store.ts';
import type { Kysely } from 'kysely';
import type { Database } from './db/schema.ts';

export const MAX_TOKEN_LENGTH = 8192;
/** token_index rows outlive the token's `exp` by this much (then the sweep drops them). */
export const INDEX_GRACE_MS = 60_000;
const cache = new WeakMap<KeySet, JWTVerifyGetKey>();

export function ownKeys(ctx: AuthorityContext): JWTVerifyGetKey {
  let keys = cache.get(ctx.keys);
  if (!keys) {
    keys = createLocalJWKSet({ keys: ctx.keys.keys.map((k) => k.publicJwk) });
    cache.set(ctx.keys, keys);
  }
  return keys;
}

export function looksLikeJwt(token: unknown): token is string {
  return typeof token === 'string' && token.length <= MAX_TOKEN_LENGTH && /^[\w-]+\.[\w-]+\.[\w-]+$/.test(token);
}

export interface AccessTokenClaims extends JWTPayload {
  client_id: string;
  scope?: string;
  jti: string;
  exp: number;
  iat: number;
  sub: string;
}

/** A valid (signature, issuer, type, time) access token of this zone, or undefined. */
export async function verifyOwnAccessToken(ctx: AuthorityContext, token: string): Promise<AccessTokenClaims | undefined> {
  if (!looksLikeJwt(token)) return undefined;
  try {
    const { payload } = await jwtVerify(token, ownKeys(ctx), {
      issuer: ctx.issuer,
      typ: 'at+jwt',
      algorithms: ['EdDSA', 'ES256'],
      currentDate: new Date(ctx.now()),
      clockTolerance: 5,
    });
    if (typeof payload.client_id !== 'string' || typeof payload.jti !== 'string' || typeof payload.sub !== 'string') return undefined;
    return payload as AccessTokenClaims;
  } catch {
    return undefined;
  }
}

/**
 * Still live: not revoked by jti (here, or at another replica or authority:
 * the policy bundle's revoked token ids), its grant still exists, its client
 * still exists.
 */
export async function isLive(ctx: AuthorityContext, claims: AccessTokenClaims): Promise<boolean> {
  if (ctx.quarantine?.tokenRevoked(claims.jti)) return false;
  const row = await ctx.db
    .selectFrom('token_index')
    .select(['revoked', 'grant_id'])
    .where('jti', '=', claims.jti)
    .executeTakeFirst();
  if (row && Number(row.revoked) === 1) return false;
  if (row?.grant_id) {
    const grant = await ctx.db
      .selectFrom('oidc_models')
      .select('id')
      .where('model', '=', 'Grant')
      .where('id', '=', row.grant_id)
      .executeTakeFirst();
    if (!grant) return false;
  }
  return ctx.clients.exists(claims.client_id);
}

/** Marks a JWT access token revoked until it would have expired anyway, and every token exchanged from it. */
export async function revokeJti(ctx: AuthorityContext, claims: AccessTokenClaims): Promise<void> {
  await ctx.db
    .insertInto('token_index')
    .values({ jti: claims.jti, client_id: claims.client_id, grant_id: null, expires_at: claims.exp * 1000 + INDEX_GRACE_MS, revoked: 1, revoked_at: ctx.now() })
    .onConflict((oc) => oc.column('jti').doUpdateSet({ revoked: 1, revoked_at: ctx.now() }).where('token_index.revoked', '=', 0))
    .execute();
  const n = await revokeDescendants(ctx.db, ctx.issuer, ctx.issuer, [claims.jti], ctx.now());
  if (n > 0) ctx.audit('token.descendants_revoked', { jti: claims.jti, reason: `${n} token(s) exchanged from it` });
}

/** At most this many revocations are read per call of revokedSince. */
export const REVOKED_PAGE = 1000;

/**
 * The JWT access tokens marked revoked after position `after` (revoked_at in
 * ms, then jti: a page ends where the next starts) — by RFC 7009, a revoked
 * grant, consent or client, or exchanged from a revoked token — that have not
 * expired: what the authority reports to the control plane (monitor.ts). In
 * order of revocation, at most REVOKED_PAGE at once.
 */
export async function revokedSince(db: Kysely<Database>, after: { at: number; jti: string }, now: number): Promise<{ jti: string; exp: number; at: number }[]> {
  const rows = await db
    .selectFrom('token_index')
    .select(['jti', 'expires_at', 'revoked_at'])
    .where('revoked', '=', 1)
    .where('revoked_at', 'is not', null)
    // a range on the revoked_at index, then the tie on jti
    .where('revoked_at', '>=', after.at)
    .where((eb) => eb.or([eb('revoked_at', '>', after.at), eb('jti', '>', after.jti)]))
    .where('expires_at', '>', now)
    .orderBy('revoked_at')
    .orderBy('jti')
    .limit(REVOKED_PAGE)
    .execute();
  return rows.map((r) => ({ jti: r.jti, exp: Math.floor((Number(r.expires_at) - INDEX_GRACE_MS) / 1000), at: Number(r.revoked_at) }));
}

const MAX_EXCHANGE_DEPTH = 16;

/**
 * Revokes the tokens exchanged (RFC 8693) from the subject tokens `jtis` of
 * `subjectIssuer`, then those exchanged from them, and so on (this zone's
 * tokens have issuer `ownIssuer`). Idempotent; returns how many it revoked.
 * The revocation feed lists them from then on.
 */
export async function revokeDescendants(db: Kysely<Database>, ownIssuer: string, subjectIssuer: string, jtis: string[], at: number): Promise<number> {
  let total = 0;
  let issuer = subjectIssuer;
  let level = [...new Set(jtis)];
  for (let depth = 0; depth < MAX_EXCHANGE_DEPTH && level.length > 0; depth++) {
    const next: string[] = [];
    for (let i = 0; i < level.length; i += 500) {
      const chunk = level.slice(i, i + 500);
      const rows = await db
        .selectFrom('token_index')
        .select('jti')
        .where('subject_iss', '=', issuer)
        .where('subject_jti', 'in', chunk)
        .where('revoked', '=', 0)
        .execute();
      if (rows.length === 0) continue;
      const ids = rows.map((r) => r.jti);
      await db.updateTable('token_index').set({ revoked: 1, revoked_at: at }).where('jti', 'in', ids).where('revoked', '=', 0).execute();
      next.push(...ids);
    }
    total += next.length;
    level = next;
    issuer = ownIssuer;
  }
  return total;
}
