// The mesh SDK (issue 5, part 2): services that accept only verified peers of
// the trust domain allowed by the topology, and clients that call only their
// egress allow-list with a pinned bundle and a checked server identity.
export { createService, IDENTITY_TOKEN_HEADER, type CreateServiceOptions, type MeshService, type MeshHandler, type RequestContext, type Caller, type EndUser } from './create-service.ts';
export { compilePolicy, decide, canonicalPath, IDENTITY_HEADERS, METHOD_OVERRIDE_HEADERS, type PolicyDecision, type PolicyDenial } from './policy.ts';
export { GatehouseError } from '../shared/errors.ts';
export { meshPolicyFromBundles, openMeshPolicy, topologyWithPolicy, type OpenMeshPolicyOptions, type MeshPolicy, type MeshPolicySource } from './policy-source.ts';
export { createClient, type CreateClientOptions, type MeshClient, type MeshRequest, type MeshResponse } from './create-client.ts';
export { createServiceTokenCache, type ServiceTokenCache, type FetchedToken } from './service-token-cache.ts';
export { startSidecar, checkSidecarAddresses, type StartSidecarOptions, type Sidecar } from './start-sidecar.ts';
export { createSidecarGuard, SIDECAR_SECRET_HEADER, type SidecarGuard } from './create-sidecar-guard.ts';
export { listenForSidecar, type SidecarListenOptions } from './listen-for-sidecar.ts';
export { sidecarPaths, type SidecarPaths } from './sidecar-paths.ts';
export { createAuthorityTokens, TokenRequestError, TOKEN_EXCHANGE_GRANT, type AuthorityTokens, type AuthorityTokensOptions, type ClientAuthentication } from './authority-tokens.ts';
export { createAccessTokenVerifier, bearerToken, type AccessTokenVerifier, type AccessTokenVerifierOptions, type VerifiedAccessToken } from './access-tokens.ts';
export { jwksFromFile, resolveFromEndpoints } from './local-discovery.ts';
export type { ServiceStartOptions, PlainStartOptions, RunningServiceModule } from './service-module.ts';
export { serviceOptions } from './service-module.ts';
