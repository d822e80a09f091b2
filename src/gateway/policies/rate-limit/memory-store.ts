// In-process rate-limit buckets with bounded memory.
//
// A bucket is one number (its GCRA TAT) in a fixed-capacity LRU table, so an
// address-spraying client cannot grow the store: past `capacity` keys the
// least recently used bucket is evicted. Eviction alone would be a cheap
// reset — a heavy hitter lets `capacity` other keys push it out and comes back
// with a full burst — so a bucket evicted while it still carries debt (TAT in
// the future) is folded into a fixed-size table: one slot per secret-seeded
// hash, holding the TAT and a 32-bit fingerprint of its owner. A key missing
// from the LRU starts from its fold slot when the fingerprint is its own, from
// zero otherwise; so clients never inherit one another's debt and debt never
// compounds across keys.
//
// Trade-off: a slot holds one debt, and when two collide the larger (later
// TAT) is kept. A heavy hitter's debt is therefore lost only when a larger
// debt lands in its slot; that slot is secret, and building such a debt costs
// a full burst of allowed requests per key, so a reset costs the attacker more
// requests than it wins. Spraying addresses evicts buckets but only folds
// small one-interval debts, which never displace a heavy hitter's. Memory is
// ~100 bytes per bucket (capacity) plus 16 bytes per fold slot. Concurrency
// counts live only while requests are in flight, so they are bounded by the
// open requests.
//
// A decision is a Map lookup and a few typed-array writes: O(1), nothing
// allocated (the result object is reused; the key is the caller's string).
import { gcra, gcraRemaining, newGcraResult } from './gcra.ts';
import { SlotLru, seededHash, nextPowerOfTwo } from './slot-lru.ts';
import type { CompiledLimit, RateLimitStore, TakeResult } from './store.ts';

const LEASE = 'memory';

export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const;
  readonly #lru: SlotLru;
  readonly #tat: Float64Array;
  readonly #foldTat: Float64Array;
  readonly #foldOwner: Uint32Array;
  readonly #foldMask: number;
  readonly #slotHash = seededHash();
  readonly #ownerHash = seededHash();
  readonly #inflight = new Map<string, number>();
  readonly #gcra = newGcraResult();
  readonly #result: TakeResult = {
    allowed: false,
    limitedBy: undefined,
    remaining: 0,
    retryAfterUs: 0,
    resetUs: 0,
    lease: undefined,
  };
  readonly #evictions: { inc(): void } | undefined;
  readonly #namespaces = new Map<string, string>();

  constructor(options: { capacity: number; evictions?: { inc(): void } }) {
    this.#evictions = options.evictions;
    this.#lru = new SlotLru(options.capacity);
    this.#tat = new Float64Array(options.capacity);
    const foldSize = nextPowerOfTwo(options.capacity);
    this.#foldTat = new Float64Array(foldSize);
    this.#foldOwner = new Uint32Array(foldSize);
    this.#foldMask = foldSize - 1;
  }

  /**
   * A short prefix per policy name: every decision hashes prefix + key, and a
   * long derived name would cost more than the decision itself.
   */
  namespace(policy: string): string {
    let ns = this.#namespaces.get(policy);
    if (ns === undefined) this.#namespaces.set(policy, (ns = `${this.#namespaces.size.toString(36)}|`));
    return ns;
  }

  /** Buckets held (at most the capacity). */
  get size(): number {
    return this.#lru.size;
  }

  get evictions(): number {
    return this.#lru.evictions;
  }

  /** Requests in flight on concurrency-limited buckets. */
  inflight(bucket: string): number {
    return this.#inflight.get(bucket) ?? 0;
  }

  /** The TAT of a key that is not in the LRU: its folded debt, if the fold slot is its own. */
  #folded(bucket: string): number {
    const f = this.#slotHash(bucket) & this.#foldMask;
    return this.#foldOwner[f] === this.#ownerHash(bucket) ? this.#foldTat[f] : 0;
  }

  #fold(bucket: string, tat: number): void {
    const f = this.#slotHash(bucket) & this.#foldMask;
    if (tat <= this.#foldTat[f]) return; // the larger debt stays
    this.#foldTat[f] = tat;
    this.#foldOwner[f] = this.#ownerHash(bucket);
  }

  take(bucket: string, limit: CompiledLimit, nowMs: number): TakeResult {
    const now = nowMs * 1000;
    let slot = this.#lru.find(bucket);
    const stored = slot === -1 ? this.#folded(bucket) : this.#tat[slot];
    const out = this.#result;
    out.lease = undefined;
    let inflight = 0;
    if (limit.concurrency > 0) {
      inflight = this.#inflight.get(bucket) ?? 0;
      if (inflight >= limit.concurrency) {
        out.allowed = false;
        out.limitedBy = 'concurrency';
        out.remaining = gcraRemaining(stored, now, limit);
        out.retryAfterUs = 1_000_000; // a slot frees when some response ends: unknowable, try again soon
        out.resetUs = stored > now ? stored - now : 0;
        return out;
      }
    }
    const g = gcra(stored, now, limit, this.#gcra);
    out.allowed = g.allowed;
    out.remaining = g.remaining;
    out.retryAfterUs = g.retryAfterUs;
    out.resetUs = g.resetUs;
    if (!g.allowed) {
      out.limitedBy = 'rate';
      return out;
    }
    out.limitedBy = undefined;
    if (slot === -1) {
      slot = this.#lru.insert(bucket);
      const evicted = this.#lru.evicted;
      if (evicted !== undefined) {
        this.#evictions?.inc();
        if (this.#tat[slot] > now) this.#fold(evicted, this.#tat[slot]);
      }
    }
    this.#tat[slot] = g.tat;
    if (limit.concurrency > 0) {
      this.#inflight.set(bucket, inflight + 1);
      out.lease = LEASE;
    }
    return out;
  }

  release(bucket: string): void {
    const n = this.#inflight.get(bucket);
    if (n === undefined) return;
    if (n <= 1) this.#inflight.delete(bucket);
    else this.#inflight.set(bucket, n - 1);
  }
}
