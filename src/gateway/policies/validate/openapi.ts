// Reads an OpenAPI 3.1 document (YAML or JSON) and turns one operation into
// the JSON Schemas the validate unit compiles: one object schema per
// parameter location (path, query, header, cookie) and the request body by
// media type. Schemas stay JSON Schema 2020-12 (OpenAPI 3.1's dialect); refs to
// `#/components/schemas/…` point into one bundled schema registered once.
// Anything the gateway would have to guess (external refs, parameter styles it
// does not parse, OpenAPI 3.0 documents) is a config error naming the
// document, its line and the field.
import { readFileSync, statSync } from 'node:fs';
import { ConfigError, formatPath } from '../../../topology/config-error.ts';
import { parseYaml } from '../../../topology/load.ts';
import type { NumberRule } from './parameter-numbers.ts';

/** Documents larger than this are refused before parsing. */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

type Json = Record<string, unknown>;

export interface OpenApiDocument {
  file: string;
  data: Json;
  /** Id under which the bundled component schemas are registered. */
  bundleId: string;
  /** `{ $id, $defs }` with every component schema, refs rewritten. */
  bundle: Json;
  /** Throws a ConfigError at this JSON path of the document. */
  fail(path: (string | number)[], message: string): never;
}

export interface ParameterSet {
  /** Object schema over the parameters of one location (names lower-cased for headers). */
  schema: Json;
  /** Parameters whose array values are comma-separated in one string (simple style, form without explode). */
  commaSeparated: Set<string>;
  /** Parameters typed integer or number (or arrays of them): their strings must be JSON numbers. */
  numbers: Map<string, NumberRule>;
}

export interface Operation {
  /** Where the operation is in the document, for messages. */
  where: string;
  /** Its path in the document (for positions). */
  at: (string | number)[];
  path: ParameterSet;
  query: ParameterSet;
  header: ParameterSet;
  cookie: ParameterSet;
  /** Absent: the operation takes no body. */
  body?: {
    required: boolean;
    /** Media types as written (lower case) → schema, or undefined for a type whose bytes are not checked. */
    media: Map<string, Json | undefined>;
  };
}

export function readOpenApi(file: string, shownAs: string): OpenApiDocument {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_DOCUMENT_BYTES) throw new Error(`the document is ${st.size} bytes; the limit is ${MAX_DOCUMENT_BYTES}`);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError([{ file: shownAs, line: 1, column: 1, path: '', message: code ? `cannot read the OpenAPI document (${code})` : (error as Error).message }]);
  }
  const { data, locate } = parseYaml(text, shownAs);
  const fail = (p: (string | number)[], message: string): never => {
    throw new ConfigError([{ file: shownAs, ...locate(p), path: formatPath(p), message }]);
  };
  if (!isObject(data)) return fail([], 'an OpenAPI document is a mapping');
  const version = data.openapi;
  if (typeof version !== 'string' || !/^3\.1\.\d+/.test(version))
    fail(['openapi'], `only OpenAPI 3.1 documents are supported (found ${JSON.stringify(version ?? null)})`);
  const dialect = data.jsonSchemaDialect;
  if (dialect !== undefined && dialect !== 'https://spec.openapis.org/oas/3.1/dialect/base' && dialect !== 'https://json-schema.org/draft/2020-12/schema')
    fail(['jsonSchemaDialect'], 'only the OpenAPI 3.1 base dialect (JSON Schema 2020-12) is supported');
  if (!isObject(data.paths)) fail(['paths'], 'the document has no paths');

  const bundleId = `urn:gatehouse:openapi:${encodeURIComponent(shownAs)}`;
  const components = isObject(data.components) && isObject(data.components.schemas) ? data.components.schemas : {};
  const defs: Json = {};
  for (const [name, schema] of Object.entries(components))
    defs[name] = rewriteRefs(schema, ['components', 'schemas', name], fail, bundleId);
  return { file: shownAs, data, bundleId, bundle: { $id: bundleId, $defs: defs }, fail };
}

/** The operation at `docPath` for `method`; undefined when the document does not describe it. */
export function operationOf(d: OpenApiDocument, docPath: string, method: string): Operation | undefined {
  const paths = d.data.paths as Json;
  const item = paths[docPath];
  if (!isObject(item)) return undefined;
  const m = method.toLowerCase();
  if (!(METHODS as readonly string[]).includes(m) || !isObject(item[m])) return undefined;
  const op = item[m] as Json;
  const at = ['paths', docPath, m];
  const where = `${m.toUpperCase()} ${docPath}`;

  // path-item parameters, overridden by the operation's (same name and location)
  const params = new Map<string, { p: Json; at: (string | number)[] }>();
  const collect = (list: unknown, base: (string | number)[]) => {
    if (list === undefined) return;
    if (!Array.isArray(list)) d.fail(base, 'parameters must be a list');
    list.forEach((raw, i) => {
      const { value, at: refAt } = deref(d, raw, [...base, i]);
      if (!isObject(value) || typeof value.name !== 'string' || typeof value.in !== 'string')
        d.fail(refAt, 'a parameter needs a name and an `in`');
      const p = value as Json;
      params.set(`${p.in}:${p.in === 'header' ? String(p.name).toLowerCase() : p.name}`, { p, at: refAt });
    });
  };
  collect(item.parameters, ['paths', docPath, 'parameters']);
  collect(op.parameters, [...at, 'parameters']);

  const sets = {
    path: emptySet(),
    query: emptySet(),
    header: emptySet(),
    cookie: emptySet(),
  };
  for (const { p, at: pAt } of params.values()) {
    const location = p.in as string;
    if (!(location in sets)) d.fail([...pAt, 'in'], `unknown parameter location ${JSON.stringify(location)}`);
    const name = location === 'header' ? (p.name as string).toLowerCase() : (p.name as string);
    // RFC: Accept, Content-Type and Authorization header parameters are ignored by OpenAPI
    if (location === 'header' && ['accept', 'content-type', 'authorization'].includes(name)) continue;
    if (p.content !== undefined) d.fail([...pAt, 'content'], 'parameters described by `content` are not supported; use `schema`');
    if (!isObject(p.schema)) d.fail(pAt, 'a parameter needs a `schema`');
    const style = (p.style as string | undefined) ?? (location === 'query' || location === 'cookie' ? 'form' : 'simple');
    const expected = location === 'query' || location === 'cookie' ? 'form' : 'simple';
    if (style !== expected) d.fail([...pAt, 'style'], `style ${JSON.stringify(style)} is not supported for ${location} parameters (only ${expected})`);
    const explode = (p.explode as boolean | undefined) ?? style === 'form';
    const set = sets[location as keyof typeof sets];
    const schema = rewriteRefs(p.schema, [...pAt, 'schema'], d.fail, d.bundleId) as Json;
    (set.schema.properties as Json)[name] = schema;
    if (p.required === true || location === 'path') (set.schema.required as string[]).push(name);
    // arrays in one value: simple style (path, header) and form without explode are comma-separated
    const isArray = schema.type === 'array' || (Array.isArray(schema.type) && schema.type.includes('array'));
    if (isArray && !(location === 'query' && explode)) set.commaSeparated.add(name);
    const numbers = numberRuleOf(d, p.schema, [...pAt, 'schema']);
    if (numbers) set.numbers.set(name, numbers);
  }

  let body: Operation['body'];
  if (op.requestBody !== undefined) {
    const { value, at: bAt } = deref(d, op.requestBody, [...at, 'requestBody']);
    if (!isObject(value) || !isObject(value.content)) return d.fail(bAt, 'a requestBody needs `content`');
    const media = new Map<string, Json | undefined>();
    for (const [type, entry] of Object.entries(value.content)) {
      const t = type.toLowerCase().split(';')[0].trim();
      const schema = isObject(entry) && entry.schema !== undefined ? entry.schema : undefined;
      media.set(t, isJson(t) && schema !== undefined ? (rewriteRefs(schema, [...bAt, 'content', type, 'schema'], d.fail, d.bundleId) as Json) : undefined);
    }
    if (media.size === 0) d.fail([...bAt, 'content'], 'a requestBody needs at least one media type');
    body = { required: value.required === true, media };
  }
  return { where, at, ...sets, body };
}

/** The `{name}` parameters of an OpenAPI path template. */
export function templateNames(docPath: string): string[] {
  return [...docPath.matchAll(/\{([^}/]+)\}/g)].map((m) => m[1]);
}

export function isJson(type: string): boolean {
  return type === 'application/json' || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type);
}

function emptySet(): ParameterSet {
  return { schema: { type: 'object', properties: {}, required: [] }, commaSeparated: new Set(), numbers: new Map() };
}

/**
 * How a parameter's strings become numbers, when its schema (through
 * `#/components/schemas` refs) is typed integer or number, or an array of
 * them. Undefined when a string is a valid value too (type includes string),
 * or when the type is not written where this looks (the schema itself, or the
 * items of an array): such values are left to the schema as they are.
 */
function numberRuleOf(d: OpenApiDocument, schema: unknown, at: (string | number)[]): NumberRule | undefined {
  const s = schemaOf(d, schema, at);
  const types = typesOf(s);
  if (!types.includes('array')) return scalarRule(types, false);
  // an array (or null): its items
  if (types.some((t) => t !== 'array' && t !== 'null')) return undefined;
  return scalarRule(typesOf(schemaOf(d, s?.items, at)), true);
}

function scalarRule(types: string[], array: boolean): NumberRule | undefined {
  if (types.includes('string') || !(types.includes('integer') || types.includes('number'))) return undefined;
  return { integer: !types.includes('number'), types, array };
}

function typesOf(schema: Json | undefined): string[] {
  const t = schema?.type;
  return typeof t === 'string' ? [t] : Array.isArray(t) ? t.filter((x): x is string => typeof x === 'string') : [];
}

/** A schema with its `$ref`s to `#/components/schemas/…` followed (at most 16). */
function schemaOf(d: OpenApiDocument, schema: unknown, at: (string | number)[]): Json | undefined {
  let current = schema;
  for (let hops = 0; isObject(current) && typeof current.$ref === 'string'; hops++) {
    if (hops === 16) d.fail(at, 'too many $ref hops (a cycle?)');
    const ref = current.$ref;
    if (!ref.startsWith('#/components/schemas/')) return undefined;
    const name = decodeURIComponent(ref.slice('#/components/schemas/'.length)).replace(/~1/g, '/').replace(/~0/g, '~');
    const schemas = isObject(d.data.components) && isObject(d.data.components.schemas) ? d.data.components.schemas : {};
    current = Object.hasOwn(schemas, name) ? schemas[name] : undefined;
  }
  return isObject(current) ? current : undefined;
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Follows `$ref`s to parameters and request bodies within the document (at most 16 hops). */
function deref(d: OpenApiDocument, value: unknown, at: (string | number)[]): { value: unknown; at: (string | number)[] } {
  let current = value;
  let where = at;
  for (let hops = 0; isObject(current) && typeof current.$ref === 'string'; hops++) {
    if (hops === 16) d.fail(where, 'too many $ref hops (a cycle?)');
    const ref = current.$ref;
    if (!ref.startsWith('#/')) d.fail([...where, '$ref'], `external $ref ${JSON.stringify(ref)} is not supported: bundle the document`);
    const parts = ref.slice(2).split('/').map((s) => decodeURIComponent(s).replace(/~1/g, '/').replace(/~0/g, '~'));
    let target: unknown = d.data;
    for (const part of parts) target = isObject(target) ? target[part] : undefined;
    if (target === undefined) d.fail([...where, '$ref'], `$ref ${JSON.stringify(ref)} points at nothing`);
    current = target;
    where = parts;
  }
  return { value: current, at: where };
}

/**
 * A copy of a schema whose `#/components/schemas/…` refs point into the
 * bundle; any other ref (external, or elsewhere in the document) is refused.
 */
function rewriteRefs(schema: unknown, at: (string | number)[], fail: OpenApiDocument['fail'], bundleId: string): unknown {
  if (Array.isArray(schema)) return schema.map((s, i) => rewriteRefs(s, [...at, i], fail, bundleId));
  if (!isObject(schema)) return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === '$ref') {
      if (typeof v !== 'string') fail([...at, k], '$ref must be a string');
      const ref = v as string;
      if (!ref.startsWith('#/components/schemas/'))
        fail([...at, k], `$ref ${JSON.stringify(ref)} is not supported: schemas may refer to #/components/schemas/… only`);
      out.$ref = `${bundleId}#/$defs/${ref.slice('#/components/schemas/'.length)}`;
    } else if (k === 'example' || k === 'externalDocs' || k === 'xml' || k === 'discriminator' || k.startsWith('x-')) {
      // OpenAPI annotations and extensions: they never decide validity
      continue;
    } else if (k === 'enum' || k === 'const' || k === 'default' || k === 'examples') {
      // values, not schemas
      out[k] = v;
    } else if (k === 'properties' || k === '$defs' || k === 'patternProperties' || k === 'dependentSchemas') {
      // keys of these are names, not keywords
      const names: Json = {};
      for (const [name, sub] of Object.entries(isObject(v) ? v : {})) names[name] = rewriteRefs(sub, [...at, k, name], fail, bundleId);
      out[k] = isObject(v) ? names : v;
    } else out[k] = rewriteRefs(v, [...at, k], fail, bundleId);
  }
  return out;
}
