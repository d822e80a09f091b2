// Where a zone gateway keeps its identity-token key, and the header the token
// travels in: what services need to verify it, without loading the gateway.
import path from 'node:path';

/** The one header clients can never set (the gateway strips every x-gatehouse-* they send). */
export const IDENTITY_HEADER = 'x-gatehouse-identity';

export function identityKeyPaths(stateDir: string, zone: string) {
  const dir = path.join(stateDir, 'gateway', zone);
  return { dir, key: path.join(dir, 'identity-key.json'), jwks: path.join(dir, 'identity-jwks.json') };
}
