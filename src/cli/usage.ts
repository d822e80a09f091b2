// How a verb fails: with a GatehouseError of the one registry, printed once by
// main.ts as `gatehouse <verb>: <message>`. The exit status follows DESIGN.md's
// CLI contract: 2 for a usage or configuration error (a flag, an argument or a
// file the verb cannot use), 1 for any other refusal.
import { GatehouseError, type ErrorOptions, type ProblemCode } from '../shared/errors.ts';

/** A GatehouseError raised by a verb: the verb names itself in the message line. */
export class VerbError extends GatehouseError {
  readonly verb: string;
  constructor(verb: string, code: ProblemCode, message: string, options?: ErrorOptions) {
    super(code, message, options);
    this.verb = verb;
  }
}

/** A flag, argument or input the verb cannot use: exit 2. */
export const usage = (verb: string, message: string): VerbError => new VerbError(verb, 'usage', message);

/** What was asked cannot be done (no such key, the service refused): exit 1. */
export const refused = (verb: string, message: string, cause?: unknown): VerbError => new VerbError(verb, 'refused', message, { cause });

/** DESIGN.md: 0 ok, 1 refusal, 2 usage or config error. */
export function exitCodeOf(error: GatehouseError): 1 | 2 {
  return error.code === 'usage' || error.code === 'invalid_config' ? 2 : 1;
}
