// Path normalisation: ambiguous request targets must be refused, never
// forwarded; a protected route spelled differently must still need a credential.
import { result, pass, fail, error, skip, type ProbeContext } from '../context.ts';
import { send, protectedRoute, statusList, THROTTLED } from '../requests.ts';
import { h2Request } from '../h2.ts';
import type { CheckResult, RouteInfo } from '../types.ts';

/** Targets no gateway should forward: encoded separators and dots, NUL, double encoding, overlong UTF-8, other hosts. */
export function ambiguousTargets(path: string): string[] {
  const base = path.replace(/\/$/, '');
  return [
    `${base}/%2e%2e/admin`,
    `${base}/.%2e/admin`,
    `${base}%2Fadmin`,
    `${base}/%5C..%5Cadmin`,
    `${base}/..;/admin`,
    `${base}/a%00b`,
    `${base}/%252e%252e/admin`,
    `${base}/%C0%AF`,
    `${base}/%0d%0aX-Injected:%201`,
    `//evil.example${base}`,
    `http://evil.example${base}`,
    `${base}#fragment`,
  ];
}

/** The same protected route, spelled so that a naive matcher misses it. */
export function bypassTargets(path: string): string[] {
  const segs = path.split('/');
  const first = segs[1] ?? '';
  const variants = [
    path,
    path.replace(/^\//, '//'),
    path.replace(/^\/([^/]+)/, '/$1/.'),
    `/probe/..${path}`,
    path.replace(/^\/([^/]+)\//, '/$1//'),
  ];
  if (first) {
    variants.push(path.replace(`/${first}`, `/${first.toUpperCase()}`));
    variants.push(path.replace(`/${first}`, `/%${first.charCodeAt(0).toString(16)}${first.slice(1)}`));
    variants.push(path.replace(`/${first}`, `/${first};x=1`));
  }
  return [...new Set(variants)];
}

export async function pathChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway) continue;
    const where = `${zone.name} gateway ${zone.gateway}`;
    const route: RouteInfo | undefined = protectedRoute(zone) ?? zone.routes[0];
    const basePath = route?.path ?? '/';
    const seen: string[] = [];
    const forwarded: string[] = [];
    let answered = 0;
    for (const t of ambiguousTargets(basePath)) {
      const { res, x } = await send(ctx, zone.gateway, 'GET', t, [], undefined, { freshSource: true });
      seen.push(res ? String(res.status) : (x.error ?? x.cut ?? 'closed'));
      if (res) answered++;
      if (res && res.status < 400) forwarded.push(`${t} → ${res.status}`);
    }
    out.push(
      result(
        'path.ambiguous',
        'ambiguous request targets (encoded dots and slashes, NUL, double encoding, overlong UTF-8, absolute and //host forms)',
        route?.protected ? 'high' : 'medium',
        where,
        'every one refused (400) or not routed (404), none forwarded',
        forwarded.length > 0 ? fail(`${forwarded.length} of ${seen.length} forwarded: ${forwarded.join('; ')}`) : answered > 0 ? pass(`refused: ${statusList(seen)}`) : error(`no answer: ${statusList(seen)}`),
      ),
    );
    const prot = protectedRoute(zone);
    if (!prot) {
      out.push(result('path.auth-bypass', 'a protected route spelled differently, without a credential', 'high', where, 'refused', skip('no protected route known (give --config)')));
      continue;
    }
    const seen2: string[] = [];
    const open: string[] = [];
    for (const t of bypassTargets(prot.path)) {
      const { res, x } = await send(ctx, zone.gateway, 'GET', t, [], undefined, { freshSource: true });
      seen2.push(res ? String(res.status) : (x.error ?? x.cut ?? 'closed'));
      if (res && res.status < 400) open.push(`${t} → ${res.status}`);
    }
    const throttled = seen2.filter((s) => s === String(THROTTLED)).length;
    out.push(
      result(
        'path.auth-bypass',
        `protected route ${prot.name} spelled differently (case, //, /./, /x/.., %-encoded letter, ;param), without a credential`,
        'high',
        where,
        'every spelling needs a credential (401) or is refused (400/404)',
        open.length > 0
          ? fail(`answered without a credential: ${open.join('; ')}`)
          : throttled > 0
            ? error(`throttled (429) before the route was judged: ${statusList(seen2)}`)
            : seen2.some((s) => /^\d+$/.test(s))
              ? pass(statusList(seen2))
              : error(statusList(seen2)),
      ),
    );
  }
  return out;
}

export async function h2PathChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway || !zone.gateway.startsWith('https:')) continue;
    const where = `${zone.name} gateway ${zone.gateway} (h2)`;
    const prot = protectedRoute(zone);
    const base = prot?.path ?? zone.routes[0]?.path ?? '/';
    const targets = [...ambiguousTargets(base).filter((t) => t.startsWith('/') && !t.includes('#')), ...(prot ? bypassTargets(prot.path) : [])];
    const seen: string[] = [];
    const open: string[] = [];
    let noH2 = false;
    for (const t of targets) {
      const a = await h2Request(ctx, zone.gateway, { ':method': 'GET', ':path': t });
      if ('error' in a) {
        seen.push(a.error);
        if (a.noH2) {
          noH2 = true;
          break;
        }
        continue;
      }
      seen.push(String(a.status));
      if (a.status < 400) open.push(`${t} → ${a.status}`);
    }
    out.push(
      result(
        'h2.path-normalisation',
        'ambiguous :path values and protected-route spellings over HTTP/2, without a credential',
        'high',
        where,
        'every one refused (400/404) or needing a credential (401)',
        noH2
          ? skip(`no HTTP/2 (${seen[seen.length - 1]})`)
          : open.length > 0
            ? fail(`answered: ${open.join('; ')}`)
            : seen.includes(String(THROTTLED))
              ? error(`throttled (429) before the request was judged: ${statusList(seen)}`)
              : seen.some((s) => /^\d+$/.test(s))
                ? pass(statusList(seen))
                : error(statusList(seen)),
      ),
    );
  }
  return out;
}
