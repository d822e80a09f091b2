// Counters of the rate limiter and the authentication-failure tracker. The
// gateway creates them on its registry and puts them in its shared resources
// under RATE_LIMIT_METRICS before provisioning; without that, each gateway
// counts into a private registry nobody scrapes.
import client from 'prom-client';
import type { SharedResources } from '../policy.ts';

export const RATE_LIMIT_METRICS = 'rate_limit:metrics';

/** A count kept on the request path as a plain number add; prom-client sees it when scraped. */
export interface Tally {
  inc(): void;
}

class PendingCount implements Tally {
  n = 0;
  inc(): void {
    this.n++;
  }
}

export interface RateLimitMetrics {
  /** Decisions by policy name and result: allowed, limited, concurrency (refused), missing_identity. */
  decisions: client.Counter<'policy' | 'result'>;
  /**
   * The tally of one policy and result. A labelled prom-client inc() hashes
   * its labels on every call, which costs more than the decision itself, so
   * the request path adds to a number and the counter collects it on scrape.
   * One tally per label pair, reused across reloads.
   */
  decision(policy: string, result: string): Tally;
  /** Store failures by store and outcome: fail_open (let through) or fail_closed (503). */
  storeErrors: client.Counter<'store' | 'outcome'>;
  /** Buckets evicted from memory stores (folded, never forgotten). */
  evictions: client.Counter;
  /** Authentication failures recorded, and checks refused by reason: slowed or blocked. */
  authFailures: client.Counter<'result'>;
}

export function createRateLimitMetrics(registry: client.Registry): RateLimitMetrics {
  const registers = [registry];
  const pending = new Map<string, { policy: string; result: string; count: PendingCount }>();
  const decisions = new client.Counter({
    name: 'gatehouse_gateway_rate_limit_decisions_total',
    help: 'Rate-limit decisions, by policy and result (allowed, limited, concurrency, missing_identity)',
    labelNames: ['policy', 'result'] as const,
    registers,
    collect() {
      for (const p of pending.values()) {
        if (p.count.n === 0) continue;
        this.inc({ policy: p.policy, result: p.result }, p.count.n);
        p.count.n = 0;
      }
    },
  });
  return {
    decisions,
    decision(policy, result) {
      const key = `${policy}\n${result}`;
      let p = pending.get(key);
      if (!p) pending.set(key, (p = { policy, result, count: new PendingCount() }));
      return p.count;
    },
    storeErrors: new client.Counter({
      name: 'gatehouse_gateway_rate_limit_store_errors_total',
      help: 'Decisions the rate-limit store failed to make, by store and outcome (fail_open, fail_closed)',
      labelNames: ['store', 'outcome'] as const,
      registers,
    }),
    evictions: new client.Counter({
      name: 'gatehouse_gateway_rate_limit_evictions_total',
      help: 'Buckets evicted from in-memory rate-limit stores (their debt is folded, not forgotten)',
      registers,
    }),
    authFailures: new client.Counter({
      name: 'gatehouse_gateway_auth_failures_total',
      help: 'Authentication failures recorded per source (recorded) and requests refused for them (slowed, blocked)',
      labelNames: ['result'] as const,
      registers,
    }),
  };
}

/** The gateway's rate-limit metrics, or counters on a private registry when it set none. */
export function rateLimitMetricsOf(shared: SharedResources): RateLimitMetrics {
  return shared.get(RATE_LIMIT_METRICS, () => createRateLimitMetrics(new client.Registry()));
}
