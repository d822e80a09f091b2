// Service tokens from the zone's authority, cached until 80% of their lifetime
// so a call never carries a token about to expire. Concurrent callers share one
// fetch. A failed fetch is not cached.
import { systemClock, type Clock } from '../shared/clock.ts';

export interface FetchedToken {
  accessToken: string;
  /** Lifetime in seconds, as the authority's `expires_in`. */
  expiresIn: number;
}

export interface ServiceTokenCache {
  get(): Promise<string>;
  /** Drop the cached token (e.g. after a 401). */
  invalidate(): void;
}

export function createServiceTokenCache(options: {
  fetch: () => Promise<FetchedToken>;
  clock?: Clock;
  /** Fraction of the lifetime after which a new token is fetched (default 0.8). */
  refreshAt?: number;
}): ServiceTokenCache {
  const clock = options.clock ?? systemClock;
  const refreshAt = options.refreshAt ?? 0.8;
  let cached: { token: string; refreshAfter: number } | undefined;
  let inflight: Promise<string> | undefined;
  return {
    get() {
      if (cached && clock.now() < cached.refreshAfter) return Promise.resolve(cached.token);
      inflight ??= (async () => {
        try {
          const t = await options.fetch();
          if (typeof t.accessToken !== 'string' || t.accessToken.length === 0 || !(t.expiresIn > 0))
            throw new Error('the authority answered without a usable token');
          const start = clock.now();
          cached = { token: t.accessToken, refreshAfter: start + t.expiresIn * 1000 * refreshAt };
          return t.accessToken;
        } finally {
          inflight = undefined;
        }
      })();
      return inflight;
    },
    invalidate() {
      cached = undefined;
    },
  };
}
