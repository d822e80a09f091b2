// Checks that need the whole file: references between sections, duplicates,
// and combinations that zod cannot see field by field.
import type { Topology } from './schema.ts';
import { parseListen, ALL_METHODS } from './schema.ts';
import { nearest } from './suggest.ts';

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
    // a misspelled caller or egress entry would silently drop an edge (deny by default): refused here
    const services = Object.keys(t.services);
    const unknown = (what: string, name: string, valid: readonly string[]) => {
      const near = nearest(name, valid);
      return `unknown ${what} ${JSON.stringify(name)}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`;
    };
    (service.allow ?? []).forEach((edge, i) => {
      if (edge.caller !== 'gateway' && !t.services[edge.caller])
        problems.push({ path: ['services', serviceName, 'allow', i, 'caller'], message: unknown('caller', edge.caller, ['gateway', ...services]) });
    });
    (service.egress ?? []).forEach((target, i) => {
      const gw = /^gateway:(.*)$/.exec(target);
      if (gw) {
        if (!t.zones[gw[1]]?.gateway)
          problems.push({ path: ['services', serviceName, 'egress', i], message: unknown('gateway zone', gw[1], Object.keys(t.zones).filter((z) => t.zones[z].gateway)) });
      } else if (!target.includes(':') && !t.services[target])
        problems.push({ path: ['services', serviceName, 'egress', i], message: unknown('service', target, services) });
    });
  }

  // a vault grant naming no service of the topology would grant nobody (deny by default): refused here
  for (const [keyName, k] of Object.entries(t.vault?.keys ?? {}))
    for (const op of ['encrypt', 'decrypt', 'rewrap', 'datakey', 'tokenize', 'detokenize'] as const)
      k[op].forEach((name, i) => {
        if (t.services[name]) return;
        const near = nearest(name, Object.keys(t.services));
        problems.push({ path: ['vault', 'keys', keyName, op, i], message: `unknown service ${JSON.stringify(name)}${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}` });
      });

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
    if (zone.ingress && !zone.gateway)
      problems.push({ path: ['zones', zoneName, 'ingress'], message: "ingress locks the zone's gateway; this zone has none" });
    else if (zone.ingress?.clientCertificate && zone.gateway?.plaintext)
      problems.push({ path: ['zones', zoneName, 'ingress', 'clientCertificate'], message: 'client certificates need an HTTPS gateway (plaintext is true)' });
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

/**
 * Route methods the target service's mesh refuses from the gateway: for each
 * route to a service Gatehouse meshes (it has a `run` module, or `allow` edges
 * of its own), every method the gateway passes on (GET brings HEAD, '*' is
 * every method) needs an `allow` edge for caller `gateway` that lists the
 * method and reaches the route's upstream path (after a rewrite), or the
 * service answers 403 to a request the gateway accepted and advertised in
 * Allow. A path is "reached" when some request path matches both the route and
 * the edge: narrowing the paths is the service's choice, a method it never
 * takes on them is a mismatch. Services with only an `upstream` and no edges
 * are not meshed by Gatehouse and are not checked.
 *
 * Not part of resolveReferences (loading never fails on it): `gatehouse
 * validate` reports these as warnings at the route's methods (errors with
 * --strict).
 */
export function routeMethodGaps(t: Topology): ReferenceProblem[] {
  const problems: ReferenceProblem[] = [];
  for (const [zoneName, zone] of Object.entries(t.zones))
    zone.routes.forEach((route, i) => {
      const service = t.services[route.service];
      if (!service || service.zone !== zoneName || (service.run === undefined && service.allow.length === 0)) return;
      const target = routePattern(route.rewrite?.prefix ?? route.path, route.match === 'prefix');
      const edges = service.allow
        .filter((e) => e.caller === 'gateway')
        .map((e) => ({ methods: new Set<string>(e.methods), paths: e.paths.map((p) => edgePattern(p.path, p.match === 'prefix')) }));
      const refused = [...methodSet(route.methods)].filter(
        (m) => !edges.some((e) => e.methods.has(m) && e.paths.some((p) => overlaps(target, p))),
      );
      if (refused.length === 0) return;
      // HEAD the route does not list comes with GET: it cannot be dropped from the route
      const implicitHead = refused.includes('HEAD') && route.methods !== '*' && !route.methods.includes('HEAD');
      const them = refused.length === 1 ? 'it' : 'them';
      const fix =
        implicitHead && refused.length === 1
          ? 'a GET route answers HEAD too: list HEAD in the edge (with a handler that takes HEAD as GET)'
          : `list ${them} in the edge, or drop ${them} from the route${implicitHead ? ' (a GET route answers HEAD too)' : ''}`;
      problems.push({
        path: ['zones', zoneName, 'routes', i, 'methods'],
        message:
          `service ${JSON.stringify(route.service)} refuses ${refused.join(', ')} from the gateway on ${route.rewrite?.prefix ?? route.path}: ` +
          `none of its allow edges for caller gateway lists ${them} for this path; ${fix}`,
      });
    });
  return problems;
}

/** A request path pattern: its segments (null: a `{parameter}`, any non-empty segment) and whether longer paths match. */
interface PathPattern {
  segments: (string | null)[];
  prefix: boolean;
}

/** A route's upstream path: a prefix matches whole segments (a trailing / is not one). */
function routePattern(p: string, prefix: boolean): PathPattern {
  const segments = splitPath(prefix ? p.replace(/\/+$/, '') : p).map((s) => (TEMPLATE_SEGMENT.test(s) ? null : s));
  return { segments, prefix };
}

/** An edge path as the mesh matches it: exact, or a prefix of whole segments (trailing / dropped; / is every path). */
function edgePattern(p: string, prefix: boolean): PathPattern {
  return { segments: splitPath(prefix ? p.replace(/\/+$/, '') : p), prefix };
}

function splitPath(p: string): string[] {
  return p === '' ? [] : p.slice(1).split('/');
}

/** True when some path matches both patterns. */
function overlaps(a: PathPattern, b: PathPattern): boolean {
  const common = Math.min(a.segments.length, b.segments.length);
  for (let k = 0; k < common; k++) {
    const x = a.segments[k];
    const y = b.segments[k];
    if (x === null && y === null) continue;
    if (x === null || y === null) {
      if ((x ?? y) === '') return false;
      continue;
    }
    if (x !== y) return false;
  }
  if (a.segments.length === b.segments.length) return true;
  // the shorter one must be a prefix to match the longer one's paths
  return a.segments.length < b.segments.length ? a.prefix : b.prefix;
}

/** A path segment that is a parameter: `{name}`, the whole segment. Shared with the router. */
export const TEMPLATE_SEGMENT = /^\{([A-Za-z_][A-Za-z0-9_]{0,63})\}$/;

/** The `{name}` segments of a route path, or undefined when it has none. */
export function templateParams(path: string): { name: string; segment: number }[] | undefined {
  if (!path.includes('{')) return undefined;
  const out: { name: string; segment: number }[] = [];
  path
    .slice(1)
    .split('/')
    .forEach((seg, i) => {
      const m = TEMPLATE_SEGMENT.exec(seg);
      if (m) out.push({ name: m[1], segment: i });
    });
  return out;
}

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

/** Services whose egress names `gateway:<zone>`, sorted: the workloads a zone's locked ingress admits. */
export function gatewayCallers(t: Topology, zone: string): string[] {
  return Object.keys(t.services)
    .filter((name) => (t.services[name].egress ?? []).includes(`gateway:${zone}`))
    .sort();
}
