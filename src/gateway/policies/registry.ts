// Every policy unit the gateway knows, in the order units of one phase run.
// A new unit is a folder under policies/ plus one line here: where its part of
// the topology lives (`config`, undefined: the unit is off on that route) — and,
// when it has settings of its own, one line in fields.ts, from which the
// topology schema takes them. The unit's own schema validates that part again at
// provision; the chain names no unit.
import type { RouteConfig, ZoneConfig } from '../../topology/schema.ts';
import type { Policy } from './policy.ts';
import ipRules from './ip-rules/index.ts';
import rateLimit from './rate-limit/index.ts';
import authentication, { routeAuthOf } from './authentication/index.ts';
import authorization from './authorization/index.ts';
import cedar from './cedar/index.ts';
import validate from './validate/index.ts';

export interface Registered {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- each unit has its own config and state types
  unit: Policy<any, any>;
  /** The unit's config for a route, as data from the topology; undefined: off. */
  config(route: RouteConfig, zone: ZoneConfig): unknown;
  /** Where that config is written, relative to the route (for error positions). */
  field: (string | number)[];
}

/** A route's own setting replaces the zone's; `false` turns it off. */
const inherit = <T>(own: T | false | undefined, zone: T | undefined): T | undefined => (own === undefined ? zone : own || undefined);

export const UNITS: readonly Registered[] = [
  { unit: ipRules, config: (r, z) => inherit(r.policies.ip_rules, z.policies.ip_rules), field: ['policies', 'ip_rules'] },
  { unit: rateLimit, config: (r, z) => inherit(r.policies.rate_limit, z.policies.rate_limit), field: ['policies', 'rate_limit'] },
  {
    unit: authentication,
    config: (r, z) => {
      if (r.auth === 'anonymous') return undefined;
      const route = routeAuthOf(r.auth);
      return { zone: z.authentication, route, failures: z.authFailures, shadow: route.shadow };
    },
    field: ['auth'],
  },
  { unit: authorization, config: (r) => (r.auth === 'anonymous' ? undefined : routeAuthOf(r.auth)), field: ['auth'] },
  { unit: cedar, config: (r) => r.cedar, field: ['cedar'] },
  {
    unit: validate,
    config: (r) => r.validate && { contract: r.validate, route: { path: r.path, methods: r.methods === '*' ? '*' : [...r.methods] } },
    field: ['validate'],
  },
];
