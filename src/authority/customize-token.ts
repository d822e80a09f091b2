// Shapes every JWT access token before it is signed (RFC 9068): user tokens
// carry auth_time, acr and amr; tokens bound to a grant are indexed so a
// revoked grant makes them inactive at introspection; and claims the zone
// marks confidential for the token's audience travel as a nested JWE.
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { sealConfidentialClaims } from './confidential-claims.ts';
import { exchangeClaims, exchangeGrant, exchangeSubject } from './token-exchange.ts';
import { INDEX_GRACE_MS } from './access-token.ts';

/** OpenID scopes an access token carries for userinfo (offline_access says nothing at a resource) */
const OPENID_TOKEN_SCOPES = new Set(['openid', 'profile', 'email']);

export async function customizeAccessToken(
  ctx: AuthorityContext,
  c: KoaContextWithOIDC,
  token: any,
  jwt: { header?: Record<string, unknown>; payload: Record<string, any> },
): Promise<void> {
  const p = jwt.payload;
  const exchanged = exchangeClaims.get(token);
  if (exchanged) Object.assign(p, exchanged);
  if (token.accountId && p.auth_time === undefined) {
    const e = c?.oidc?.entities ?? {};
    const source = e.AuthorizationCode ?? e.RefreshToken ?? e.RotatedRefreshToken;
    if (source) {
      if (source.authTime !== undefined) p.auth_time = source.authTime;
      if (source.acr !== undefined) p.acr = source.acr;
      if (Array.isArray(source.amr)) p.amr = source.amr;
      // an audience-bound token keeps only the audience's scopes; the OpenID ones
      // the user granted stay, so the token also reads userinfo (/me)
      const granted = String(source.scope ?? '').split(' ').filter((s: string) => OPENID_TOKEN_SCOPES.has(s));
      if (granted.length > 0) p.scope = [...new Set([...granted, ...String(p.scope ?? '').split(' ').filter(Boolean)])].join(' ');
    }
  }
  const grantId: string | undefined = token.grantId ?? exchangeGrant.get(token);
  // an exchanged token is always indexed with its subject token: revoking that revokes this;
  // a client's own token (client credentials: no grant, no user) by its client, so that removing
  // the client takes it away everywhere (the revoked-token feed)
  const subject = exchangeSubject.get(token);
  if (grantId || subject || !token.accountId) {
    await ctx.db
      .insertInto('token_index')
      .values({
        jti: p.jti,
        client_id: p.client_id,
        grant_id: grantId ?? null,
        expires_at: p.exp * 1000 + INDEX_GRACE_MS,
        revoked: 0,
        subject_jti: subject?.jti ?? null,
        subject_iss: subject?.iss ?? null,
      })
      .onConflict((oc) => oc.column('jti').doNothing())
      .execute();
  }
  const aud: string | undefined = Array.isArray(p.aud) ? p.aud[0] : p.aud;
  const confidential = aud ? ctx.confidential.get(aud) : undefined;
  const user = token.accountId ? await ctx.users.byId(token.accountId) : undefined;
  // the user's roles (set by the administrator, or mapped from a federation upstream) for the gateway's `roles` rules
  if (user && Array.isArray(user.claims.roles) && user.claims.roles.length > 0 && p.roles === undefined) p.roles = user.claims.roles.filter((r) => typeof r === 'string');
  if (confidential && token.accountId) {
    const claims: Record<string, unknown> = {};
    for (const name of confidential.claims) if (user?.claims[name] !== undefined) claims[name] = user.claims[name];
    if (Object.keys(claims).length > 0) p.gh_confidential = await sealConfidentialClaims(claims, confidential.key, aud!, ctx.issuer);
  }
}
