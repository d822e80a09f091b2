// What a rate-limit store does: one decision per request for one bucket, and
// giving back a concurrency slot when the response ends.
import type { GcraLimit } from './gcra.ts';

export interface CompiledLimit extends GcraLimit {
  /** In-flight requests allowed per bucket; 0: no concurrency limit. */
  concurrency: number;
}

export interface TakeResult {
  allowed: boolean;
  /** Why it was refused; undefined when allowed. */
  limitedBy: 'rate' | 'concurrency' | undefined;
  /** Requests still allowed right now, after this one. */
  remaining: number;
  /** When refused: microseconds until a retry can succeed. */
  retryAfterUs: number;
  /** Microseconds until the bucket is full again. */
  resetUs: number;
  /** The concurrency slot taken, to give back with release(); undefined when none was taken. */
  lease: string | undefined;
}

export interface RateLimitStore {
  readonly kind: 'memory' | 'redis';
  /** The bucket prefix of a policy name (the same name always gets the same prefix). */
  namespace(policy: string): string;
  /**
   * Spends one request from `bucket` (and takes a concurrency slot when the
   * limit has one). The memory store answers synchronously with an object it
   * reuses: read it before the next call. The Redis store rejects when Redis
   * fails; the unit decides whether that opens or closes.
   */
  take(bucket: string, limit: CompiledLimit, nowMs: number): TakeResult | Promise<TakeResult>;
  /** Gives back a concurrency slot; never throws. */
  release(bucket: string, lease: string): void;
}
