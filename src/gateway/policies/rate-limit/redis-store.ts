// Rate-limit buckets in Redis, shared by every gateway replica. One decision
// is one EVALSHA of a preloaded script, so the check and the spend are atomic
// and the total allowed across N replicas never exceeds the limit. Time comes
// from Redis (TIME) by default: replicas' clocks disagree, Redis is one clock.
//
// The client never queues or resends: a command that cannot be sent fails at
// once, a slow one fails after `timeoutMs`, and a decision that may or may not
// have run on a dying connection is not replayed (it would spend twice). The
// unit turns a failure into fail-open or fail-closed; this file logs it, once
// when it starts, at most every 10 s while it lasts, and when it ends.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import type { Logger } from '../../../shared/logger.ts';
import { systemClock, type Clock } from '../../../shared/clock.ts';
import type { CompiledLimit, RateLimitStore, TakeResult } from './store.ts';

// KEYS[1]: the GCRA TAT (µs); KEYS[2]: the concurrency leases (sorted set, score = expiry in µs).
// ARGV: emission_us, tolerance_us, concurrency, lease_us, lease member, now_us ('' = Redis TIME).
// Returns { result, remaining, retry_after_us, reset_us }; result 1 allowed, 0 rate-limited, 2 concurrency-limited.
// Arithmetic on whole µs in doubles (exact), stored with %.0f (tostring would round to 14 digits).
export const DECIDE_SCRIPT = `
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local concurrency = tonumber(ARGV[3])
local now = tonumber(ARGV[6])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if concurrency > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', KEYS[2]) >= concurrency then
    return { 2, math.floor((now + tolerance - tat) / emission), 1000000, tat - now }
  end
end
local nxt = tat + emission
local allow_at = nxt - tolerance
if now < allow_at then
  return { 0, 0, allow_at - now, tat - now }
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000))
if concurrency > 0 then
  local lease = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], string.format('%.0f', now + lease), ARGV[5])
  redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000))
end
return { 1, math.floor((now + tolerance - nxt) / emission), 0, nxt - now }
`;

export const DECIDE_SHA = createHash('sha1').update(DECIDE_SCRIPT).digest('hex');

const LOG_EVERY_MS = 10_000;

export interface RedisStoreOptions {
  url: string;
  prefix: string;
  timeoutMs: number;
  leaseSeconds: number;
  logger: Logger;
  /** For the failure log's pacing; decisions use Redis time (or the caller's). */
  clock?: Clock;
  /** Take `now` from the caller instead of Redis TIME (tests that replay a sequence). */
  callerTime?: boolean;
}

export class RedisStore implements RateLimitStore {
  readonly kind = 'redis' as const;
  readonly client: Redis;
  readonly #prefix: string;
  readonly #leaseUs: string;
  readonly #callerTime: boolean;
  readonly #logger: Logger;
  readonly #clock: Clock;
  readonly #where: string;
  readonly #leasePrefix = randomBytes(6).toString('base64url');
  #leaseCounter = 0;
  #loaded: Promise<void> | undefined;
  #failingSince = 0;
  #failuresSinceLog = 0;
  #lastLog = 0;

  constructor(options: RedisStoreOptions) {
    this.#prefix = options.prefix;
    this.#leaseUs = String(options.leaseSeconds * 1_000_000);
    this.#callerTime = options.callerTime ?? false;
    this.#logger = options.logger;
    this.#clock = options.clock ?? systemClock;
    const u = new URL(options.url);
    this.#where = `${u.hostname}:${u.port || 6379}`; // never the credentials
    this.client = new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: options.timeoutMs,
      connectTimeout: Math.max(1000, options.timeoutMs),
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    });
    this.client.on('error', (error: Error) => this.#failed(error));
    // a Redis that restarted lost its scripts: load again on every (re)connection
    this.client.on('ready', () => {
      this.#loaded = undefined;
      this.preload().catch(() => undefined);
    });
  }

  /** Loads the script (once per connection); waits up to `waitMs` for a first connection. */
  async preload(waitMs = 0): Promise<void> {
    if (this.client.status !== 'ready' && waitMs > 0) {
      const timer = AbortSignal.timeout(waitMs);
      await once(this.client, 'ready', { signal: timer }).catch(() => undefined);
    }
    this.#loaded ??= this.client.script('LOAD', DECIDE_SCRIPT).then(
      (sha) => {
        if (sha !== DECIDE_SHA) throw new Error(`Redis returned script sha ${String(sha)}, expected ${DECIDE_SHA}`);
      },
      (error: unknown) => {
        this.#loaded = undefined;
        throw error;
      },
    );
    return this.#loaded;
  }

  /** Readable keys: {prefix}{policy|key}:t */
  namespace(policy: string): string {
    return `${policy}|`;
  }

  async take(bucket: string, limit: CompiledLimit, nowMs: number): Promise<TakeResult> {
    const tatKey = `${this.#prefix}{${bucket}}:t`;
    const leaseKey = `${this.#prefix}{${bucket}}:c`;
    const lease = limit.concurrency > 0 ? `${this.#leasePrefix}.${(this.#leaseCounter = (this.#leaseCounter + 1) % 2 ** 52)}` : '';
    const now = this.#callerTime ? String(nowMs * 1000) : '';
    let reply: unknown;
    try {
      try {
        reply = await this.#decide(tatKey, leaseKey, limit, lease, now);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
        this.#loaded = undefined;
        await this.preload();
        reply = await this.#decide(tatKey, leaseKey, limit, lease, now);
      }
    } catch (error) {
      this.#failed(error as Error);
      throw error;
    }
    if (this.#failingSince !== 0) this.#recovered();
    const [result, remaining, retryAfterUs, resetUs] = reply as [number, number, number, number];
    return {
      allowed: result === 1,
      limitedBy: result === 1 ? undefined : result === 2 ? 'concurrency' : 'rate',
      remaining: Math.max(0, remaining),
      retryAfterUs,
      resetUs,
      lease: result === 1 && lease !== '' ? lease : undefined,
    };
  }

  #decide(tatKey: string, leaseKey: string, limit: CompiledLimit, lease: string, now: string): Promise<unknown> {
    return this.client.evalsha(
      DECIDE_SHA,
      2,
      tatKey,
      leaseKey,
      limit.emissionUs,
      limit.toleranceUs,
      limit.concurrency,
      this.#leaseUs,
      lease,
      now,
    );
  }

  release(bucket: string, lease: string): void {
    // a lost release is freed by the lease expiry
    this.client.zrem(`${this.#prefix}{${bucket}}:c`, lease).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  #failed(error: Error): void {
    const now = this.#clock.now();
    this.#failuresSinceLog++;
    if (this.#failingSince === 0) {
      this.#failingSince = now;
      this.#lastLog = now;
      this.#failuresSinceLog = 0;
      this.#logger.error({ err: error, redis: this.#where }, 'rate limit: Redis store failing');
    } else if (now - this.#lastLog >= LOG_EVERY_MS) {
      this.#logger.error(
        { err: error, redis: this.#where, failures: this.#failuresSinceLog, since: new Date(this.#failingSince).toISOString() },
        'rate limit: Redis store still failing',
      );
      this.#lastLog = now;
      this.#failuresSinceLog = 0;
    }
  }

  #recovered(): void {
    this.#logger.info({ redis: this.#where, downMs: this.#clock.now() - this.#failingSince }, 'rate limit: Redis store recovered');
    this.#failingSince = 0;
    this.#failuresSinceLog = 0;
  }
}
