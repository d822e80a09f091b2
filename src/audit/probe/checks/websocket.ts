// A WebSocket upgrade without a credential on a protected route must be
// refused before anything is tunnelled.
import { randomBytes } from 'node:crypto';
import { exchange, rawRequest, describe } from '../http1.ts';
import { result, pass, fail, skip, error, type ProbeContext } from '../context.ts';
import { hostOf, protectedRoute, THROTTLED } from '../requests.ts';
import type { CheckResult } from '../types.ts';

export async function websocketChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway) continue;
    const where = `${zone.name} gateway ${zone.gateway}`;
    const title = 'WebSocket upgrade without a credential on a protected route';
    const route = protectedRoute(zone);
    if (!route) {
      out.push(result('ws.unauthenticated', title, 'high', where, 'refused (401)', skip('no protected route known (give --config)')));
      continue;
    }
    const bytes = rawRequest('GET', route.path, hostOf(zone.gateway), [
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      `Origin: ${zone.gateway}`,
    ]);
    const x = await exchange(ctx, zone.gateway, bytes, { graceMs: 0, freshSource: true });
    const first = x.responses[0];
    out.push(
      result(
        'ws.unauthenticated',
        title,
        'high',
        `${where} route ${route.name}`,
        'refused (4xx), no 101 Switching Protocols',
        !first
          ? x.closed && !x.error
            ? pass(describe(x))
            : error(describe(x))
          : first.status < 400
            ? fail(describe(x))
            : first.status === THROTTLED
              ? error(`throttled: ${describe(x)}`)
              : pass(describe(x)),
      ),
    );
  }
  return out;
}
