export { startGateway, readServiceAddresses, type GatewayOptions, type RunningGateway } from './server.ts';
export { canonicalTarget } from './hygiene.ts';
export { compileRoutes } from './router.ts';
