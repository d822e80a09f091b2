// The route table, compiled once per config. A lookup is a few map reads:
// host (exact, then wildcard, then any), then the path: exact, then path
// templates (`/api/orders/{id}`: a segment tree where a literal segment beats
// a parameter), then the longest prefix that ends on a segment boundary. No
// per-request regex scan; tables without templates never walk the tree.
import { isIP } from 'node:net';
import { ALL_METHODS, type RouteConfig } from '../topology/schema.ts';
import { routeNameOf, templateParams, TEMPLATE_SEGMENT } from '../topology/resolve.ts';

export interface CompiledRoute {
  name: string;
  index: number;
  config: RouteConfig;
  methods: ReadonlySet<string>;
  allow: readonly string[];
  /** Length of the matched prefix, for rewriting. */
  prefix: string;
  /** Path parameters of a template route: the segment index (0 = first segment) of each `{name}`. */
  params?: readonly { name: string; segment: number }[];
  /** Metric children of this route, filled by the pipeline on first use. */
  stats?: unknown;
}

/** Routes that share hosts, match and path; they differ by method (never overlapping). */
export interface RouteGroup {
  byMethod: Map<string, CompiledRoute>;
  /** Every method of the group, for 405's Allow. */
  allow: string[];
}

/** A node of the template tree: literal children first, then one parameter child. */
interface TemplateNode {
  literal: Map<string, TemplateNode>;
  param?: TemplateNode;
  group?: RouteGroup;
}

interface PathTable {
  exact: Map<string, RouteGroup>;
  prefix: Map<string, RouteGroup>;
  templates?: TemplateNode;
}

/** The parameters of a template route for a matched canonical path, percent-decoded. */
export function pathParams(route: CompiledRoute, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!route.params) return out;
  const segments = path.slice(1).split('/');
  for (const p of route.params) {
    const raw = segments[p.segment] ?? '';
    try {
      out[p.name] = decodeURIComponent(raw);
    } catch {
      out[p.name] = raw;
    }
  }
  return out;
}

function findTemplate(node: TemplateNode, segments: readonly string[], i: number): RouteGroup | undefined {
  if (i === segments.length) return node.group;
  const seg = segments[i];
  const literal = node.literal.get(seg);
  if (literal) {
    const found = findTemplate(literal, segments, i + 1);
    if (found) return found;
  }
  // a parameter takes one whole, non-empty segment
  if (node.param && seg !== '') return findTemplate(node.param, segments, i + 1);
  return undefined;
}

export interface Router {
  /** The routes for this canonical path, or undefined (404). Host must be normalised. */
  match(host: string, path: string): RouteGroup | undefined;
  routes: readonly CompiledRoute[];
}

/**
 * Host (or :authority) by its grammar (RFC 9110 §7.2, RFC 3986 §3.2.2): an
 * IPv6 literal in brackets, an IPv4 address or a DNS name, then an optional
 * port 0-65535. Returns the lower-case host without port or trailing dot, or
 * undefined when the value is anything else (IPvFuture, user info, a path …).
 */
export function normaliseHost(raw: string): string | undefined {
  // nearly every request of a connection, and of a gateway, names the same Host: answer it from the last one
  if (raw === lastHost.raw) return lastHost.host;
  const host = parseHost(raw);
  lastHost.raw = raw;
  lastHost.host = host;
  return host;
}
const lastHost: { raw: string | undefined; host: string | undefined } = { raw: undefined, host: undefined };

function parseHost(raw: string): string | undefined {
  let host = raw.toLowerCase();
  let port: string | undefined;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end === -1) return undefined;
    const rest = host.slice(end + 1);
    if (rest !== '') {
      if (rest.charCodeAt(0) !== 0x3a /* : */) return undefined;
      port = rest.slice(1);
    }
    host = host.slice(0, end + 1);
    // an IPv6 literal, without a zone id (RFC 9110 §4.2.3 has none in Host)
    if (host.includes('%') || isIP(host.slice(1, -1)) !== 6) return undefined;
  } else {
    const colon = host.indexOf(':');
    if (colon !== -1) {
      port = host.slice(colon + 1);
      host = host.slice(0, colon);
    }
    if (host.endsWith('.')) host = host.slice(0, -1);
    if (host === '' || host.length > 253 || !DNS_NAME.test(host)) return undefined;
    // all-numeric labels are an IPv4 address, and must be a valid one
    if (/^[0-9.]+$/.test(host) && isIP(host) !== 4) return undefined;
  }
  if (port !== undefined && (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535)) return undefined;
  return host;
}

/** Dot-separated labels of letters, digits and inner hyphens, each at most 63 long. */
const DNS_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function compileRoutes(routes: readonly RouteConfig[]): Router {
  const exactHosts = new Map<string, PathTable>();
  const wildcardHosts = new Map<string, PathTable>();
  const anyHost: PathTable = { exact: new Map(), prefix: new Map() };
  const compiled: CompiledRoute[] = [];

  const tableFor = (map: Map<string, PathTable>, key: string) => {
    let t = map.get(key);
    if (!t) map.set(key, (t = { exact: new Map(), prefix: new Map() }));
    return t;
  };

  routes.forEach((config, index) => {
    const methods = config.methods === '*' ? ALL_METHODS : config.methods;
    const set = new Set<string>(methods);
    // HEAD follows GET, as every HTTP server does
    if (set.has('GET')) set.add('HEAD');
    const route: CompiledRoute = {
      name: config.name ?? routeNameOf(config.path),
      index,
      config,
      methods: set,
      allow: [...set],
      prefix: config.path,
    };
    const params = templateParams(config.path);
    if (params) route.params = params;
    compiled.push(route);
    const tables: PathTable[] = [];
    if (!config.hosts) tables.push(anyHost);
    else
      for (const h of config.hosts) {
        const host = h.toLowerCase().replace(/\.$/, '');
        if (host.startsWith('*.')) tables.push(tableFor(wildcardHosts, host.slice(1)));
        else tables.push(tableFor(exactHosts, host));
      }
    for (const t of tables) {
      let group: RouteGroup;
      if (params) {
        // the loader allows templates on exact routes only
        let node: TemplateNode = (t.templates ??= { literal: new Map() });
        for (const seg of config.path.slice(1).split('/')) {
          if (TEMPLATE_SEGMENT.test(seg)) node = node.param ??= { literal: new Map() };
          else {
            let next = node.literal.get(seg);
            if (!next) node.literal.set(seg, (next = { literal: new Map() }));
            node = next;
          }
        }
        group = node.group ??= { byMethod: new Map(), allow: [] };
      } else {
        const map = config.match === 'exact' ? t.exact : t.prefix;
        const found = map.get(config.path);
        if (found) group = found;
        else map.set(config.path, (group = { byMethod: new Map(), allow: [] }));
      }
      for (const m of set) {
        // the topology loader refuses overlapping methods; first wins if a caller skipped it
        if (!group.byMethod.has(m)) {
          group.byMethod.set(m, route);
          group.allow.push(m);
        }
      }
    }
  });

  const lookup = (t: PathTable, path: string): RouteGroup | undefined => {
    const exact = t.exact.get(path);
    if (exact) return exact;
    if (t.templates) {
      const templated = findTemplate(t.templates, path.slice(1).split('/'), 0);
      if (templated) return templated;
    }
    if (t.prefix.size === 0) return undefined;
    const whole = t.prefix.get(path);
    if (whole) return whole;
    for (let i = path.lastIndexOf('/'); i >= 0; i = i === 0 ? -1 : path.lastIndexOf('/', i - 1)) {
      const withSlash = t.prefix.get(path.slice(0, i + 1));
      if (withSlash) return withSlash;
      if (i > 0) {
        const bare = t.prefix.get(path.slice(0, i));
        if (bare) return bare;
      }
    }
    return undefined;
  };

  return {
    routes: compiled,
    match(host, path) {
      if (exactHosts.size > 0) {
        const t = exactHosts.get(host);
        if (t) {
          const r = lookup(t, path);
          if (r) return r;
        }
      }
      if (wildcardHosts.size > 0) {
        const dot = host.indexOf('.');
        if (dot > 0) {
          const t = wildcardHosts.get(host.slice(dot));
          if (t) {
            const r = lookup(t, path);
            if (r) return r;
          }
        }
      }
      return lookup(anyHost, path);
    },
  };
}

/** The upstream path for a matched route (prefix rewrite applied). */
export function upstreamPath(route: CompiledRoute, path: string): string {
  const rewrite = route.config.rewrite;
  if (!rewrite) return path;
  const rest = path.slice(route.prefix.length);
  if (rewrite.prefix.endsWith('/') && rest.startsWith('/')) return rewrite.prefix + rest.slice(1);
  if (!rewrite.prefix.endsWith('/') && rest !== '' && !rest.startsWith('/')) return rewrite.prefix + '/' + rest;
  return rewrite.prefix + rest;
}
