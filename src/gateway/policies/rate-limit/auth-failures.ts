// Authentication failures per source address. Authentication calls check()
// before it looks at a credential and record() when one fails: after
// `freeFailures` failures every further attempt waits longer (1 s, 2 s, 4 s …
// capped at 30 s) and `maxFailures` failures block the source for
// `lockoutSeconds`. A source quiet for `forgetAfterSeconds` starts afresh, as
// does one whose block ended. A success resets nothing: a valid account would
// otherwise let an attacker keep guessing others from the same source.
//
// Memory is bounded like the memory rate-limit store: a fixed-capacity LRU of
// sources, and a source evicted while its record still matters is folded into
// a fixed-size table (secret-seeded slot, owner fingerprint; of two records in
// one slot the worse is kept), so an attacker cannot clear its record by
// spraying other addresses, and no source ever inherits another's record. A
// record is lost only to a worse one landing in the same secret slot, which
// costs the attacker more failures than it clears. State is per gateway worker.
import type { Clock } from '../../../shared/clock.ts';
import type { ProvisionContext } from '../policy.ts';
import { rateLimitMetricsOf } from './metrics.ts';
import { TooManyRequests, type GatehouseError } from '../../../shared/errors.ts';
import { SlotLru, seededHash, nextPowerOfTwo } from './slot-lru.ts';
import { addressKey } from './bucket-key.ts';
import type { AuthFailureConfig } from './schema.ts';

const MAX_DELAY_MS = 30_000;

/** The wait imposed after the n-th failure beyond the free ones (n ≥ 1). */
export const delayAfter = (n: number): number => (n <= 0 ? 0 : Math.min(1000 * 2 ** (n - 1), MAX_DELAY_MS));

export class AuthFailureTracker {
  readonly #config: AuthFailureConfig;
  readonly #clock: Clock;
  readonly #metrics: { recorded: { inc(): void }; slowed: { inc(): void }; blocked: { inc(): void } } | undefined;
  readonly #lru: SlotLru;
  // per slot: failures counted, time of the last one, end of the block (0: none)
  readonly #failures: Float64Array;
  readonly #last: Float64Array;
  readonly #blockedUntil: Float64Array;
  readonly #foldFailures: Float64Array;
  readonly #foldLast: Float64Array;
  readonly #foldBlocked: Float64Array;
  readonly #foldOwner: Uint32Array;
  readonly #foldMask: number;
  readonly #slotHash = seededHash();
  readonly #ownerHash = seededHash();

  constructor(
    config: AuthFailureConfig,
    clock: Clock,
    metrics?: { authFailures: { labels(result: string): { inc(): void } } },
  ) {
    this.#config = config;
    this.#clock = clock;
    this.#metrics = metrics && {
      recorded: metrics.authFailures.labels('recorded'),
      slowed: metrics.authFailures.labels('slowed'),
      blocked: metrics.authFailures.labels('blocked'),
    };
    this.#lru = new SlotLru(config.capacity);
    this.#failures = new Float64Array(config.capacity);
    this.#last = new Float64Array(config.capacity);
    this.#blockedUntil = new Float64Array(config.capacity);
    const foldSize = nextPowerOfTwo(config.capacity);
    this.#foldFailures = new Float64Array(foldSize);
    this.#foldLast = new Float64Array(foldSize);
    this.#foldBlocked = new Float64Array(foldSize);
    this.#foldOwner = new Uint32Array(foldSize);
    this.#foldMask = foldSize - 1;
  }

  /** Sources tracked (at most the capacity). */
  get size(): number {
    return this.#lru.size;
  }

  /** A 429 with Retry-After when this source must wait or is blocked; undefined when it may try. */
  check(address: string): GatehouseError | undefined {
    const key = addressKey(address, this.#config.ipv6PrefixBits);
    const now = this.#clock.now();
    const slot = this.#lru.find(key);
    let failures: number, last: number, blockedUntil: number;
    if (slot === -1) {
      const f = this.#own(key);
      if (f === -1) return undefined;
      failures = this.#foldFailures[f];
      last = this.#foldLast[f];
      blockedUntil = this.#foldBlocked[f];
    } else {
      failures = this.#failures[slot];
      last = this.#last[slot];
      blockedUntil = this.#blockedUntil[slot];
    }
    if (blockedUntil > now) {
      this.#metrics?.blocked.inc();
      return TooManyRequests((blockedUntil - now) / 1000, 'Too many failed authentications from this address; retry later.');
    }
    if (blockedUntil !== 0 || now - last > this.#config.forgetAfterSeconds * 1000) return undefined;
    // free failures never wait (even if the clock stepped back since the last one)
    if (failures <= this.#config.freeFailures) return undefined;
    const next = last + delayAfter(failures - this.#config.freeFailures);
    if (next > now) {
      this.#metrics?.slowed.inc();
      return TooManyRequests((next - now) / 1000, 'Authentication failed repeatedly from this address; slow down.');
    }
    return undefined;
  }

  /** Counts one failed authentication from this source. */
  record(address: string): void {
    const key = addressKey(address, this.#config.ipv6PrefixBits);
    const now = this.#clock.now();
    this.#metrics?.recorded.inc();
    let slot = this.#lru.find(key);
    if (slot === -1) {
      const f = this.#own(key);
      const failures = f === -1 ? 0 : this.#foldFailures[f];
      const last = f === -1 ? 0 : this.#foldLast[f];
      const blocked = f === -1 ? 0 : this.#foldBlocked[f];
      slot = this.#lru.insert(key);
      const evicted = this.#lru.evicted;
      if (evicted !== undefined) this.#fold(evicted, slot, now);
      this.#failures[slot] = failures;
      this.#last[slot] = last;
      this.#blockedUntil[slot] = blocked;
    }
    const c = this.#config;
    const blocked = this.#blockedUntil[slot];
    let failures = this.#failures[slot];
    if (blocked > now) {
      // failing while blocked changes nothing (and cannot extend the block forever)
      this.#last[slot] = now;
      return;
    }
    if (blocked !== 0 || now - this.#last[slot] > c.forgetAfterSeconds * 1000) {
      failures = 0;
      this.#blockedUntil[slot] = 0;
    }
    failures++;
    this.#failures[slot] = failures;
    this.#last[slot] = now;
    if (failures >= c.maxFailures) this.#blockedUntil[slot] = now + c.lockoutSeconds * 1000;
  }

  /** The fold slot holding this source's record, or -1. */
  #own(key: string): number {
    const f = this.#slotHash(key) & this.#foldMask;
    return this.#foldOwner[f] === this.#ownerHash(key) && this.#foldLast[f] !== 0 ? f : -1;
  }

  /** How bad a record is now: blocked beats counting failures; a record that no longer counts is 0. */
  #severity(failures: number, last: number, blockedUntil: number, now: number): number {
    if (blockedUntil > now) return blockedUntil;
    if (blockedUntil !== 0 || now - last > this.#config.forgetAfterSeconds * 1000) return 0;
    return failures; // far below any time in ms
  }

  /** Keeps an evicted source's record if it still counts and is worse than the one in its fold slot. */
  #fold(key: string, slot: number, now: number): void {
    const severity = this.#severity(this.#failures[slot], this.#last[slot], this.#blockedUntil[slot], now);
    if (severity === 0) return;
    const f = this.#slotHash(key) & this.#foldMask;
    if (severity <= this.#severity(this.#foldFailures[f], this.#foldLast[f], this.#foldBlocked[f], now)) return;
    this.#foldOwner[f] = this.#ownerHash(key);
    this.#foldFailures[f] = this.#failures[slot];
    this.#foldLast[f] = this.#last[slot];
    this.#foldBlocked[f] = this.#blockedUntil[slot];
  }
}

/** The gateway's one tracker for these settings (shared by every route's authentication unit). */
export function authFailureTrackerOf(ctx: ProvisionContext, config: AuthFailureConfig): AuthFailureTracker {
  return ctx.shared.get(
    `auth_failures:${JSON.stringify(config)}`,
    () => new AuthFailureTracker(config, ctx.clock, rateLimitMetricsOf(ctx.shared)),
  );
}
