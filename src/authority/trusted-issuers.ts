// Which issuers' access tokens this zone accepts as subject tokens (token
// exchange): its own, and the zones the topology lists in `trustedZones`.
// A zone named alone is read from the shared state dir, where every authority
// publishes `public.json` (its issuer and public JWKS); a zone given with
// issuer and jwksUri is fetched over HTTPS.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createLocalJWKSet, createRemoteJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { AuthorityConfig } from '../topology/schema-authority.ts';

export interface TrustedIssuer {
  zone: string;
  issuer: string;
  keys: JWTVerifyGetKey;
}

export interface TrustedIssuers {
  /** the verification keys of this issuer, or undefined when it is not trusted */
  resolve(issuer: string): TrustedIssuer | undefined;
}

export function publicFile(stateDir: string, zone: string): string {
  return path.join(stateDir, 'authority', zone, 'public.json');
}

export function createTrustedIssuers(
  stateDir: string,
  trusted: AuthorityConfig['trustedZones'],
  now: () => number,
): TrustedIssuers {
  const remote = new Map<string, TrustedIssuer>();
  const local: string[] = [];
  for (const t of trusted) {
    if (typeof t === 'string') local.push(t);
    else remote.set(t.issuer, { zone: t.zone, issuer: t.issuer, keys: createRemoteJWKSet(new URL(t.jwksUri)) });
  }
  let cache: { at: number; byIssuer: Map<string, TrustedIssuer> } | undefined;
  const readLocal = (): Map<string, TrustedIssuer> => {
    // re-read at most every 2 s: a rotation in the other zone shows up quickly
    if (cache && now() - cache.at < 2_000) return cache.byIssuer;
    const byIssuer = new Map<string, TrustedIssuer>();
    for (const zone of local) {
      try {
        const data = JSON.parse(readFileSync(publicFile(stateDir, zone), 'utf8')) as { issuer: string; jwks: JSONWebKeySet };
        byIssuer.set(data.issuer, { zone, issuer: data.issuer, keys: createLocalJWKSet(data.jwks) });
      } catch {
        // that zone's authority has not started yet: its tokens are not accepted until it has
      }
    }
    cache = { at: now(), byIssuer };
    return byIssuer;
  };
  return {
    resolve(issuer) {
      return remote.get(issuer) ?? readLocal().get(issuer);
    },
  };
}
