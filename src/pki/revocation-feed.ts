// Revocation as peers see it. A feed polls the CA's GET /v1/revocations every
// `refreshMs` (default REVOCATION_REFRESH_SECONDS): a revoked serial is refused
// by every peer within that bound. If the list cannot be refreshed for
// `maxStaleMs` (default 5 minutes) the feed fails closed: every peer is refused
// until the CA answers again (certificates live an hour, so waiting it out is
// not an option we take silently).
import { EventEmitter } from 'node:events';
import { fetchRevocations } from './bootstrap-identity.ts';
import { RevocationStore } from './lib/revocations.ts';
import { pkiPaths } from './lib/files.ts';
import { normalizeSerial } from './lib/x509.ts';
import { REVOCATION_REFRESH_SECONDS } from './revoke-certificate.ts';
import { systemClock, type Clock } from '../shared/clock.ts';

export interface RevocationSource {
  /** True when `serial` is revoked, or when the source is too stale to tell. */
  isRevoked(serial: string): boolean;
  close(): void;
}

export interface RevocationFeed extends RevocationSource, EventEmitter {
  /** Resolves after the first successful fetch. */
  ready: Promise<void>;
  /** Time of the last successful refresh (ms since the epoch), 0 if none. */
  lastRefresh(): number;
  refresh(): Promise<void>;
}

export interface RevocationFeedOptions {
  caUrl: string;
  trustDomain: string;
  bundlePem: string;
  refreshMs?: number;
  maxStaleMs?: number;
  clock?: Clock;
}

export function createRevocationFeed(options: RevocationFeedOptions): RevocationFeed {
  const clock = options.clock ?? systemClock;
  const refreshMs = options.refreshMs ?? REVOCATION_REFRESH_SECONDS * 1000;
  const maxStaleMs = options.maxStaleMs ?? 5 * 60_000;
  let serials = new Set<string>();
  let last = 0;
  let closed = false;
  const emitter = new EventEmitter();
  const refresh = async () => {
    try {
      const list = await fetchRevocations({ ...options, timeoutMs: Math.min(10_000, refreshMs) });
      serials = new Set(list.serials);
      last = clock.now();
      emitter.emit('refreshed', serials.size);
    } catch (error) {
      emitter.emit('failed', error);
      throw error;
    }
  };
  let resolveReady: () => void = () => {};
  const ready = new Promise<void>((r) => (resolveReady = r));
  const tick = () => refresh().then(resolveReady, () => {});
  void tick();
  const timer = setInterval(tick, refreshMs);
  timer.unref();
  return Object.assign(emitter, {
    ready,
    lastRefresh: () => last,
    refresh,
    isRevoked(serial: string) {
      if (closed || last === 0 || clock.now() - last > maxStaleMs) return true;
      const s = normalizeSerial(serial);
      return s === null || serials.has(s);
    },
    close() {
      closed = true;
      clearInterval(timer);
    },
  }) as RevocationFeed;
}

/**
 * The CA's own list, read from its state dir (for processes on the CA's
 * machine: `gatehouse up`, tests); a revocation is seen within `checkMs`
 * (default 1 s).
 */
export function localRevocations(stateDir: string, checkMs = 1000): RevocationSource {
  const store = new RevocationStore(pkiPaths(stateDir).revoked, checkMs);
  return { isRevoked: (serial) => store.has(serial), close() {} };
}
