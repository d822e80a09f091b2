// Checks that need the whole file: references between sections, duplicates,
// and combinations that zod cannot see field by field.
import type { Topology } from './schema.ts';
import { parseListen, ALL_METHODS } from './schema.ts';

export interface ReferenceProblem {
  path: (string | number)[];
  message: string;
}

export function resolveReferences(t: Topology): ReferenceProblem[] {
  const problems: ReferenceProblem[] = [];
  const zoneNames = Object.keys(t.zones);
  if (zoneNames.length === 0) problems.push({ path: ['zones'], message: 'at least one zone is required' });

  for (const [serviceName, service] of Object.entries(t.services)) {
    if (!t.zones[service.zone])
      problems.push({
        path: ['services', serviceName, 'zone'],
        message: `unknown zone ${JSON.stringify(service.zone)} (zones: ${zoneNames.join(', ') || 'none'})`,
      });
    if (service.upstream === undefined && service.run === undefined)
      problems.push({ path: ['services', serviceName], message: 'needs an upstream URL or a run module' });
  }

  const ports = new Map<string, string>();
  const claimPort = (listen: string | undefined, where: (string | number)[]) => {
    if (listen === undefined) return;
    const parsed = parseListen(listen);
    if (typeof parsed === 'string' || parsed.port === 0) return;
    const key = String(parsed.port);
    const owner = ports.get(key);
    if (owner) problems.push({ path: where, message: `port ${parsed.port} is already used by ${owner}` });
    else ports.set(key, where.join('.'));
  };

  for (const [zoneName, zone] of Object.entries(t.zones)) {
    if (zone.gateway) {
      claimPort(zone.gateway.listen, ['zones', zoneName, 'gateway', 'listen']);
      claimPort(zone.gateway.redirectListen, ['zones', zoneName, 'gateway', 'redirectListen']);
      claimPort(zone.gateway.admin.listen, ['zones', zoneName, 'gateway', 'admin', 'listen']);
      if (zone.gateway.plaintext && zone.gateway.redirectListen)
        problems.push({
          path: ['zones', zoneName, 'gateway', 'redirectListen'],
          message: 'a redirect listener needs an HTTPS gateway (plaintext is true)',
        });
    }
    if (zone.authority) claimPort(zone.authority.listen, ['zones', zoneName, 'authority', 'listen']);
    if (zone.routes.length > 0 && !zone.gateway)
      problems.push({ path: ['zones', zoneName, 'routes'], message: 'routes need a gateway in this zone' });

    const seen = new Map<string, { index: number; methods: Set<string> }[]>();
    const names = new Map<string, number>();
    zone.routes.forEach((route, i) => {
      const at = ['zones', zoneName, 'routes', i];
      const service = t.services[route.service];
      if (!service) problems.push({ path: [...at, 'service'], message: `unknown service ${JSON.stringify(route.service)}` });
      else if (service.zone !== zoneName)
        problems.push({
          path: [...at, 'service'],
          message: `service ${JSON.stringify(route.service)} is in zone ${JSON.stringify(service.zone)}; a gateway routes only to its own zone`,
        });
      if (route.cors?.credentials && route.cors.origins.includes('*'))
        problems.push({ path: [...at, 'cors', 'origins'], message: "a wildcard origin cannot be combined with credentials: list the origins" });
      if (route.rewrite && route.match !== 'prefix')
        problems.push({ path: [...at, 'rewrite'], message: "rewrite needs match: 'prefix'" });
      if (/\/\.{1,2}(\/|$)|\/\/|%/.test(route.path))
        problems.push({ path: [...at, 'path'], message: 'path must be canonical: no dot segments, empty segments or percent-encoding' });
      if (route.path.includes('{') || route.path.includes('}')) {
        const problem = templateProblem(route.path);
        if (problem) problems.push({ path: [...at, 'path'], message: problem });
        else if (route.match !== 'exact') problems.push({ path: [...at, 'match'], message: "a path with {parameters} needs match: 'exact'" });
      }
      const hosts = route.hosts ? [...route.hosts].map((h) => h.toLowerCase().replace(/\.$/, '')).sort().join(',') : '*';
      // /a/{x} and /a/{y} are the same route: parameter names do not count
      const key = `${hosts} ${route.match} ${route.path.replace(/\{[^/]*\}/g, '{}')}`;
      // routes may share hosts, match and path when their methods do not overlap
      const methods = methodSet(route.methods);
      const earlier = seen.get(key) ?? [];
      const clash = earlier.find((e) => [...methods].some((m) => e.methods.has(m)));
      if (clash)
        problems.push({
          path: [...at, 'path'],
          message: `duplicates routes[${clash.index}] (same hosts, match and path, and a method in common)`,
        });
      earlier.push({ index: i, methods });
      seen.set(key, earlier);
      const routeName = route.name ?? routeNameOf(route.path);
      if (names.has(routeName) && route.name !== undefined)
        problems.push({ path: [...at, 'name'], message: `route name ${JSON.stringify(routeName)} is used twice` });
      names.set(routeName, i);
    });
  }
  return problems;
}

/** A path segment that is a parameter: `{name}`, the whole segment. Shared with the router. */
export const TEMPLATE_SEGMENT = /^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$/;

/** What is wrong with a path template, or undefined: each `{name}` is a whole segment, names are unique. */
function templateProblem(p: string): string | undefined {
  const names = new Set<string>();
  for (const seg of p.slice(1).split('/')) {
    if (!seg.includes('{') && !seg.includes('}')) continue;
    const m = TEMPLATE_SEGMENT.exec(seg);
    if (!m) return `path segment ${JSON.stringify(seg)}: a parameter is a whole segment {name} (letters, digits, _; at most 64)`;
    if (names.has(m[1])) return `path parameter {${m[1]}} appears twice`;
    names.add(m[1]);
  }
  return undefined;
}

/** The methods a route answers: '*' is all of them; GET brings HEAD along. */
function methodSet(methods: '*' | readonly string[]): Set<string> {
  const set = new Set<string>(methods === '*' ? ALL_METHODS : methods);
  if (set.has('GET')) set.add('HEAD');
  return set;
}

export function routeNameOf(p: string): string {
  const trimmed = p.replace(/^\/+|\/+$/g, '').replace(/[^a-z0-9]+/gi, '-').toLowerCase();
  return trimmed === '' ? 'root' : trimmed;
}
