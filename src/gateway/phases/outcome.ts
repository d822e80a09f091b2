// What a phase of the request path returns (see ../phases.ts).
import type { GatehouseError } from '../../shared/errors.ts';
import type { GatewayExchange } from '../exchange.ts';

/** The phase answered the request itself (a preflight): nothing further runs but `respond`. */
export const ANSWERED: unique symbol = Symbol('answered');
/** undefined: go on; a GatehouseError: refuse with it; ANSWERED: done. */
export type Outcome = undefined | GatehouseError | typeof ANSWERED;
export type PhaseRun = (ex: GatewayExchange) => Outcome | Promise<Outcome>;
