// Validate unit (phase contract): the query and JSON body against the route's
// JSON Schemas, compiled once per config. A body is read (within the route's
// body limit) only when a body schema exists; the upstream then gets exactly
// the bytes that were validated.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Ajv2020, type ValidateFunction, type ErrorObject } from 'ajv/dist/2020.js';
import type { Policy } from '../policy.ts';
import { ValidateConfig } from './schema.ts';
import { GatehouseError } from '../../../shared/errors.ts';

export type Config = ValidateConfig;
export interface State {
  query: ValidateFunction | undefined;
  headers: ValidateFunction | undefined;
  body: ValidateFunction | undefined;
  bodyRequired: boolean;
}

const UnsupportedMediaType = () =>
  new GatehouseError('unsupported_media_type', 415, 'Unsupported Media Type', 'This route takes a JSON body (application/json).');
const Unprocessable = (where: string, e: ErrorObject | undefined) => {
  const field = e ? `${where}${e.instancePath}` : where;
  const reason = e?.keyword === 'additionalProperties' ? `unknown field ${JSON.stringify(e.params.additionalProperty)}` : (e?.message ?? 'is invalid');
  const error = new GatehouseError('unprocessable', 422, 'Unprocessable Content', `${field}: ${reason}`);
  return Object.assign(error, { field });
};

function load(schema: string | Record<string, unknown>, dir: string): Record<string, unknown> {
  if (typeof schema !== 'string') return schema;
  return JSON.parse(readFileSync(path.resolve(dir, schema), 'utf8')) as Record<string, unknown>;
}

function queryObject(query: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(query)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

const policy: Policy<Config, State> = {
  id: 'validate',
  phase: 'contract',
  schema: ValidateConfig,
  provision(config, ctx) {
    const ajv = new Ajv2020({ allErrors: false, strict: true, coerceTypes: false });
    const compile = (s: string | Record<string, unknown> | undefined) => {
      if (s === undefined) return undefined;
      try {
        return ajv.compile(load(s, ctx.topology.dir));
      } catch (error) {
        throw new Error(`the JSON Schema does not compile: ${(error as Error).message}`);
      }
    };
    return { query: compile(config.query), headers: compile(config.headers), body: compile(config.body), bodyRequired: config.bodyRequired };
  },
  async onRequest(ex, s) {
    if (s.query && !s.query(queryObject(ex.query))) return Unprocessable('query', s.query.errors?.[0]);
    if (s.headers && !s.headers(ex.headers)) return Unprocessable('headers', s.headers.errors?.[0]);
    if (!s.body) return undefined;
    const raw = await ex.readBody();
    if (raw.length === 0) return s.bodyRequired ? Unprocessable('body', undefined) : undefined;
    const type = String(ex.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) return UnsupportedMediaType();
    let value: unknown;
    try {
      value = JSON.parse(raw.toString('utf8'));
    } catch {
      return new GatehouseError('bad_request', 400, 'Bad Request', 'The body is not valid JSON.');
    }
    if (!s.body(value)) return Unprocessable('body', s.body.errors?.[0]);
    return undefined;
  },
};

export default policy;
