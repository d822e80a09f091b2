// A route's policy chain: the units it needs, provisioned once per config and
// ordered by phase. Only the pipeline runs it and writes the answer.
import type { RouteConfig, ZoneConfig } from '../../topology/schema.ts';
import { PHASES, type Policy, type ProvisionContext, type Exchange, type Decision } from './policy.ts';
import authentication, { type RouteAuthObject } from './authentication/index.ts';
import authorization from './authorization/index.ts';
import { RouteAuth } from './authentication/schema.ts';
import ipRules from './ip-rules/index.ts';
import rateLimit, { needsIdentity } from './rate-limit/index.ts';
import validate from './validate/index.ts';
import cedar from './cedar/index.ts';

export interface ChainUnit {
  id: string;
  phase: number;
  shadow: boolean;
  state: unknown;
  onRequest: (exchange: Exchange, state: unknown) => Decision | Promise<Decision>;
}

export interface Chain {
  units: readonly ChainUnit[];
  /** The route authenticates: the upstream gets an identity token instead of the client's credentials. */
  authenticated: boolean;
  forwardToken: boolean;
  /** Credential headers never forwarded on this route. */
  strip: ReadonlySet<string>;
}

async function unit<C, S>(policy: Policy<C, S>, config: C, ctx: ProvisionContext, shadow = false): Promise<ChainUnit> {
  const state = await policy.provision(config, ctx);
  return {
    id: policy.id,
    phase: PHASES.indexOf(policy.phase),
    shadow,
    state,
    onRequest: policy.onRequest as (exchange: Exchange, state: unknown) => Decision | Promise<Decision>,
  };
}

/** The route's chain, or undefined when it has nothing to check (anonymous, no policies). */
export async function provisionChain(route: RouteConfig, zone: ZoneConfig, ctx: ProvisionContext): Promise<Chain | undefined> {
  const units: ChainUnit[] = [];
  // a route's own setting replaces the zone's; false turns it off
  const ip = route.policies.ip_rules === undefined ? zone.policies.ip_rules : route.policies.ip_rules || undefined;
  const rate = route.policies.rate_limit === undefined ? zone.policies.rate_limit : route.policies.rate_limit || undefined;
  if (ip) units.push(await unit(ipRules, ip, ctx, ip.shadow));
  if (rate) {
    const u = await unit(rateLimit, rate, ctx, rate.shadow);
    // limits keyed by who is calling run right after authentication
    if (needsIdentity(rate)) u.phase = PHASES.indexOf('authenticate') + 0.5;
    units.push(u);
  }
  let auth: RouteAuthObject | undefined;
  if (route.auth !== 'anonymous')
    auth = typeof route.auth === 'string' ? (RouteAuth.parse({ accept: [route.auth] }) as RouteAuthObject) : route.auth;
  if (auth) {
    units.push(await unit(authentication, { zone: zone.authentication, route: auth, failures: zone.authFailures }, ctx));
    units.push(await unit(authorization, auth, ctx));
  }
  if (route.cedar) units.push(await unit(cedar, route.cedar, ctx, route.cedar.shadow));
  if (route.validate)
    units.push(await unit(validate, { contract: route.validate, route: { path: route.path, methods: route.methods === '*' ? '*' : [...route.methods] } }, ctx, route.validate.shadow));
  if (units.length === 0) return undefined;
  units.sort((a, b) => a.phase - b.phase);
  const strip = new Set<string>();
  if (auth && !auth.forwardToken) strip.add('authorization');
  if (auth?.accept.includes('api_key')) strip.add(zone.authentication.apiKeyHeader);
  return { units, authenticated: auth !== undefined, forwardToken: auth?.forwardToken ?? false, strip };
}

/**
 * Run the units in order; the first denial that is not in shadow mode decides.
 * Synchronous while the units answer synchronously (the common, cached case);
 * a promise only from the first unit that needs to wait.
 */
export function runChain(
  chain: Chain,
  exchange: Exchange,
  onShadow: (unit: string, denial: NonNullable<Decision>) => void,
  from = 0,
): Decision | Promise<Decision> {
  const units = chain.units;
  for (let i = from; i < units.length; i++) {
    const u = units[i];
    const r = u.onRequest(exchange, u.state);
    if (r instanceof Promise)
      return r.then((decision) => {
        if (decision !== undefined) {
          if (!u.shadow) return decision;
          onShadow(u.id, decision);
        }
        return runChain(chain, exchange, onShadow, i + 1);
      });
    if (r === undefined) continue;
    if (u.shadow) {
      onShadow(u.id, r);
      continue;
    }
    return r;
  }
  return undefined;
}
