// How a workload started by `gatehouse up` finds its peers and keys on one
// machine: addresses from endpoints.json, a gateway's identity-token keys from
// the JWKS file it publishes. Both are re-read when the file changes (the
// gateways start after the services, and a restart moves every port).
import { readFileSync, statSync } from 'node:fs';
import { createLocalJWKSet, type JWTVerifyGetKey } from 'jose';

/** Verification keys read from a JWKS file when a token arrives; a missing file verifies nothing. */
export function jwksFromFile(file: string): JWTVerifyGetKey {
  let cached: { mtimeMs: number; size: number; keys: JWTVerifyGetKey } | undefined;
  return (header, token) => {
    const { mtimeMs, size } = statSync(file);
    if (!cached || cached.mtimeMs !== mtimeMs || cached.size !== size)
      cached = { mtimeMs, size, keys: createLocalJWKSet(JSON.parse(readFileSync(file, 'utf8'))) };
    return cached.keys(header, token);
  };
}

interface EndpointsFile {
  services?: Record<string, { url?: string }>;
  zones?: Record<string, { gateway?: string }>;
}

/**
 * A `resolve` for createClient and the sidecar from `gatehouse up`'s
 * endpoints.json: a service name gives its URL, `gateway:<zone>` the zone's gateway.
 */
export function resolveFromEndpoints(file: string): (target: string) => string | undefined {
  let cached: { mtimeMs: number; size: number; data: EndpointsFile } | undefined;
  return (target) => {
    try {
      const { mtimeMs, size } = statSync(file);
      if (!cached || cached.mtimeMs !== mtimeMs || cached.size !== size)
        cached = { mtimeMs, size, data: JSON.parse(readFileSync(file, 'utf8')) as EndpointsFile };
    } catch {
      return undefined;
    }
    const gateway = /^gateway:([a-z][a-z0-9-]{0,62})$/.exec(target);
    const url = gateway ? cached.data.zones?.[gateway[1]]?.gateway : cached.data.services?.[target]?.url;
    return typeof url === 'string' ? url : undefined;
  };
}
