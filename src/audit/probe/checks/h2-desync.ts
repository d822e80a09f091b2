// Desync over HTTP/2: what a gateway that downgrades to HTTP/1.1 would turn
// into a second request. Each must be refused (a stream or connection error,
// or a 4xx), never answered.
import { randomBytes } from 'node:crypto';
import { rawH2, type RawH2Answer } from '../h2-raw.ts';
import { result, pass, fail, skip, error, type ProbeContext } from '../context.ts';
import { findReflector } from '../requests.ts';
import type { CheckResult } from '../types.ts';

interface Case {
  id: string;
  title: string;
  request(path: string, authority: string, smuggled: string): { headers: Array<[string, string]>; body?: string };
  /** Marker that shows, in a reflecting route's answer, that the injected part reached the upstream. */
  injected?: string;
}

const base = (method: string, path: string, authority: string): Array<[string, string]> => [
  [':method', method],
  [':scheme', 'https'],
  [':path', path],
  [':authority', authority],
];

const CASES: Case[] = [
  {
    id: 'h2.desync.content-length',
    title: 'content-length shorter than the DATA that follows (a request hidden in the rest)',
    request: (p, a, s) => ({ headers: [...base('POST', p, a), ['content-length', '0']], body: s }),
  },
  {
    id: 'h2.desync.transfer-encoding',
    title: 'transfer-encoding: chunked in an HTTP/2 request (a connection-specific header)',
    request: (p, a, s) => ({ headers: [...base('POST', p, a), ['transfer-encoding', 'chunked']], body: `0\r\n\r\n${s}` }),
  },
  {
    id: 'h2.desync.crlf-header',
    title: 'CR LF inside a header value (a header injected on downgrade)',
    request: (p, a) => ({ headers: [...base('GET', p, a), ['x-probe', 'a\r\nX-Probe-Injected: chunked']] }),
    injected: 'x-probe-injected',
  },
  {
    id: 'h2.desync.crlf-path',
    title: 'a :path carrying a space, CR LF and a second request line',
    request: (p, a, s) => ({ headers: base('GET', `${p} HTTP/1.1\r\nHost: ${a}\r\n\r\n${s.split('\r\n')[0]}`, a) }),
  },
];

const describe = (a: RawH2Answer) => ('status' in a ? `answered ${a.status}` : 'refused' in a ? `refused: ${a.refused}` : a.error);

export async function h2DesyncChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway?.startsWith('https:')) continue;
    const where = `${zone.name} gateway ${zone.gateway} (h2)`;
    const authority = new URL(zone.gateway).host;
    const path = zone.routes[0]?.path ?? '/';
    const smuggled = `GET /probe-smuggled-${randomBytes(4).toString('hex')} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
    // where the route reflects what its upstream received, an injected header shows whether it went through
    const reflector = await findReflector(ctx, zone, randomBytes(4).toString('hex'));
    for (const c of CASES) {
      const viaReflector = c.injected !== undefined && reflector !== undefined;
      const { headers, body } = c.request(viaReflector ? reflector.route.path : path, authority, smuggled);
      const auth: Array<[string, string]> = viaReflector ? reflector.auth.map((h) => [h.slice(0, h.indexOf(':')).toLowerCase(), h.slice(h.indexOf(':') + 1).trim()]) : [];
      const a = await rawH2(ctx, zone.gateway, [...headers, ...auth], body);
      const reached = 'status' in a && c.injected !== undefined && a.body.toString('latin1').toLowerCase().includes(c.injected);
      // accepted and passed on is a desync; accepted and dropped is a malformed request answered (RFC 9113 §8.2.1 says refuse)
      // (without a reflecting route, whether it was passed on cannot be seen: medium too)
      const severity = 'status' in a && a.status < 400 && c.injected !== undefined && !reached ? 'medium' : 'high';
      out.push(
        result(
          c.id,
          c.title,
          severity,
          `${where}${viaReflector ? ` route ${reflector.route.name}` : ''}`,
          'refused (RST_STREAM, GOAWAY or 4xx), never answered',
          'status' in a
            ? a.status < 400
              ? fail(
                  reached
                    ? `${describe(a)}: the injected header reached the upstream`
                    : viaReflector
                      ? `${describe(a)}: the malformed request was answered (the injected header was dropped, not passed on)`
                      : c.injected !== undefined
                        ? `${describe(a)}: the malformed request was answered (no reflecting route to see whether the header was passed on)`
                        : `${describe(a)}: the request was accepted`,
                )
              : pass(describe(a))
            : 'refused' in a
              ? pass(describe(a))
              : 'noH2' in a && a.noH2
                ? skip(`no HTTP/2 (${a.error})`)
                : error(a.error),
        ),
      );
    }
  }
  return out;
}
