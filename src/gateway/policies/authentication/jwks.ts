// Keys of one token issuer: fetched from its JWKS URL (never from a URL inside
// a token), refreshed in the background, refetched on an unknown kid at most
// once per interval, and served from cache while the issuer is down. Each key
// carries the one algorithm it may verify, fixed from the key itself.
import { importJWK, type JWK, type CryptoKey, type KeyObject } from 'jose';
import { Agent, request } from 'undici';
import type { Clock } from '../../../shared/clock.ts';
import type { Logger } from '../../../shared/logger.ts';

export interface IssuerKey {
  kid: string;
  alg: string;
  key: CryptoKey | KeyObject;
}

const MAX_JWKS_BYTES = 256 * 1024;
const ASYMMETRIC = new Set(['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256']);

/** The one algorithm a JWK may verify, from its own parameters (never from a token header). */
export function algorithmOf(jwk: JWK): string | undefined {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return jwk.alg === undefined || jwk.alg === 'EdDSA' || jwk.alg === 'Ed25519' ? 'EdDSA' : undefined;
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return jwk.alg === undefined || jwk.alg === 'ES256' ? 'ES256' : undefined;
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return jwk.alg === undefined || jwk.alg === 'ES384' ? 'ES384' : undefined;
  if (jwk.kty === 'RSA' && (jwk.alg === 'PS256' || jwk.alg === 'RS256')) return jwk.alg;
  return undefined; // oct (HMAC) keys and anything unknown never verify
}

export interface JwksCache {
  /** The key for `kid`, refetching once per interval when unknown; undefined when there is none. */
  get(kid: string): Promise<IssuerKey | undefined>;
  refresh(): Promise<void>;
  /** Number of fetches made (for tests and metrics). */
  fetches(): number;
  close(): void;
}

export interface JwksOptions {
  uri: string;
  algorithms: readonly string[];
  refreshMs: number;
  unknownKidRefetchMs: number;
  clock: Clock;
  logger: Logger;
  /** Extra CA certificates to trust for the JWKS URL (the dev CA). */
  ca?: string;
  /** Keys to start from (the authority's published file), so a cold start works while it is down. */
  initial?: { keys: JWK[] };
}

export function createJwksCache(o: JwksOptions): JwksCache {
  const dispatcher = new Agent({ connect: o.ca ? { ca: o.ca } : {}, headersTimeout: 5_000, bodyTimeout: 5_000 });
  let keys = new Map<string, IssuerKey>();
  let lastFetch = -Infinity;
  let inFlight: Promise<void> | undefined;
  let count = 0;

  const load = async (jwks: { keys?: unknown }) => {
    if (!Array.isArray(jwks.keys)) throw new Error('not a JWK set');
    const next = new Map<string, IssuerKey>();
    for (const jwk of jwks.keys as JWK[]) {
      if (typeof jwk.kid !== 'string' || jwk.d !== undefined) continue; // private parts never used
      const alg = algorithmOf(jwk);
      if (!alg || !ASYMMETRIC.has(alg) || !o.algorithms.includes(alg)) continue;
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      try {
        next.set(jwk.kid, { kid: jwk.kid, alg, key: (await importJWK(jwk, alg)) as CryptoKey | KeyObject });
      } catch {
        // an unusable key is skipped, the others still verify
      }
    }
    keys = next;
  };

  const fetchNow = (): Promise<void> => {
    if (inFlight) return inFlight;
    lastFetch = o.clock.now();
    count++;
    inFlight = (async () => {
      try {
        const res = await request(o.uri, { dispatcher, headers: { accept: 'application/json' } });
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new Error(`JWKS answered ${res.statusCode}`);
        }
        const text = await res.body.text();
        if (text.length > MAX_JWKS_BYTES) throw new Error('JWKS too large');
        await load(JSON.parse(text) as { keys?: unknown });
      } catch (error) {
        // keep serving the keys we have
        o.logger.warn({ jwks_uri: o.uri, reason: (error as Error).message }, 'JWKS refresh failed; using cached keys');
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  const ready = o.initial ? load(o.initial) : Promise.resolve();
  const timer = setInterval(() => void fetchNow(), o.refreshMs);
  timer.unref();
  let first: Promise<void> | undefined;

  return {
    async get(kid) {
      await ready;
      first ??= fetchNow();
      if (keys.size === 0) await first;
      const hit = keys.get(kid);
      if (hit) return hit;
      if (o.clock.now() - lastFetch >= o.unknownKidRefetchMs) await fetchNow();
      return keys.get(kid);
    },
    refresh: () => fetchNow(),
    fetches: () => count,
    close() {
      clearInterval(timer);
      void dispatcher.close();
    },
  };
}
