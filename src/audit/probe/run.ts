// One probe run: the check families in a fixed order (the rate-limit run
// last, since it spends the limit it tests), each bounded by the context and
// none able to stop the others.
import { createContext, BudgetSpent, type ProbeContext } from './context.ts';
import { framingChecks } from './checks/framing.ts';
import { pathChecks, h2PathChecks } from './checks/paths.ts';
import { headerChecks } from './checks/headers.ts';
import { tokenChecks } from './checks/tokens.ts';
import { websocketChecks } from './checks/websocket.ts';
import { directChecks } from './checks/direct.ts';
import { tlsChecks } from './checks/tls.ts';
import { portChecks } from './checks/ports.ts';
import { rateLimitChecks } from './checks/rate-limit.ts';
import { DEFAULT_LIMITS, type CheckResult, type ProbeLimits, type ProbePlan, type ProbeReport } from './types.ts';

export const FAMILIES: Array<[name: string, run: (ctx: ProbeContext) => Promise<CheckResult[]>]> = [
  ['h1-framing', framingChecks],
  ['paths', pathChecks],
  ['h2-paths', h2PathChecks],
  ['headers', headerChecks],
  ['tokens', tokenChecks],
  ['websocket', websocketChecks],
  ['direct', directChecks],
  ['tls', tlsChecks],
  ['ports', portChecks],
  ['rate-limit', rateLimitChecks],
];

/** Every host a URL of the plan names: the only hosts the run connects to. */
export function declaredHosts(plan: ProbePlan): Set<string> {
  const urls = [...plan.zones.flatMap((z) => [z.gateway, z.authority]), ...plan.services.map((s) => s.url), ...plan.declared.map((d) => d.url)];
  return new Set(urls.filter((u): u is string => !!u).map((u) => new URL(u).hostname.replace(/^\[|\]$/g, '')));
}

export async function runProbe(plan: ProbePlan, limits: Partial<ProbeLimits> = {}, only?: string[]): Promise<ProbeReport> {
  const started = Date.now();
  const ctx = createContext(plan, { ...DEFAULT_LIMITS, ...limits }, declaredHosts(plan));
  const results: CheckResult[] = [];
  for (const [name, run] of FAMILIES) {
    if (only && !only.includes(name)) continue;
    try {
      results.push(...(await run(ctx)));
    } catch (e) {
      // one family failing (budget spent, a target answering garbage) never stops the others
      results.push({
        id: `probe.${name}`,
        title: `the ${name} checks`,
        severity: 'low',
        status: 'error',
        target: plan.zones.map((z) => z.gateway).filter(Boolean).join(', ') || 'plan',
        expected: 'the checks run to the end',
        observed: e instanceof BudgetSpent ? `stopped: ${e.message}` : `stopped: ${(e as Error).message ?? String(e)}`,
      });
    }
  }
  const count = (f: (r: CheckResult) => boolean) => results.filter(f).length;
  const failed = (sev: string) => count((r) => r.status === 'fail' && r.severity === sev);
  return {
    tool: { name: 'gatehouse probe', version: '0.1.0' },
    startedAt: new Date(started).toISOString(),
    durationMs: Date.now() - started,
    requests: ctx.requests(),
    targets: [...declaredHosts(plan)],
    summary: {
      pass: count((r) => r.status === 'pass'),
      fail: count((r) => r.status === 'fail'),
      skip: count((r) => r.status === 'skip'),
      error: count((r) => r.status === 'error'),
      high: failed('high'),
      medium: failed('medium'),
      low: failed('low'),
    },
    results,
  };
}

/** 1 when a high finding was made, or when nothing could be checked at all; else 0. */
export function exitCodeOf(report: ProbeReport): number {
  if (report.summary.high > 0) return 1;
  if (report.summary.pass + report.summary.fail === 0) return 1;
  return 0;
}
