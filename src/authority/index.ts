// Public surface of the zone authority (OAuth 2 / OpenID Connect on
// oidc-provider). The gateway needs `issuer`, `jwksUri`, `audience` and, to
// check a token server-side, `introspectionEndpoint`.
export { startAuthority, openZoneStores, zoneDir } from './start-authority.ts';
export type { StartAuthorityOptions, RunningAuthority } from './start-authority.ts';
export type { ZoneDevCredentials, DevClient, DevUser } from './dev-seed.ts';
export { zoneAudience, ACR_MFA, ACR_PASSWORD } from './context.ts';
export { openConfidentialClaims, CONFIDENTIAL_CLAIM } from './confidential-claims.ts';
export { TOKEN_EXCHANGE } from './client-registry.ts';
