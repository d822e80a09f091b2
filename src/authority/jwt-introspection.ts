// oidc-provider introspects and revokes only the tokens it stores (codes,
// refresh tokens) and answers `unsupported_token_type` for JWT access tokens.
// This middleware runs after the library has authenticated the client and
// parsed the request, and answers for this zone's JWT access tokens:
// introspection (RFC 7662) says active only to the client the token was
// issued to; revocation (RFC 7009) is allowed only to that client. A revocation
// is audited with the token's expiry (`until`): the authority's monitor sends it
// to the control plane as a token_revoked event, and every gateway's bundle then
// lists the jti until then.
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { isLive, looksLikeJwt, revokeJti, verifyOwnAccessToken } from './access-token.ts';

export function installJwtIntrospection(provider: Provider, ctx: AuthorityContext): void {
  provider.use(async (c: KoaContextWithOIDC, next) => {
    await next();
    const route = c.oidc?.route;
    if (route !== 'introspection' && route !== 'revocation') return;
    const client = c.oidc.client;
    const token = c.oidc.params?.token;
    if (!client || c.status !== 400 || (c.body as { error?: string })?.error !== 'unsupported_token_type' || !looksLikeJwt(token))
      return;
    const claims = await verifyOwnAccessToken(ctx, token);
    if (route === 'introspection') {
      c.status = 200;
      if (!claims || claims.client_id !== client.clientId || !(await isLive(ctx, claims))) {
        c.body = { active: false };
        return;
      }
      const { iss, sub, aud, exp, iat, jti, scope, client_id, auth_time, acr, amr, act } = claims;
      c.body = { active: true, token_type: 'Bearer', iss, sub, aud, exp, iat, jti, scope, client_id, auth_time, acr, amr, act };
      return;
    }
    // revocation: an unknown or invalid token is not an error (RFC 7009 §2.2)
    if (claims && claims.client_id !== client.clientId) {
      c.status = 400;
      c.body = { error: 'unauthorized_client', error_description: 'client is not authorized to revoke the presented token' };
      return;
    }
    if (claims) {
      await revokeJti(ctx, claims);
      ctx.audit('token.revoked', { client_id: client.clientId, jti: claims.jti, sub: claims.sub, source: c.ip, until: new Date(claims.exp * 1000).toISOString() });
    }
    c.status = 200;
    c.body = '';
  });
}
