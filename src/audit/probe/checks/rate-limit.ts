// Rate-limit evasion: a limit keyed on the client address must not reset when
// the client claims another address (X-Forwarded-For, X-Real-IP, Forwarded).
import { result, pass, fail, skip, error, type ProbeContext } from '../context.ts';
import { send, methodFor } from '../requests.ts';
import type { CheckResult } from '../types.ts';

/** Requests past the declared limit and burst before the check says the limit was evaded. */
const MARGIN = 20;
const MOST = 400;

export async function rateLimitChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway) continue;
    const route = zone.routes.find((r) => r.rateLimit && !r.protected && methodFor(r) === 'GET');
    const title = 'a rate limit keyed on the address, with a spoofed address on every request';
    const where = `${zone.name} gateway ${zone.gateway}`;
    if (!route?.rateLimit) {
      out.push(result('ratelimit.spoofed-forwarding', title, 'high', where, 'limited (429) within the declared limit', skip('no anonymous GET route with an address-keyed rate limit is declared')));
      continue;
    }
    const budget = Math.min(route.rateLimit.limit + route.rateLimit.burst + MARGIN, MOST);
    let limitedAt = 0;
    let answered = 0;
    let lastProblem = '';
    // one source address for the whole run (its own, on loopback): the limit under test counts it
    const source = ctx.freshSource(new URL(zone.gateway).hostname);
    for (let i = 1; i <= budget; i++) {
      const ip = `198.51.100.${i % 250}`;
      const { res, x } = await send(ctx, zone.gateway, 'GET', route.path, [`X-Forwarded-For: ${ip}`, `X-Real-IP: ${ip}`, `Forwarded: for=${ip}`, `True-Client-IP: ${ip}`], undefined, source ? { source } : {});
      if (!res) {
        lastProblem = x.error ?? x.cut ?? 'no answer';
        continue;
      }
      answered++;
      if (res.status === 429) {
        limitedAt = i;
        break;
      }
      if (res.status >= 400) lastProblem = `answered ${res.status}`;
    }
    const expected = `429 within ${budget} requests (limit ${route.rateLimit.limit}, burst ${route.rateLimit.burst})`;
    out.push(
      result(
        'ratelimit.spoofed-forwarding',
        title,
        'high',
        `${where} route ${route.name}`,
        expected,
        limitedAt === 1
          ? error('429 at the first request: the source was limited before the check began')
          : limitedAt > 0
            ? pass(`429 at request ${limitedAt}: the spoofed addresses did not reset the limit`)
          : answered === 0
            ? error(`no answer (${lastProblem})`)
            : fail(`${answered} requests answered, none limited: each spoofed address got its own allowance (or there is no limit)`),
      ),
    );
  }
  return out;
}
