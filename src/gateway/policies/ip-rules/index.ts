// ip_rules unit: admit or refuse a request by its client address. Deny wins;
// an absent allow list admits everyone not denied, an empty one admits nobody.
// The address is the one the pipeline computed (socket peer, or the right-most
// untrusted X-Forwarded-For hop behind a trusted proxy). An address that does
// not parse is refused: a rule that cannot be checked never lets through.
import { isIP } from 'node:net';
import type { Policy } from '../policy.ts';
import { IpRulesConfig } from './schema.ts';
import { compileCidrs, normaliseAddress } from '../../../shared/address.ts';
import { Forbidden } from '../../../shared/errors.ts';

export type Config = IpRulesConfig;

export interface State {
  denied: (address: string) => boolean;
  /** undefined: no allow list (everyone not denied is admitted). */
  allowed: ((address: string) => boolean) | undefined;
}

export default {
  id: 'ip_rules',
  phase: 'ip',
  schema: IpRulesConfig,
  provision(config: Config): State {
    return {
      denied: compileCidrs(config.deny),
      allowed: config.allow === undefined ? undefined : compileCidrs(config.allow),
    };
  },
  onRequest(exchange, state) {
    const address = normaliseAddress(exchange.clientAddress);
    if (isIP(address) === 0) return Forbidden('The client address could not be determined.');
    if (state.denied(address) || (state.allowed !== undefined && !state.allowed(address)))
      return Forbidden('Requests from this address are not allowed.');
    return undefined;
  },
} satisfies Policy<Config, State>;
