// Where the policy units' settings live in gatehouse.yaml, each with the unit's
// own schema (the one its `provision` parses again). The topology schema takes
// its zone and route fields from here and knows no unit: a unit with settings
// of its own is a folder, one line in registry.ts and one here. Only schemas
// are imported (no unit code): reading a topology loads no policy engine.
import { z } from 'zod';
import { RouteAuth, ZoneAuthentication } from './authentication/schema.ts';
import { IpRulesConfig } from './ip-rules/schema.ts';
import { RateLimitConfig, AuthFailureConfig } from './rate-limit/schema.ts';
import { ValidateConfig } from './validate/schema.ts';
import { CedarConfig } from './cedar/schema.ts';

/** The units a zone sets as defaults for its routes, and a route may replace (`false`: off on that route). */
const INHERITED = {
  ip_rules: { schema: IpRulesConfig, zone: 'allow/deny by client address; absent: no address rules' },
  rate_limit: { schema: RateLimitConfig, zone: 'GCRA rate limit; absent: no limit' },
} as const;

const ZonePolicies = z
  .object({
    ip_rules: INHERITED.ip_rules.schema.optional().describe(INHERITED.ip_rules.zone),
    rate_limit: INHERITED.rate_limit.schema.optional().describe(INHERITED.rate_limit.zone),
  })
  .strict();

const override = <T extends z.ZodType>(schema: T) =>
  z.union([z.literal(false), schema]).optional().describe("replaces the zone's; false: none on this route");

const RoutePolicies = z
  .object({
    ip_rules: override(INHERITED.ip_rules.schema),
    rate_limit: override(INHERITED.rate_limit.schema),
  })
  .strict();

/** The zone's fields that belong to policy units (spread into the Zone object of the topology). */
export const ZONE_UNIT_FIELDS = {
  policies: ZonePolicies.default({}).describe('policy defaults of every route of this zone'),
  authFailures: AuthFailureConfig.default(AuthFailureConfig.parse({})).describe(
    'sources whose credentials keep failing are slowed, then blocked for a while',
  ),
  authentication: ZoneAuthentication.default(ZoneAuthentication.parse({})).describe(
    'how the gateway checks credentials (issuers, API keys, introspection, identity propagation)',
  ),
};

/** The route's fields that belong to policy units (spread into the Route object of the topology). */
export const ROUTE_UNIT_FIELDS = {
  policies: RoutePolicies.default({}).describe("per-route policy units; absent ones inherit the zone's"),
  cedar: CedarConfig.optional().describe('fine-grained Cedar policies over principal, action, route and context; absent: none'),
  validate: ValidateConfig.optional().describe('request contract (JSON Schema for query and body); absent: not checked'),
  auth: RouteAuth.describe(
    "who may call: 'anonymous', 'jwt', 'api_key', or { accept, scopes, roles, mfa, … }; required: nothing is anonymous by default",
  ),
};
