// The quarantine phase: decisions of the control plane (gatehouse quarantine),
// carried by the gateway's bundle. It runs after authentication so that a
// quarantined client or subject is known; a quarantined source network is
// refused whatever it presents, on every route, anonymous ones included.
// Each decision carries its end: one that ended is ignored even before the
// next bundle drops it.
import { GatehouseError } from '../../shared/errors.ts';
import { compileCidrs } from '../../shared/address.ts';
import type { Quarantine } from '../../policy/index.ts';
import type { GatewayExchange } from '../exchange.ts';
import type { Outcome } from './outcome.ts';

export interface CompiledQuarantines {
  sources: { match(address: string): boolean; until: number }[];
  /** OAuth client id → until (ms). */
  clients: ReadonlyMap<string, number>;
  /** Token subject or API-key consumer → until (ms). */
  subjects: ReadonlyMap<string, number>;
}

/** Undefined when nothing is quarantined (the phase costs one check). */
export function compileQuarantines(list: readonly Quarantine[]): CompiledQuarantines | undefined {
  const sources: CompiledQuarantines['sources'] = [];
  const clients = new Map<string, number>();
  const subjects = new Map<string, number>();
  for (const q of list) {
    const until = Date.parse(q.until);
    if (q.scope === 'source') sources.push({ match: compileCidrs([q.value]), until });
    else if (q.scope === 'client') clients.set(q.value, until);
    else if (q.scope === 'subject') subjects.set(q.value, until);
  }
  return sources.length + clients.size + subjects.size === 0 ? undefined : { sources, clients, subjects };
}

const refused = () => new GatehouseError('quarantined', 'This caller is quarantined; retry later.');

export function quarantine(ex: GatewayExchange): Outcome {
  const q = ex.state.quarantine;
  if (q === undefined) return undefined;
  const now = ex.now;
  for (const s of q.sources) if (s.until > now && s.match(ex.clientAddress)) return refused();
  const id = ex.identity;
  if (id === undefined) return undefined;
  if (id.clientId !== undefined && (q.clients.get(id.clientId) ?? 0) > now) return refused();
  if ((q.subjects.get(id.sub) ?? 0) > now) return refused();
  if (id.consumer !== undefined && (q.subjects.get(id.consumer) ?? 0) > now) return refused();
  return undefined;
}
