// rate_limit unit: GCRA limits (sustained rate per window, burst at once) and
// in-flight concurrency limits, per bucket. What a bucket counts is the `key`:
// the client address, an identity (consumer, user, client, subject), the route,
// or a tuple of them. Limits come per route (each route's chain provisions its
// own config) and per consumer tier (`tiers`, chosen by `identity.tier`).
//
// A unit whose key has an identity part, or that has tiers, reads
// `exchange.identity`: it must run after authentication (see needsIdentity).
// Keyed by an identity the request lacks, it refuses (403) unless
// `missingIdentity: address`.
//
// Every response of a limited route carries RateLimit-Policy and RateLimit
// (draft-ietf-httpapi-ratelimit-headers: `"name";q=100;w=60` and
// `"name";r=42;t=18`, appended to what an earlier unit set); a refusal is 429
// with Retry-After. With the Redis store, a failing Redis refuses with 503
// (fail closed, the default) or lets requests through (`failOpen`), counted in
// gatehouse_gateway_rate_limit_store_errors_total and logged by the store.
import { createHash } from 'node:crypto';
import type { Policy, ProvisionContext, Exchange, Decision } from '../policy.ts';
import { RateLimitConfig, IDENTITY_PARTS, type TierLimit } from './schema.ts';
import { gcraLimit } from './gcra.ts';
import { compileBucketKey } from './bucket-key.ts';
import { MemoryStore } from './memory-store.ts';
import { RedisStore } from './redis-store.ts';
import { rateLimitMetricsOf, type RateLimitMetrics, type Tally } from './metrics.ts';
import type { CompiledLimit, RateLimitStore, TakeResult } from './store.ts';
import { Forbidden, RateLimitUnavailable, TooManyRequests } from '../../../shared/errors.ts';

export type Config = RateLimitConfig;
export { RateLimitConfig };
export { AuthFailureTracker, authFailureTrackerOf } from './auth-failures.ts';
export { createRateLimitMetrics, RATE_LIMIT_METRICS, type RateLimitMetrics } from './metrics.ts';

type Counter = Tally;

export interface Limit extends CompiledLimit {
  /** Policy name in the headers, and bucket namespace. */
  name: string;
  namespace: string;
  /** RateLimit-Policy item, precomputed. */
  policyItem: string;
  /** RateLimit item up to `r=`. */
  remainingPrefix: string;
  allowed: Counter;
  limited: Counter;
  concurrencyLimited: Counter;
}

export interface State {
  key: (exchange: Exchange) => string | undefined;
  base: Limit;
  tiers: ReadonlyMap<string, Limit>;
  store: RateLimitStore;
  headers: boolean;
  failOpen: boolean;
  missingIdentity: Counter;
  failedOpen: Counter;
  failedClosed: Counter;
}

/** True when the unit reads `exchange.identity` and so must run after authentication. */
export function needsIdentity(config: Config): boolean {
  return config.key.some((p) => IDENTITY_PARTS.has(p)) || Object.keys(config.tiers).length > 0;
}

/** Buckets of identical settings are shared; different settings never share one. */
function policyName(config: Config): string {
  if (config.name !== undefined) return config.name;
  const burst = config.burst ?? config.limit;
  return `${config.key.join('+')}:${config.limit}/${config.windowSeconds}s${burst === config.limit ? '' : `:b${burst}`}`;
}

function compileLimit(name: string, l: TierLimit, metrics: RateLimitMetrics, store: RateLimitStore): Limit {
  const burst = l.burst ?? l.limit;
  return {
    ...gcraLimit(l.limit, l.windowSeconds, burst),
    concurrency: l.concurrency ?? 0,
    name,
    namespace: store.namespace(name),
    policyItem: `"${name}";q=${l.limit};w=${l.windowSeconds}`,
    remainingPrefix: `"${name}";r=`,
    allowed: metrics.decision(name, 'allowed'),
    limited: metrics.decision(name, 'limited'),
    concurrencyLimited: metrics.decision(name, 'concurrency'),
  };
}

async function storeOf(config: Config, ctx: ProvisionContext, metrics: RateLimitMetrics): Promise<RateLimitStore> {
  const s = config.store;
  if (s.type === 'memory')
    return ctx.shared.get(`rate_limit:memory:${s.capacity}`, () => new MemoryStore({ capacity: s.capacity, evictions: metrics.evictions }));
  const store = ctx.shared.get(
    `rate_limit:redis:${JSON.stringify([s.url, s.prefix, s.timeoutMs, s.leaseSeconds])}`,
    () => new RedisStore({ url: s.url, prefix: s.prefix, timeoutMs: s.timeoutMs, leaseSeconds: s.leaseSeconds, logger: ctx.logger, clock: ctx.clock }),
    (r) => r.close(),
  );
  // the gateway starts without Redis: decisions then fail open or closed as configured
  await store.preload(1000).catch((error: unknown) =>
    ctx.logger.warn({ err: error }, 'rate limit: Redis not reachable at provisioning; the script loads on connection'),
  );
  return store;
}

const LONG_KEY = 200;

function addHeader(headers: Record<string, string>, name: string, item: string): void {
  const prev = headers[name];
  headers[name] = prev === undefined ? item : `${prev}, ${item}`;
}

function decide(exchange: Exchange, state: State, limit: Limit, bucket: string, r: TakeResult): Decision {
  if (state.headers) {
    addHeader(exchange.responseHeaders, 'ratelimit-policy', limit.policyItem);
    addHeader(exchange.responseHeaders, 'ratelimit', `${limit.remainingPrefix}${r.remaining};t=${Math.ceil(r.resetUs / 1e6)}`);
  }
  if (r.allowed) {
    limit.allowed.inc();
    const lease = r.lease;
    if (lease !== undefined) {
      const store = state.store;
      exchange.onDone.push(() => store.release(bucket, lease));
    }
    return undefined;
  }
  if (r.limitedBy === 'concurrency') {
    limit.concurrencyLimited.inc();
    return TooManyRequests(r.retryAfterUs / 1e6, 'Too many requests in flight; retry when one has finished.');
  }
  limit.limited.inc();
  return TooManyRequests(r.retryAfterUs / 1e6);
}

function failed(state: State, error: unknown): Decision {
  if (state.failOpen) {
    state.failedOpen.inc();
    return undefined;
  }
  state.failedClosed.inc();
  return RateLimitUnavailable(error);
}

export default {
  id: 'rate_limit',
  phase: 'rate',
  schema: RateLimitConfig,
  // keyed by the caller: counted once authentication said who it is, before authorization
  phaseFor: (config: Config) => (needsIdentity(config) ? 'authorize' : 'rate'),
  async provision(config: Config, ctx: ProvisionContext): Promise<State> {
    const metrics = rateLimitMetricsOf(ctx.shared);
    const name = policyName(config);
    const store = await storeOf(config, ctx, metrics);
    const tiers = new Map<string, Limit>();
    for (const [tier, l] of Object.entries(config.tiers)) tiers.set(tier, compileLimit(`${name}:${tier}`, l, metrics, store));
    return {
      key: compileBucketKey(config.key, { ipv6PrefixBits: config.ipv6PrefixBits, missingIdentity: config.missingIdentity }),
      base: compileLimit(name, config, metrics, store),
      tiers,
      store,
      headers: config.headers && !config.shadow,
      failOpen: config.store.type === 'redis' && config.store.failOpen,
      missingIdentity: metrics.decision(name, 'missing_identity'),
      failedOpen: metrics.storeErrors.labels(store.kind, 'fail_open'),
      failedClosed: metrics.storeErrors.labels(store.kind, 'fail_closed'),
    };
  },
  onRequest(exchange, state) {
    const key = state.key(exchange);
    if (key === undefined) {
      state.missingIdentity.inc();
      return Forbidden('This route is limited per caller and the request carries no identity to count it by.');
    }
    const tier = exchange.identity?.tier;
    const limit = (tier !== undefined && state.tiers.get(tier)) || state.base;
    const bucket =
      key.length > LONG_KEY
        ? `${limit.namespace}#${createHash('sha256').update(key).digest('base64url')}`
        : limit.namespace + key;
    let r: TakeResult | Promise<TakeResult>;
    try {
      r = state.store.take(bucket, limit, exchange.now);
    } catch (error) {
      return failed(state, error);
    }
    if (r instanceof Promise)
      return r.then(
        (result) => decide(exchange, state, limit, bucket, result),
        (error: unknown) => failed(state, error),
      );
    return decide(exchange, state, limit, bucket, r);
  },
} satisfies Policy<Config, State>;
