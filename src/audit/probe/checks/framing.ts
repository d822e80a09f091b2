// Request smuggling and desync over HTTP/1.1: framing the gateway must refuse
// (400, connection closed). A second response on the connection means the
// request hidden behind the first was parsed and answered: a smuggled request.
import { randomBytes } from 'node:crypto';
import { exchange, describe } from '../http1.ts';
import { result, pass, fail, error, type ProbeContext } from '../context.ts';
import { hostOf } from '../requests.ts';
import type { CheckResult, Severity } from '../types.ts';

interface Case {
  id: string;
  title: string;
  severity: Severity;
  bytes(path: string, host: string, smuggled: string): string;
}

const CASES: Case[] = [
  {
    id: 'h1.smuggling.cl-te',
    title: 'Content-Length and Transfer-Encoding together (CL.TE)',
    severity: 'high',
    bytes: (p, h, s) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${s}`,
  },
  {
    id: 'h1.smuggling.te-cl',
    title: 'Transfer-Encoding before Content-Length, a request inside the chunk (TE.CL)',
    severity: 'high',
    bytes: (p, h, s) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${s.length.toString(16)}\r\n${s}\r\n0\r\n\r\n`,
  },
  {
    id: 'h1.smuggling.duplicate-cl',
    title: 'two Content-Length headers that disagree',
    severity: 'high',
    bytes: (p, h, s) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 0\r\nContent-Length: ${s.length}\r\n\r\n${s}`,
  },
  {
    id: 'h1.smuggling.te-obfuscated',
    title: "an obfuscated Transfer-Encoding ('chunked, identity') beside Content-Length",
    severity: 'high',
    bytes: (p, h, s) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${s}`,
  },
  {
    id: 'h1.smuggling.obs-fold',
    title: 'Transfer-Encoding continued on a folded line (obs-fold)',
    severity: 'high',
    bytes: (p, h, s) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n${s}`,
  },
  {
    id: 'h1.framing.bare-lf',
    title: 'lines ended by a bare LF',
    severity: 'medium',
    bytes: (p, h) => `GET ${p} HTTP/1.1\nHost: ${h}\nX-Probe: 1\n\n`,
  },
  {
    id: 'h1.framing.space-before-colon',
    title: "a space between a header name and ':' (Transfer-Encoding : chunked)",
    severity: 'high',
    bytes: (p, h, s) => `POST ${p} HTTP/1.1\r\nHost: ${h}\r\nContent-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${s}`,
  },
  {
    id: 'h1.smuggling.after-refusal',
    title: 'a request pipelined behind an ambiguous one that is refused',
    severity: 'high',
    bytes: (p, h, s) => `GET ${p.replace(/\/?$/, '/')}%2e%2e/x HTTP/1.1\r\nHost: ${h}\r\n\r\n${s}`,
  },
];

export async function framingChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway) continue;
    const host = hostOf(zone.gateway);
    const path = zone.routes[0]?.path ?? '/';
    const smuggled = `GET /probe-smuggled-${randomBytes(4).toString('hex')} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    for (const c of CASES) {
      const x = await exchange(ctx, zone.gateway, c.bytes(path, host, smuggled), { graceMs: 400, freshSource: true });
      const accepted = x.responses.filter((r) => r.status < 400);
      const verdict =
        x.responses.length > 1
          ? fail(`${describe(x)}: the request behind it was answered on its own (smuggled)`)
          : accepted.length > 0
            ? fail(`${describe(x)}: the ambiguous request was accepted`)
            : x.responses.length === 1 || (x.closed && !x.error)
              ? pass(describe(x))
              : error(describe(x));
      out.push(result(c.id, c.title, c.severity, `${zone.name} gateway ${zone.gateway}`, 'refused (4xx) as one response, nothing behind it answered', verdict));
    }
  }
  return out;
}
