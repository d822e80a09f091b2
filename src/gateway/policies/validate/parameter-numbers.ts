// Numbers in path, query, header and cookie parameters. A parameter is a
// string; OpenAPI reads it as the type of its schema. Coercing it with
// Number() (as ajv's coerceTypes does) takes 1e2, 0x10, +5, " 5", 5.0, 05 and
// Infinity as numbers, forms a service's own parser may read differently or
// refuse, while the gateway passes the query on exactly as sent. Here a string
// becomes a number only when it is written as JSON writes numbers; anything
// else is refused before the schema runs.
import type { GatehouseError } from '../../../shared/errors.ts';
import { fieldOf, unprocessable } from './refusals.ts';

/** JSON Schema's integer and JSON's number (RFC 8259 §6), nothing around them. */
const INTEGER = /^-?(?:0|[1-9][0-9]*)$/;
const NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

export interface NumberRule {
  /** integer only (the schema's types do not include number). */
  integer: boolean;
  /** The schema's types, for the message (as ajv writes them: integer,null). */
  types: readonly string[];
  /** The parameter is an array of such numbers (repeated, or comma-separated). */
  array: boolean;
}

/**
 * Turns each listed parameter's strings into numbers, in place (`params` is
 * the fresh object the parameter check validates); the first string that is
 * no JSON number is refused, named as ajv would name it. A string other types
 * of the schema take ('' for null, true/false for boolean) is left for the
 * schema to read.
 */
export function coerceNumbers(params: Record<string, unknown>, rules: ReadonlyMap<string, NumberRule>, where: string): GatehouseError | undefined {
  for (const [name, rule] of rules) {
    const v = params[name];
    if (typeof v === 'string') {
      const n = toNumber(v, rule);
      if (n === undefined) return refuse(where, rule.array ? [name, 0] : [name], rule);
      params[name] = n;
    } else if (rule.array && Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        if (typeof v[i] !== 'string') continue;
        const n = toNumber(v[i] as string, rule);
        if (n === undefined) return refuse(where, [name, i], rule);
        v[i] = n;
      }
    }
  }
  return undefined;
}

function toNumber(s: string, rule: NumberRule): number | string | undefined {
  if ((rule.integer ? INTEGER : NUMBER).test(s)) {
    // -0 is checked as 0; digits beyond a double become Infinity, which no schema takes as a number
    const n = Number(s);
    return n === 0 ? 0 : n;
  }
  if ((s === '' && rule.types.includes('null')) || ((s === 'true' || s === 'false') && rule.types.includes('boolean'))) return s;
  return undefined;
}

const refuse = (where: string, at: (string | number)[], rule: NumberRule) => unprocessable(fieldOf(where, at), `must be ${rule.types.join(',')}`);
