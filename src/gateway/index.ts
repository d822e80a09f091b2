// The door into the gateway: what the CLI and other components use. The heavy
// parts (the server, its policy units, the cluster) load when first called, so
// a service that only needs the identity-token paths does not load the gateway.
import type { GatewayOptions, RunningGateway } from './server.ts';
import type { GatewayProcessOptions } from './cluster.ts';
import type { LoadedTopology } from '../topology/load.ts';

export type { GatewayOptions, RunningGateway, CircuitChange } from './server.ts';
export type { GatewayProcessOptions } from './cluster.ts';
export { identityKeyPaths, IDENTITY_HEADER } from './policies/authentication/identity-paths.ts';
export { canonicalTarget } from './hygiene.ts';
export { compileRoutes } from './router.ts';

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  return (await import('./server.ts')).startGateway(options);
}

/** `gatehouse gateway`: one process, or a primary with workers. */
export async function runGatewayProcess(options: GatewayProcessOptions): Promise<void> {
  return (await import('./cluster.ts')).runGatewayProcess(options);
}

export async function readServiceAddresses(stateDir: string): Promise<Record<string, string>> {
  return (await import('./server.ts')).readServiceAddresses(stateDir);
}

/** Partner API keys of a zone (the key database beside the gateway's state). */
export const apiKeys = () => import('./policies/authentication/api-keys.ts');

/** What `gatehouse validate` checks beyond the schema: contracts, Cedar, route methods against service edges. */
export async function checkContracts(loaded: LoadedTopology): Promise<void> {
  return (await import('./contracts.ts')).checkContracts(loaded);
}

export async function routeMethodWarnings(loaded: LoadedTopology) {
  return (await import('./contracts.ts')).routeMethodWarnings(loaded);
}
