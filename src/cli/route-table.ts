// A zone's route table as the gateway matches it (see gateway/router.ts):
// hosts exact, then wildcard, then any; within a host the exact path, then
// path templates (a literal segment before a parameter), then the longest
// prefix; routes that tie keep their order in the file.
import type { Topology } from '../topology/schema.ts';
import { compileRoutes } from '../gateway/index.ts';
import { nearest } from '../topology/suggest.ts';

export interface RouteRow {
  name: string;
  methods: string[];
  /** absent: any host */
  hosts?: string[];
  path: string;
  match: 'exact' | 'template' | 'prefix';
  service: string;
  auth: { accept: string[]; scopes?: string; mfa?: string; roles?: string[] };
  /** Effective policy units (the zone's defaults merged, `false` dropped), plus cedar and validate when set. */
  policies: Record<string, unknown>;
}

const hostRank = (hosts?: string[]) => (!hosts ? 2 : hosts.some((h) => !h.startsWith('*.')) ? 0 : 1);

function scopesText(rule: unknown): string | undefined {
  if (rule === undefined) return undefined;
  if (Array.isArray(rule)) return rule.join(' ');
  const r = rule as { all?: string[]; any?: string[] };
  return [r.all ? `all(${r.all.join(' ')})` : '', r.any ? `any(${r.any.join(' ')})` : ''].filter(Boolean).join(' ');
}

export function routeTable(topology: Topology, zone: string): RouteRow[] | string {
  const z = topology.zones[zone];
  if (!z) {
    const hint = nearest(zone, Object.keys(topology.zones));
    return `no zone ${JSON.stringify(zone)}${hint ? ` (did you mean ${hint}?)` : ''}; zones: ${Object.keys(topology.zones).join(', ')}`;
  }
  const compiled = compileRoutes(z.routes).routes;
  const rows = compiled.map((c) => {
    const r = c.config;
    const auth = r.auth as unknown;
    const a =
      typeof auth === 'string'
        ? { accept: auth === 'anonymous' ? [] : [auth] }
        : {
            accept: (auth as { accept: string[] }).accept,
            ...((auth as { scopes?: unknown }).scopes !== undefined ? { scopes: scopesText((auth as { scopes?: unknown }).scopes) } : {}),
            ...((auth as { mfa?: string }).mfa === 'required' ? { mfa: 'required' } : {}),
            ...((auth as { roles?: string[] }).roles ? { roles: (auth as { roles?: string[] }).roles } : {}),
          };
    const policies: Record<string, unknown> = {};
    for (const unit of ['ip_rules', 'rate_limit'] as const) {
      const own = r.policies[unit];
      const value = own === undefined ? z.policies[unit] : own;
      if (value !== undefined && value !== false) policies[unit] = value;
    }
    if (r.cedar) policies.cedar = r.cedar;
    if (r.validate) policies.validate = r.validate;
    return {
      row: {
        name: c.name,
        methods: [...c.methods],
        ...(r.hosts ? { hosts: r.hosts } : {}),
        path: r.path,
        match: (c.params ? 'template' : r.match) as RouteRow['match'],
        service: r.service,
        auth: a,
        policies,
      },
      index: c.index,
    };
  });
  const pathRank = (r: RouteRow) => (r.match === 'exact' ? 0 : r.match === 'template' ? 1 : 2);
  rows.sort(
    (x, y) =>
      hostRank(x.row.hosts) - hostRank(y.row.hosts) ||
      pathRank(x.row) - pathRank(y.row) ||
      (x.row.match === 'prefix' ? y.row.path.length - x.row.path.length : 0) ||
      x.index - y.index,
  );
  return rows.map((r) => r.row);
}
