export { loadTopology, parseTopology, MAX_TOPOLOGY_BYTES, type LoadedTopology } from './load.ts';
export { ConfigError, formatIssue, type ConfigIssue } from './config-error.ts';
export * from './schema.ts';
export { routeNameOf, gatewayCallers } from './resolve.ts';
