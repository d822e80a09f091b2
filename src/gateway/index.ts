export { startGateway, readServiceAddresses, type GatewayOptions, type RunningGateway } from './server.ts';
export { canonicalTarget } from './hygiene.ts';
export { compileRoutes } from './router.ts';
export { identityKeyPaths, IDENTITY_HEADER } from './policies/authentication/identity-token.ts';
