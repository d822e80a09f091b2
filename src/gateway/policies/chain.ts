// A route's policy chain: the registered units its config turns on, each
// validated by its own schema and provisioned once per config load, grouped by
// the phase they run in. Only the pipeline runs it and writes the answer.
import type { RouteConfig, ZoneConfig } from '../../topology/schema.ts';
import { FieldError, type Phase, type ProvisionContext, type Exchange, type Decision } from './policy.ts';
import { UNITS } from './registry.ts';

export interface ChainUnit {
  id: string;
  /** Logs and counts what it would deny, and lets it pass. */
  shadow: boolean;
  state: unknown;
  onRequest: (exchange: Exchange, state: unknown) => Decision | Promise<Decision>;
  onIdentity?: (exchange: Exchange, state: unknown) => void | Promise<void>;
}

export interface Chain {
  /** Units per policy phase, in registry order; absent phases have none. */
  phases: Partial<Record<Phase, readonly ChainUnit[]>>;
  /** Units taking part in the identity phase. */
  identity: readonly ChainUnit[];
}

/** The route's chain, or undefined when it has nothing to check (anonymous, no policies). */
export async function provisionChain(route: RouteConfig, zone: ZoneConfig, ctx: ProvisionContext): Promise<Chain | undefined> {
  const phases: Partial<Record<Phase, ChainUnit[]>> = {};
  const identity: ChainUnit[] = [];
  let any = false;
  for (const { unit, config: configOf, field } of UNITS) {
    const raw = configOf(route, zone);
    if (raw === undefined) continue;
    const parsed = unit.schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FieldError([...field, ...(issue.path as (string | number)[])], issue.message);
    }
    const config = parsed.data;
    const u: ChainUnit = {
      id: unit.id,
      shadow: (config as { shadow?: unknown }).shadow === true,
      state: await unit.provision(config, ctx),
      onRequest: unit.onRequest,
      onIdentity: unit.onIdentity,
    };
    (phases[unit.phaseFor?.(config) ?? unit.phase] ??= []).push(u);
    if (u.onIdentity) identity.push(u);
    any = true;
  }
  return any ? { phases, identity } : undefined;
}
