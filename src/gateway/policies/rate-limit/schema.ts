// Config of the rate_limit unit and of the authentication-failure tracker.
import { z } from 'zod';

export const KEY_PARTS = ['address', 'consumer', 'user', 'client', 'subject', 'route'] as const;
/** Parts read from `exchange.identity`: a unit keyed by one of them must run after authentication. */
export const IDENTITY_PARTS: ReadonlySet<string> = new Set(['consumer', 'user', 'client', 'subject']);

export const KeyPart = z
  .enum(KEY_PARTS)
  .describe(
    "'address': the client address (IPv6 grouped by ipv6PrefixBits); 'consumer': the API-key consumer; " +
      "'user': the user of a user token (with its issuer); 'client': the OAuth client id (with its issuer); " +
      "'subject': whoever authenticated, of any kind; 'route': the route name",
  );

const LimitFields = {
  limit: z
    .number()
    .int()
    .min(1)
    .max(1_000_000_000)
    .describe('requests allowed per window at the sustained rate (q in RateLimit-Policy); required'),
  windowSeconds: z
    .number()
    .int()
    .min(1)
    .max(31 * 86_400)
    .default(60)
    .describe('the window of `limit`, in seconds (w in RateLimit-Policy); default 60'),
  burst: z
    .number()
    .int()
    .min(1)
    .max(1_000_000_000)
    .optional()
    .describe('requests allowed at once before the sustained rate applies, at most `limit`; absent: `limit`'),
  concurrency: z
    .number()
    .int()
    .min(1)
    .max(1_000_000)
    .optional()
    .describe('requests of one key in flight at once (released when the response ends); absent: no such limit'),
};

const burstAtMostLimit = (l: { limit: number; burst?: number }) => l.burst === undefined || l.burst <= l.limit;
const BURST_MESSAGE = { message: 'burst must be at most limit', path: ['burst'] };

export const TierLimit = z
  .object(LimitFields)
  .strict()
  .refine(burstAtMostLimit, BURST_MESSAGE)
  .describe('the limit of one consumer tier; it replaces the default limit whole (nothing is inherited)');

const MemoryStore = z
  .object({
    type: z.literal('memory'),
    capacity: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe(
        'buckets kept per gateway worker (about 100 bytes each); the least recently used is evicted beyond it, ' +
          'its debt kept in a fixed-size table so eviction never resets a client; default 100000',
      ),
  })
  .strict()
  .describe('in-process buckets: limits apply per gateway worker process');

const RedisStore = z
  .object({
    type: z.literal('redis'),
    url: z
      .string()
      .regex(/^rediss?:\/\/[^\s]+$/, 'expected redis://[user:password@]host:port[/db] or rediss://…')
      .default('redis://127.0.0.1:6379')
      .describe('the Redis every gateway replica shares; default redis://127.0.0.1:6379'),
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9:._-]{0,64}$/, 'prefix: letters, digits and : . _ - (at most 64)')
      .default('gatehouse:rl:')
      .describe('prefix of every key this store writes; default gatehouse:rl:'),
    timeoutMs: z
      .number()
      .int()
      .min(5)
      .max(10_000)
      .default(100)
      .describe('how long one decision may wait for Redis before it counts as a failure; default 100'),
    failOpen: z
      .boolean()
      .default(false)
      .describe('when Redis fails: true lets requests pass unlimited, false (default) refuses them with 503'),
    leaseSeconds: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .default(300)
      .describe(
        'a concurrency slot a gateway never released (it crashed) is freed after this long; ' +
          'keep it above the longest request; default 300',
      ),
  })
  .strict()
  .describe('buckets in Redis, one atomic script per decision: limits are exact across gateway replicas');

export const RateLimitStore = z.discriminatedUnion('type', [MemoryStore, RedisStore]);

export const RateLimitConfig = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._:+/-]{0,63}$/, 'name: letters, digits and . _ : + / - (at most 64)')
      .optional()
      .describe(
        'the policy name in RateLimit-Policy and the namespace of its buckets: units with the same name and ' +
          'key share buckets (across routes); absent: derived from key, limit, window and burst, so identical ' +
          'settings share buckets and different ones never do',
      ),
    key: z
      .array(KeyPart)
      .min(1)
      .default(['address'])
      .refine((k) => new Set(k).size === k.length, 'key parts must be distinct')
      .describe(
        'what one bucket counts, e.g. [address] or [consumer, route]; identity parts need authentication to ' +
          'have run before this unit; default [address]',
      ),
    ...LimitFields,
    tiers: z
      .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), TierLimit)
      .default({})
      .describe(
        "limits by consumer tier (the identity's `tier`, set on API keys), e.g. { gold: { limit: 1000 } }; " +
          'a tier not listed, or no identity, gets the default limit; empty: everyone gets it',
      ),
    missingIdentity: z
      .enum(['deny', 'address'])
      .default('deny')
      .describe(
        "when the key has an identity part the request lacks (anonymous, or a token without a user): 'deny' " +
          "(default) refuses with 403, 'address' counts it by client address instead",
      ),
    ipv6PrefixBits: z
      .number()
      .int()
      .min(16)
      .max(128)
      .default(64)
      .describe('IPv6 clients are counted per prefix of this length (one subscriber holds a /64); default 64'),
    headers: z
      .boolean()
      .default(true)
      .describe('send RateLimit-Policy and RateLimit on every response of the route; default true'),
    shadow: z
      .boolean()
      .default(false)
      .describe('log and count what would be refused, and let it pass (the policy chain reads it); default false'),
    store: RateLimitStore.default({ type: 'memory', capacity: 100_000 }).describe(
      "where buckets live; absent: { type: memory } (per gateway worker)",
    ),
  })
  .strict()
  .refine(burstAtMostLimit, BURST_MESSAGE)
  .describe('GCRA rate limit (sustained limit per window, burst at once) with optional in-flight concurrency limit');

export type RateLimitConfig = z.infer<typeof RateLimitConfig>;
export type KeyPart = z.infer<typeof KeyPart>;
export type TierLimit = z.infer<typeof TierLimit>;

export const AuthFailureConfig = z
  .object({
    freeFailures: z
      .number()
      .int()
      .min(0)
      .max(100_000)
      .default(3)
      .describe('failures from one source before it is slowed down (typos are free); default 3'),
    maxFailures: z
      .number()
      .int()
      .min(1)
      .max(10_000)
      .default(20)
      .describe('failures from one source that block it for lockoutSeconds; default 20'),
    lockoutSeconds: z.number().int().min(1).max(86_400).default(900).describe('how long a blocked source waits; default 900'),
    forgetAfterSeconds: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .default(900)
      .describe('a source with no failure for this long starts afresh; default 900'),
    capacity: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(100_000)
      .describe('sources tracked per gateway worker; beyond it the least recently seen is folded into a fixed table'),
    ipv6PrefixBits: z.number().int().min(16).max(128).default(64).describe('IPv6 sources are counted per prefix; default 64'),
  })
  .strict()
  .refine((c) => c.maxFailures > c.freeFailures, { message: 'maxFailures must exceed freeFailures', path: ['maxFailures'] })
  .describe('slows, then blocks, a source whose authentication keeps failing');

export type AuthFailureConfig = z.infer<typeof AuthFailureConfig>;
