// The bounds of a probe run: every connection goes through take(), which
// refuses once the request budget or the run's deadline is spent, and only to
// a host the plan declares.
import type { CheckResult, ProbeLimits, ProbePlan, Severity } from './types.ts';

export class BudgetSpent extends Error {
  constructor(what: string) {
    super(what);
    this.name = 'BudgetSpent';
  }
}

export interface ProbeContext {
  plan: ProbePlan;
  limits: ProbeLimits;
  /** Counts one request; throws BudgetSpent when the count or the deadline is spent, or the host is not declared. */
  take(host: string): void;
  requests(): number;
  /** ms left before the deadline. */
  left(): number;
  /**
   * A loopback source address of its own (127.0.0.2 …) for a connection to
   * `host`, when `host` is IPv4 loopback on Linux: a gateway's per-source
   * auth-failure throttle would otherwise turn every check after the third
   * refusal into a 429 that proves nothing. Undefined elsewhere.
   */
  freshSource(host: string): string | undefined;
}

export function createContext(plan: ProbePlan, limits: ProbeLimits, hosts: Set<string>, now = () => Date.now()): ProbeContext {
  const deadline = now() + limits.maxMs;
  let count = 0;
  let source = 0;
  return {
    plan,
    limits,
    take(host) {
      if (!hosts.has(host)) throw new BudgetSpent(`${host} is not a declared host`);
      if (count >= limits.maxRequests) throw new BudgetSpent(`request budget spent (${limits.maxRequests})`);
      if (now() >= deadline) throw new BudgetSpent(`time budget spent (${limits.maxMs} ms)`);
      count++;
    },
    requests: () => count,
    freshSource(host) {
      if (process.platform !== 'linux' || !/^127\.\d+\.\d+\.\d+$/.test(host)) return undefined;
      source = (source % 250) + 1;
      return `127.0.${1 + Math.floor(count / 250) % 200}.${source + 1}`;
    },
    left: () => deadline - now(),
  };
}

/** One result, built the same way by every check. */
export function result(
  id: string,
  title: string,
  severity: Severity,
  target: string,
  expected: string,
  verdict: { status: CheckResult['status']; observed: string },
): CheckResult {
  return { id, title, severity, status: verdict.status, target, expected, observed: verdict.observed };
}

export const pass = (observed: string) => ({ status: 'pass' as const, observed });
export const fail = (observed: string) => ({ status: 'fail' as const, observed });
export const skip = (observed: string) => ({ status: 'skip' as const, observed });
export const error = (observed: string) => ({ status: 'error' as const, observed });
