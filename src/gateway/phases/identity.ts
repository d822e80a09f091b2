// The identity phase: every check passed; the units that know the caller
// (authentication) strip its credentials and add the gateway's identity token.
import type { GatewayExchange } from '../exchange.ts';
import type { ChainUnit } from '../policies/chain.ts';
import type { Outcome } from './outcome.ts';

export function identity(ex: GatewayExchange): Outcome | Promise<Outcome> {
  const units = ex.chain?.identity;
  return units === undefined ? undefined : runFrom(ex, units, 0);
}

function runFrom(ex: GatewayExchange, units: readonly ChainUnit[], from: number): Outcome | Promise<Outcome> {
  for (let i = from; i < units.length; i++) {
    const u = units[i];
    const pending = u.onIdentity!(ex, u.state);
    if (pending instanceof Promise) return pending.then(() => runFrom(ex, units, i + 1));
  }
  return undefined;
}
