// GET|POST /me (OpenID Connect Core §5.3 UserInfo) for the zone's own JWT
// access tokens. oidc-provider's userinfo reads only tokens it stores and
// refuses any token with an audience, and every token of a zone is a JWT for
// an audience (RFC 9068): so the zone answers itself. The token must be this
// zone's, live (not revoked, its grant and client still there), a user's,
// and carry `openid`; a DPoP-bound token needs its proof for this URL, a
// certificate-bound one this connection's certificate (sender-constraint.ts).
// The claims are those of the scopes the token carries (profile →
// preferred_username and roles, email → email and email_verified). The token
// comes only in the Authorization header.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { isLive, verifyOwnAccessToken } from './access-token.ts';
import { peerCertificate } from './client-certificate.ts';
import { checkSenderConstraint, presentedToken, SenderConstraintRejected, senderChallenge, type ReplayCache } from '../shared/sender-constraint.ts';
import { GatehouseError } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';

export const USERINFO_PATH = '/me';

/** A replay cache in the authority's database (shared by its instances), through oidc-provider's ReplayDetection model. */
export function dbReplayCache(getProvider: () => Provider, issuer: string): ReplayCache {
  return {
    unique: (key, expiresAt) => (getProvider() as any).ReplayDetection.unique(issuer, key, Math.ceil(expiresAt / 1000)),
  };
}

function refuse(ctx: AuthorityContext, e: SenderConstraintRejected | string, challenge: 'Bearer' | 'DPoP' = 'Bearer', error: SenderConstraintRejected['error'] = 'invalid_token'): GatehouseError {
  const r = typeof e === 'string' ? new SenderConstraintRejected(challenge, error, e) : e;
  const headers: Record<string, string> = { 'www-authenticate': senderChallenge(ctx.zone, r) };
  if (r.nonce) headers['dpop-nonce'] = r.nonce;
  return new GatehouseError('unauthorized', r.message, { headers });
}

export async function handleUserinfo(ctx: AuthorityContext, replay: ReplayCache, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  res.setHeader('cache-control', 'no-store');
  if (req.method !== 'GET' && req.method !== 'POST') {
    writeProblem(res, new GatehouseError('method_not_allowed', 'Method not allowed.', { headers: { allow: 'GET, POST' } }), requestId);
    return;
  }
  const presented = presentedToken(req.headers.authorization);
  if (!presented) {
    const detail = req.headers.authorization === undefined ? 'an access token is needed in the Authorization header' : 'the Authorization header is not a Bearer or DPoP token';
    const error = new GatehouseError('unauthorized', detail, {
      headers: { 'www-authenticate': req.headers.authorization === undefined ? `Bearer realm="${ctx.zone}", DPoP realm="${ctx.zone}"` : `Bearer realm="${ctx.zone}", error="invalid_request"` },
    });
    writeProblem(res, error, requestId);
    return;
  }
  const claims = await verifyOwnAccessToken(ctx, presented.token);
  if (!claims || !(await isLive(ctx, claims))) {
    writeProblem(res, refuse(ctx, 'the access token is not valid here', presented.scheme), requestId);
    return;
  }
  try {
    await checkSenderConstraint({
      scheme: presented.scheme,
      token: presented.token,
      claims,
      peerCertificate: peerCertificate(req.socket)?.raw,
      dpop: { proof: req.headers.dpop, method: req.method, url: `${ctx.issuer}${USERINFO_PATH}`, now: ctx.now, replay, nonces: ctx.dpop.requireNonce ? ctx.dpop.nonces : undefined },
    });
  } catch (error) {
    if (!(error instanceof SenderConstraintRejected)) throw error;
    writeProblem(res, refuse(ctx, error), requestId);
    return;
  }
  const scopes = new Set(String(claims.scope ?? '').split(' '));
  if (!scopes.has('openid') || claims.sub === claims.client_id) {
    const error = new GatehouseError('insufficient_scope', 'the access token does not carry openid', {
      headers: { 'www-authenticate': `${presented.scheme} realm="${ctx.zone}", error="insufficient_scope", scope="openid"` },
    });
    writeProblem(res, error, requestId);
    return;
  }
  const user = await ctx.users.byId(claims.sub);
  if (!user || user.locked) {
    writeProblem(res, refuse(ctx, 'the account of this token is gone', presented.scheme), requestId);
    return;
  }
  const body: Record<string, unknown> = { sub: claims.sub };
  if (scopes.has('profile')) {
    body.preferred_username = user.username;
    if (Array.isArray(user.claims.roles)) body.roles = user.claims.roles;
  }
  // e-mail addresses are set by the zone's administrator (or a verified upstream): verified unless marked otherwise
  if (scopes.has('email') && typeof user.claims.email === 'string') {
    body.email = user.claims.email;
    body.email_verified = user.claims.email_verified !== false;
  }
  res.statusCode = 200;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}
