// Validate unit (phase contract): the request against the route's contract,
// compiled once per config. The contract is either JSON Schemas written in the
// topology (path parameters, query, headers, JSON body) or, per method, the
// operation of an OpenAPI 3.1 document (parameters in path, query, header and
// cookie, coerced to their schema types as OpenAPI reads them, and the body by
// media type). A body is read (within the route's body limit) only when it has
// to be checked; the upstream then gets exactly the bytes that were validated,
// so they must mean one thing to any parser: a JSON body is strict UTF-8 with
// no duplicate keys (strict-json.ts), a number parameter is written as JSON
// writes numbers (parameter-numbers.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { Ajv2020, type ValidateFunction, type ErrorObject } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { FieldError, type Policy, type Exchange } from '../policy.ts';
import { ValidateConfig } from './schema.ts';
import { GatehouseError, UnsupportedMediaType } from '../../../shared/errors.ts';
import { templateParams } from '../../../topology/resolve.ts';
import { readOpenApi, operationOf, templateNames, isJson, type OpenApiDocument, type Operation, type ParameterSet } from './openapi.ts';
import { parseStrictJson } from './strict-json.ts';
import { coerceNumbers, type NumberRule } from './parameter-numbers.ts';
import { fieldOf, clip, unprocessable } from './refusals.ts';

export const Config = z.object({
  contract: ValidateConfig,
  route: z
    .object({ path: z.string(), methods: z.union([z.literal('*'), z.array(z.string())]) })
    .describe('the route the contract belongs to (its path and methods)'),
});
export type Config = z.infer<typeof Config>;

type Where = 'path' | 'query' | 'headers' | 'cookies';

interface ParamCheck {
  where: Where;
  validate: ValidateFunction;
  /** Names whose single value is a comma-separated list. */
  comma: ReadonlySet<string>;
  /** Only these names are read into the checked object (headers, cookies); undefined: all. */
  names?: readonly string[];
  /** Parameters read as numbers (OpenAPI): their strings must be JSON numbers; absent: none. */
  numbers?: ReadonlyMap<string, NumberRule>;
}

interface Contract {
  params: ParamCheck[];
  /**
   * 'unchecked': the body is not read. 'none': the operation takes no body.
   * Otherwise the media types it takes, each with its schema (undefined: bytes not checked).
   */
  body: 'unchecked' | 'none' | { required: boolean; media: Map<string, ValidateFunction | undefined>; anyJson?: ValidateFunction };
}

export interface State {
  /** By request method; HEAD falls back to GET. */
  byMethod: Map<string, Contract>;
}

// ajv-formats is CommonJS with a default export
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ?? addFormatsModule) as unknown as (
  ajv: Ajv2020,
) => Ajv2020;

/** 422 for the first error ajv found (undefined: a required body is absent). */
const Unprocessable = (where: string, e: ErrorObject | undefined) => {
  // ajv's instancePath is a JSON Pointer: its segments unescaped, fieldOf escapes them again after clipping
  const segments = e ? e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~')) : [];
  const reason =
    e === undefined
      ? 'is required'
      : e.keyword === 'additionalProperties'
        ? `unknown field ${JSON.stringify(clip(String(e.params.additionalProperty)))}`
        : (e.message ?? 'is invalid');
  return unprocessable(fieldOf(where, segments), reason);
};

function newAjv(coerce: boolean): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: false, strict: true, coerceTypes: coerce ? 'array' : false });
  addFormats(ajv);
  return ajv;
}

function loadSchema(schema: string | Record<string, unknown>, dir: string): Record<string, unknown> {
  if (typeof schema !== 'string') return schema;
  return JSON.parse(readFileSync(path.resolve(dir, schema), 'utf8')) as Record<string, unknown>;
}

/** The query as an object: values strings, repeated names arrays, listed names split on commas. */
function queryObject(query: string, comma?: ReadonlySet<string>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(query)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  if (comma) for (const k of comma) if (typeof out[k] === 'string') out[k] = (out[k] as string).split(',');
  return out;
}

function cookieObject(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    if (name !== '' && !(name in out)) out[name] = part.slice(eq + 1).trim();
  }
  return out;
}

/**
 * The object a parameter check validates. OpenAPI checks coerce (write into
 * it), so they always get a fresh object holding only their names; the
 * topology's schemas never coerce and see the request's own headers.
 */
function paramsOf(ex: Exchange, check: ParamCheck): Record<string, unknown> {
  if (check.where === 'query') return queryObject(ex.query, check.comma);
  let source: Record<string, unknown>;
  if (check.where === 'path') source = ex.pathParams();
  else if (check.where === 'cookies') source = cookieObject(ex.headers.cookie);
  else source = ex.headers as Record<string, unknown>;
  if (!check.names) return source;
  const out: Record<string, unknown> = {};
  for (const name of check.names) {
    const v = source[name];
    if (v === undefined) continue;
    out[name] = check.comma.has(name) && typeof v === 'string' ? v.split(',').map((s) => s.trim()) : v;
  }
  return out;
}

function mediaTypeOf(ex: Exchange): string {
  return String(ex.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();
}

async function checkBody(ex: Exchange, body: Contract['body']): Promise<GatehouseError | undefined> {
  if (body === 'unchecked') return undefined;
  const raw = await ex.readBody();
  if (body === 'none') return raw.length === 0 ? undefined : UnsupportedMediaType('This operation takes no request body.');
  if (raw.length === 0) return body.required ? Unprocessable('body', undefined) : undefined;
  const type = mediaTypeOf(ex);
  const range = `${type.split('/')[0]}/*`;
  const key = body.media.has(type) ? type : body.media.has(range) ? range : '*/*';
  let validate = body.media.get(key);
  if (!body.media.has(key)) {
    if (body.anyJson && !isJson(type)) return UnsupportedMediaType('This route takes a JSON body (application/json).');
    if (!body.anyJson) return UnsupportedMediaType(`This operation takes ${[...body.media.keys()].join(', ')}.`);
    validate = body.anyJson;
  }
  if (!validate) return undefined;
  const parsed = parseStrictJson(raw, typeof ex.headers['content-type'] === 'string' ? ex.headers['content-type'] : undefined);
  if (parsed instanceof GatehouseError) return parsed;
  return validate(parsed.value) ? undefined : Unprocessable('body', validate.errors?.[0]);
}

/** The contract written in the topology: the same for every method. */
function schemaContract(config: Config, dir: string): Contract {
  const c = config.contract;
  const ajv = newAjv(false);
  const compile = (s: string | Record<string, unknown>, key: string) => {
    let schema: Record<string, unknown>;
    try {
      schema = loadSchema(s, dir);
    } catch (error) {
      throw new FieldError(['validate', key], `cannot read the schema file ${JSON.stringify(s)} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    try {
      return ajv.compile(schema);
    } catch (error) {
      throw new FieldError(['validate', key], `the JSON Schema does not compile: ${(error as Error).message}`);
    }
  };
  const params: ParamCheck[] = [];
  if (c.path) {
    if (!templateParams(config.route.path)) throw new FieldError(['validate', 'path'], 'needs a route path with {parameters}');
    params.push({ where: 'path', validate: compile(c.path, 'path'), comma: new Set() });
  }
  if (c.query) params.push({ where: 'query', validate: compile(c.query, 'query'), comma: new Set() });
  if (c.headers) params.push({ where: 'headers', validate: compile(c.headers, 'headers'), comma: new Set() });
  let body: Contract['body'] = 'unchecked';
  if (c.body) {
    const validate = compile(c.body, 'body');
    // any application/*+json type takes the schema too
    body = { required: c.bodyRequired, media: new Map([['application/json', validate]]), anyJson: validate };
  }
  return { params, body };
}

/** The contracts of an OpenAPI document's operations for each method of the route. */
function openApiContracts(config: Config, dir: string): Map<string, Contract> {
  const o = config.contract.openapi!;
  if (config.route.methods === '*') throw new FieldError(['methods'], "a route validated by an OpenAPI document lists its methods (not '*')");
  const file = path.resolve(dir, o.document);
  const shown = path.relative(process.cwd(), file);
  const doc = readOpenApi(file, shown.startsWith('..') || path.isAbsolute(shown) ? file : shown);
  const docPath = o.path ?? config.route.path;
  const routeNames = (templateParams(config.route.path) ?? []).map((p) => p.name).sort();
  const docNames = templateNames(docPath).sort();
  if (routeNames.join() !== docNames.join())
    throw new FieldError(
      ['validate', 'openapi'],
      `the route's path parameters {${routeNames.join('}, {')}} differ from the document path ${docPath}'s {${docNames.join('}, {')}}`,
    );
  const params = newAjv(true);
  const bodies = newAjv(false);
  // each component schema is checked against the meta-schema first, so an error names it
  for (const [name, schema] of Object.entries(doc.bundle.$defs as Record<string, unknown>))
    if (!bodies.validateSchema(schema as Record<string, unknown>))
      doc.fail(['components', 'schemas', name], `the schema is invalid: ${bodies.errorsText(bodies.errors, { dataVar: name })}`);
  for (const ajv of [params, bodies]) {
    allowUnknownFormats(ajv, doc.bundle);
    try {
      ajv.addSchema(doc.bundle);
    } catch (error) {
      doc.fail(['components', 'schemas'], `the component schemas do not compile: ${(error as Error).message}`);
    }
  }
  const out = new Map<string, Contract>();
  for (const method of config.route.methods) {
    // HEAD is GET without the body, unless the document describes it
    const op = operationOf(doc, docPath, method) ?? (method === 'HEAD' ? operationOf(doc, docPath, 'GET') : undefined);
    if (!op) throw new FieldError(['validate', 'openapi'], `${o.document} describes no ${method.toLowerCase()} operation at ${docPath}`);
    out.set(method, compileOperation(doc, op, o.unknownQuery === 'allow', params, bodies));
  }
  return out;
}

function compileOperation(doc: OpenApiDocument, op: Operation, unknownQuery: boolean, params: Ajv2020, bodies: Ajv2020): Contract {
  const compile = (ajv: Ajv2020, schema: Record<string, unknown>, what: string) => {
    allowUnknownFormats(ajv, schema);
    try {
      return ajv.compile(schema);
    } catch (error) {
      return doc.fail(op.at, `${op.where}: the ${what} schema does not compile: ${(error as Error).message}`);
    }
  };
  const checks: ParamCheck[] = [];
  const add = (where: Where, set: ParameterSet, extra: boolean) => {
    const names = Object.keys(set.schema.properties as Record<string, unknown>);
    if (names.length === 0 && extra) return;
    const schema = { ...set.schema, additionalProperties: extra };
    checks.push({
      where,
      validate: compile(params, schema, `${where} parameters`),
      comma: set.commaSeparated,
      names: where === 'headers' || where === 'cookies' ? names : undefined,
      numbers: set.numbers.size > 0 ? set.numbers : undefined,
    });
  };
  add('path', op.path, false);
  add('query', op.query, unknownQuery);
  add('headers', op.header, true);
  add('cookies', op.cookie, true);
  let body: Contract['body'] = 'none';
  if (op.body) {
    const media = new Map<string, ValidateFunction | undefined>();
    for (const [type, schema] of op.body.media) media.set(type, schema ? compile(bodies, schema, `${type} body`) : undefined);
    body = { required: op.body.required, media };
  }
  return { params: checks, body };
}

/** OpenAPI formats are open: one ajv does not know is an annotation, not an error. */
function allowUnknownFormats(ajv: Ajv2020, schema: unknown): void {
  if (Array.isArray(schema)) for (const s of schema) allowUnknownFormats(ajv, s);
  else if (schema !== null && typeof schema === 'object')
    for (const [k, v] of Object.entries(schema)) {
      if (k === 'format' && typeof v === 'string' && !ajv.formats[v]) ajv.addFormat(v, true);
      else if (k !== 'enum' && k !== 'const' && k !== 'default' && k !== 'examples') allowUnknownFormats(ajv, v);
    }
}

const policy: Policy<Config, State> = {
  id: 'validate',
  phase: 'contract',
  schema: Config,
  provision(config, ctx) {
    const byMethod = new Map<string, Contract>();
    if (config.contract.openapi) for (const [m, c] of openApiContracts(config, ctx.topology.dir)) byMethod.set(m, c);
    else {
      const contract = schemaContract(config, ctx.topology.dir);
      const methods = config.route.methods === '*' ? ['*'] : config.route.methods;
      for (const m of methods) byMethod.set(m, contract);
    }
    return { byMethod };
  },
  async onRequest(ex, s) {
    const contract = s.byMethod.get(ex.method) ?? (ex.method === 'HEAD' ? s.byMethod.get('GET') : undefined) ?? s.byMethod.get('*');
    // the router only sends the route's methods here; anything else has no contract and is refused
    if (!contract) return new GatehouseError('method_not_allowed', 'This method has no contract on this route.');
    for (const check of contract.params) {
      const value = paramsOf(ex, check);
      if (check.numbers) {
        const refused = coerceNumbers(value, check.numbers, check.where);
        if (refused) return refused;
      }
      if (!check.validate(value)) return Unprocessable(check.where, check.validate.errors?.[0]);
    }
    return checkBody(ex, contract.body);
  },
};

export default policy;
