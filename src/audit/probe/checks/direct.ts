// Direct connections to services, past the gateway: without a client
// certificate of the trust domain a service must refuse (TLS alert or 4xx),
// and it must not answer plaintext HTTP on its port.
import { exchange, rawRequest, describe } from '../http1.ts';
import { result, pass, fail, error, type ProbeContext } from '../context.ts';
import { hostOf } from '../requests.ts';
import type { CheckResult } from '../types.ts';

export async function directChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const s of ctx.plan.services) {
    const where = `service ${s.name} (${s.zone}) ${s.url}`;
    const req = rawRequest('GET', '/', hostOf(s.url), ['Connection: close']);
    if (s.url.startsWith('https:')) {
      const x = await exchange(ctx, s.url, req, { graceMs: 0 });
      const r = x.responses[0];
      out.push(
        result(
          'direct.no-client-cert',
          'a direct connection to a service without a client certificate',
          'high',
          where,
          'the TLS handshake or the request is refused (alert, or 401/403)',
          r ? (r.status < 400 ? fail(`answered ${r.status} to a caller without a certificate`) : pass(`answered ${r.status}`)) : x.error || x.closed ? pass(describe(x)) : error(describe(x)),
        ),
      );
    }
    const p = await exchange(ctx, s.url, req, { plaintext: true, graceMs: 0 });
    const r = p.responses[0];
    out.push(
      result(
        'direct.plaintext',
        'plaintext HTTP to a service port',
        'high',
        where,
        'no HTTP answer below 400 (TLS only)',
        r ? (r.status < 400 ? fail(`answered ${r.status} in plaintext`) : pass(`answered ${r.status} in plaintext (refusal)`)) : p.error || p.closed ? pass(describe(p)) : p.cut === 'timeout' ? pass('no HTTP answer (the port waits for a TLS hello)') : error(describe(p)),
      ),
    );
  }
  return out;
}
