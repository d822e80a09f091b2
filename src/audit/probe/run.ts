// One probe run: the check families in a fixed order (the rate-limit run
// last, since it spends the limit it tests), each bounded by the context and
// none able to stop the others.
import { createContext, BudgetSpent, result, pass, skip, type ProbeContext } from './context.ts';
import { exchange, rawRequest } from './http1.ts';
import { framingChecks } from './checks/framing.ts';
import { pathChecks, h2PathChecks } from './checks/paths.ts';
import { h2DesyncChecks } from './checks/h2-desync.ts';
import { headerChecks } from './checks/headers.ts';
import { tokenChecks } from './checks/tokens.ts';
import { websocketChecks } from './checks/websocket.ts';
import { directChecks } from './checks/direct.ts';
import { tlsChecks } from './checks/tls.ts';
import { portChecks } from './checks/ports.ts';
import { rateLimitChecks } from './checks/rate-limit.ts';
import { DEFAULT_LIMITS, type CheckResult, type ProbeLimits, type ProbePlan, type ProbeReport, type Severity } from './types.ts';

/** Families that speak HTTP to a gateway: a gateway that refuses the probe at TLS (no client certificate) is left out of them. */
const HTTP_FAMILIES = new Set(['h1-framing', 'h2-desync', 'paths', 'h2-paths', 'headers', 'tokens', 'websocket', 'rate-limit']);

export const FAMILIES: Array<[name: string, run: (ctx: ProbeContext) => Promise<CheckResult[]>]> = [
  ['h1-framing', framingChecks],
  ['h2-desync', h2DesyncChecks],
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
  const closed = await gatewaysRequiringCertificate(ctx, results);
  const open: ProbeContext = { ...ctx, plan: { ...plan, zones: plan.zones.map((z) => (closed.has(z.name) ? { ...z, gateway: undefined } : z)) } };
  for (const [name, run] of FAMILIES) {
    if (only && !only.includes(name)) continue;
    try {
      results.push(...(await run(HTTP_FAMILIES.has(name) ? open : ctx)));
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
      accepted: count((r) => r.status === 'accepted'),
      high: failed('high'),
      medium: failed('medium'),
      low: failed('low'),
    },
    results,
  };
}

/**
 * Gateways that end the TLS handshake of a client without a certificate. Without
 * plan.clientCert the HTTP checks cannot reach them: that refusal is reported
 * (it is what an outsider meets) and the checks behind it are listed as skipped.
 */
async function gatewaysRequiringCertificate(ctx: ProbeContext, results: CheckResult[]): Promise<Set<string>> {
  const closed = new Set<string>();
  for (const z of ctx.plan.zones) {
    if (!z.gateway?.startsWith('https:')) continue;
    let x;
    try {
      x = await exchange(ctx, z.gateway, rawRequest('GET', '/', new URL(z.gateway).host, ['Connection: close']), { graceMs: 0, cert: undefined, bare: true });
    } catch {
      continue;
    }
    if (!x.error || !/CERTIFICATE_REQUIRED|certificate required|HANDSHAKE_FAILURE|BAD_CERTIFICATE/i.test(x.error)) continue;
    const where = `${z.name} gateway ${z.gateway}`;
    results.push(result('gateway.client-certificate', 'a client without a certificate at a gateway that requires one', 'low', where, 'refused in the TLS handshake', pass(x.error)));
    if (ctx.plan.clientCert) continue;
    closed.add(z.name);
    results.push(
      result('gateway.behind-mtls', 'the HTTP checks behind the TLS handshake', 'low', where, 'run with a workload certificate', skip('the gateway requires a client certificate: give --cert and --key of a workload (a compromised-workload run) to check behind it')),
    );
  }
  return closed;
}

/** 1 when a finding of `failOn` severity or above was made (accepted ones aside), or when nothing could be checked at all; else 0. */
export function exitCodeOf(report: ProbeReport, failOn: Severity = 'high'): number {
  const s = report.summary;
  if (s.high > 0) return 1;
  if (failOn !== 'high' && s.medium > 0) return 1;
  if (failOn === 'low' && s.low > 0) return 1;
  if (s.pass + s.fail + s.accepted === 0) return 1;
  return 0;
}
