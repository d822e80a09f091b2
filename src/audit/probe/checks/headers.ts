// Header spoofing: forwarding, identity and method-override headers a client
// sends must never reach the upstream. Seen through a route that reflects
// what its upstream received (the example's echo); without one, skipped.
import { randomBytes } from 'node:crypto';
import { result, pass, fail, skip, error, type ProbeContext } from '../context.ts';
import { findReflector, send } from '../requests.ts';
import { h2Request } from '../h2.ts';
import type { CheckResult } from '../types.ts';

const SPOOF_IP = '203.0.113.66';

/** Headers an attacker sets, and the marker that shows each arrived upstream. */
export function spoofedHeaders(nonce: string): Array<[name: string, value: string, marker: string]> {
  const host = `probe-${nonce}.invalid`;
  return [
    ['X-Forwarded-For', SPOOF_IP, SPOOF_IP],
    ['X-Real-IP', SPOOF_IP, SPOOF_IP],
    ['True-Client-IP', SPOOF_IP, SPOOF_IP],
    ['Forwarded', `for=${SPOOF_IP};host=${host}`, SPOOF_IP],
    ['X-Forwarded-Host', host, host],
    ['X-Gatehouse-Caller', `spiffe://${host}/admin`, host],
    ['X-Gatehouse-User', `admin-${nonce}`, `admin-${nonce}`],
    ['X-Gatehouse-Identity', `spiffe://${host}/identity`, host],
    ['X-Forwarded-Client-Cert', `URI=spiffe://${host}/cert`, host],
    ['X-Original-URL', `/admin-${nonce}`, `/admin-${nonce}`],
    ['X-Rewrite-URL', `/rewrite-${nonce}`, `/rewrite-${nonce}`],
    ['X-HTTP-Method-Override', 'DELETE', 'x-http-method-override'],
    ['X-Method-Override', 'DELETE', 'x-method-override'],
  ];
}

const EXPECTED = 'no client-supplied forwarding, identity or override header reaches the upstream';

function leaked(body: Buffer, spoofs: ReturnType<typeof spoofedHeaders>): string[] {
  const text = body.toString('utf8').toLowerCase();
  return spoofs.filter(([, , marker]) => text.includes(marker.toLowerCase())).map(([name]) => name);
}

export async function headerChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway) continue;
    const nonce = randomBytes(4).toString('hex');
    const where = `${zone.name} gateway ${zone.gateway}`;
    const title = 'spoofed forwarding, identity and method-override headers';
    const reflector = await findReflector(ctx, zone, nonce);
    if (!reflector) {
      out.push(result('headers.spoofing', title, 'high', where, EXPECTED, skip('no route reflects request headers (an echo route) to observe what the upstream receives')));
      out.push(result('h2.header-spoofing', `${title} over HTTP/2`, 'high', where, EXPECTED, skip('no reflecting route')));
      continue;
    }
    const spoofs = spoofedHeaders(nonce);
    const { res, x } = await send(ctx, zone.gateway, 'GET', reflector.route.path, [...reflector.auth, ...spoofs.map(([n, v]) => `${n}: ${v}`)], undefined, reflector.auth.length > 0 ? {} : { freshSource: true });
    const leaks = res ? leaked(res.body, spoofs) : [];
    out.push(
      result(
        'headers.spoofing',
        title,
        'high',
        `${where} route ${reflector.route.name}`,
        EXPECTED,
        !res ? error(x.error ?? x.cut ?? 'no answer') : leaks.length > 0 ? fail(`reached the upstream: ${leaks.join(', ')}`) : pass(`${res.status}; none of ${spoofs.length} reached the upstream`),
      ),
    );
    if (!zone.gateway.startsWith('https:')) continue;
    const h2 = await h2Request(ctx, zone.gateway, {
      ':method': 'GET',
      ':path': reflector.route.path,
      ...Object.fromEntries(reflector.auth.map((h) => [h.slice(0, h.indexOf(':')).toLowerCase(), h.slice(h.indexOf(':') + 1).trim()])),
      ...Object.fromEntries(spoofs.map(([n, v]) => [n.toLowerCase(), v])),
    });
    const h2leaks = 'error' in h2 ? [] : leaked(h2.body, spoofs);
    out.push(
      result(
        'h2.header-spoofing',
        `${title} over HTTP/2`,
        'high',
        `${where} route ${reflector.route.name} (h2)`,
        EXPECTED,
        'error' in h2
          ? h2.noH2
            ? skip(`no HTTP/2 (${h2.error})`)
            : error(h2.error)
          : h2leaks.length > 0
            ? fail(`reached the upstream: ${h2leaks.join(', ')}`)
            : pass(`${h2.status}; none of ${spoofs.length} reached the upstream`),
      ),
    );
  }
  return out;
}
