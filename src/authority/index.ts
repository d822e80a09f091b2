// Public surface of the zone authority (OAuth 2 / OpenID Connect on
// oidc-provider). The gateway needs `issuer`, `jwksUri`, `audience` and, to
// check a token server-side, `introspectionEndpoint`.
//
// Revocation feed, for the zone's gateway (revocation-feed.ts)
// ------------------------------------------------------------
// Access tokens are JWTs (RFC 9068) and are not stored, so a gateway that
// checks only the signature against the JWKS cannot see a revocation. It
// polls instead:
//
//   GET <issuer>/revocations[?since=<until of the previous answer>]
//   Authorization: Basic <client_id:client_secret>            (client_secret_basic), or
//   a client certificate + ?client_id=<id>                     (tls_client_auth)
//   → 200 application/json, Cache-Control: private, max-age=5, ETag
//     { "jtis": [{ "jti": "…", "exp": <token exp, s> }, …], "until": <ms> }
//
// The client must be registered with the permission
// (`gatehouse clients add --revocation-feed …`, ClientSpec.revocationFeed;
// without grant types it can do nothing else; dev mode seeds the one the
// topology's revocationFeed names: dev-feed-client.ts);
// anyone else gets 401 problem+json. `jtis` lists every access token of this
// zone that was revoked and has not expired (it stays listed until exp plus
// a minute): revoked by RFC 7009 revocation at /token/revocation; or under a
// grant that ended: refresh-token reuse detection, revocation of the refresh
// token, RP-initiated logout, removal of the client. Without `since` the
// answer is the whole current list; with since=<until> it is what was revoked
// after that (until = answer time − 5 s, so a poll overlaps the previous one
// by 5 s and a write that committed late on another instance is not missed;
// repeats are harmless). Refuse a token whose jti is listed, until its exp.
//
// Bound: a revocation is in the feed when the request that revoked answers
// (written first, in the shared database). A gateway polling every P seconds
// refuses the token at most P seconds later (P + 5 if it honours max-age
// through a cache); poll every 5 s. If the feed cannot be read, fail closed
// for user tokens past a staleness limit (the gateway's policy). Not covered
// (still valid until exp, at most accessTokenTtl): client-credentials tokens
// of a removed client, and tokens of a user who was locked.
//
// The authority itself (the OpenID provider and all it serves) loads when
// started: the admin verbs open the zone's stores alone.
import type { StartAuthorityOptions, RunningAuthority } from './start-authority.ts';

export async function startAuthority(options: StartAuthorityOptions): Promise<RunningAuthority> {
  return (await import('./start-authority.ts')).startAuthority(options);
}
export { openZoneStores, zoneDir } from './open-zone-stores.ts';
export type { StartAuthorityOptions, RunningAuthority } from './start-authority.ts';
export type { ZoneDevCredentials, DevClient, DevUser } from './dev-seed.ts';
export type { DevFeedClient } from './dev-feed-client.ts';
export { zoneAudience, ACR_MFA, ACR_PASSWORD } from './context.ts';
export { openConfidentialClaims, CONFIDENTIAL_CLAIM } from './confidential-claims.ts';
export { TOKEN_EXCHANGE } from './client-registry.ts';
export { roleProblem, rolesOf } from './user-registry.ts';
export { FEED_OVERLAP_MS, FEED_MAX_AGE_SECONDS } from './revocation-feed.ts';
