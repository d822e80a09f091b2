// The JSON Schema of gatehouse.yaml and its Markdown reference, both made from
// the zod schemas in src/topology (the descriptions there are the
// documentation: nothing here is written twice). `gatehouse schema` prints the
// first; scripts/gen-docs.ts writes both into docs/reference/, and
// test/cli-docs.test.ts fails when the files there are not what this makes.
import { z } from 'zod';
import { Topology } from '../topology/schema.ts';

type Json = Record<string, unknown>;
interface Node extends Json {
  type?: string | string[];
  description?: string;
  default?: unknown;
  properties?: Record<string, Node>;
  required?: string[];
  additionalProperties?: Node | boolean;
  propertyNames?: Node;
  items?: Node;
  anyOf?: Node[];
  oneOf?: Node[];
  allOf?: Node[];
  enum?: unknown[];
  const?: unknown;
  $ref?: string;
}

/** The JSON Schema (2020-12) of gatehouse.yaml, as an editor reads it: defaulted fields are optional. */
export function topologyJsonSchema(): Json {
  const schema = z.toJSONSchema(Topology, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-2020-12',
    // a z.preprocess in these schemas is a string shorthand for the object after it
    // (validate.openapi: 'file.yaml' is { document: 'file.yaml' }); JSON Schema sees only the object
    override: (ctx) => {
      const def = (ctx.zodSchema as unknown as { _zod: { def: { type: string; in?: { _zod: { def: { type: string } } } } } })._zod.def;
      if (def.type !== 'pipe' || def.in?._zod.def.type !== 'transform') return;
      const { description, ...object } = ctx.jsonSchema;
      for (const k of Object.keys(ctx.jsonSchema)) delete (ctx.jsonSchema as Json)[k];
      Object.assign(ctx.jsonSchema, { ...(description ? { description } : {}), anyOf: [{ type: 'string', minLength: 1 }, object] });
    },
  }) as Json;
  return {
    $schema: schema.$schema,
    $id: 'https://gatehouse.dev/schema/gatehouse.schema.json',
    title: 'gatehouse.yaml',
    description: 'A Gatehouse topology: zones, their gateways, authorities and routes, and the services with who may call them.',
    ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== '$schema')),
  };
}

const code = (v: unknown) => '`' + (typeof v === 'string' ? v : JSON.stringify(v)) + '`';
const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function deref(root: Json, n: Node): Node {
  if (!n.$ref) return n;
  const target = n.$ref === '#' ? root : n.$ref.split('/').slice(1).reduce<unknown>((o, k) => (o as Json)?.[decodeURIComponent(k)], root);
  return { ...(target as Node), ...(n.description ? { description: n.description } : {}), ...('default' in n ? { default: n.default } : {}) };
}

const isObject = (n: Node) => n.type === 'object' && !!n.properties;

/** How one object of a union is told apart: its constant field (`type: redis`), else its position. */
function variantName(n: Node, i: number): string {
  const tag = Object.entries(n.properties ?? {}).find(([, v]) => v.const !== undefined);
  return tag ? `${tag[0]}: ${String(tag[1].const)}` : `variant ${i + 1}`;
}

/** A short type for a table: `string`, `one of a, b`, `list of …`, `map of name → …`. */
function typeOf(root: Json, raw: Node, anchor: (n: Node) => string | undefined): string {
  const n = deref(root, raw);
  if (n.enum) return `one of ${n.enum.map(code).join(', ')}`;
  if (n.const !== undefined) return code(n.const);
  const alts = n.anyOf ?? n.oneOf;
  if (alts) return alts.map((a) => typeOf(root, a, anchor)).join(' or ');
  if (n.type === 'array' && n.items) return `list of ${typeOf(root, n.items, anchor)}`;
  if (n.type === 'object') {
    const link = anchor(n);
    if (isObject(n)) {
      const tag = Object.entries(n.properties ?? {}).find(([, v]) => v.const !== undefined);
      const label = tag ? `object (${tag[0]}: ${String(tag[1].const)})` : 'object';
      return link ? `[${label}](#${link})` : label;
    }
    if (n.additionalProperties && typeof n.additionalProperties === 'object') return `map of name → ${typeOf(root, n.additionalProperties, anchor)}`;
    return 'object';
  }
  return Array.isArray(n.type) ? n.type.join(' or ') : (n.type ?? 'any');
}

function constraints(n: Node): string {
  const c: string[] = [];
  if (typeof n.minimum === 'number' && typeof n.maximum === 'number') c.push(`${n.minimum}–${n.maximum}`);
  else if (typeof n.minimum === 'number') c.push(`≥ ${n.minimum}`);
  else if (typeof n.maximum === 'number') c.push(`≤ ${n.maximum}`);
  if (typeof n.minItems === 'number' && n.minItems > 0) c.push(`at least ${n.minItems} item${n.minItems === 1 ? '' : 's'}`);
  if (typeof n.maxItems === 'number') c.push(`at most ${n.maxItems} items`);
  if (typeof n.maxLength === 'number') c.push(`at most ${n.maxLength} characters`);
  if (typeof n.pattern === 'string') c.push(`matches ${code(n.pattern)}`);
  return c.join('; ');
}

interface Section {
  path: string;
  node: Node;
}

/** The configuration reference in Markdown: one section per object, a row per field, in schema order. */
export function configurationReference(): string {
  const root = topologyJsonSchema();
  const sections: Section[] = [];
  const anchors = new Map<Node, string>();
  const slug = (p: string) => p.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'top-level';
  const visit = (raw: Node, p: string) => {
    const n = deref(root, raw);
    if (isObject(n)) {
      if (anchors.has(n)) return;
      anchors.set(n, slug(p));
      sections.push({ path: p, node: n });
      for (const [k, child] of Object.entries(n.properties!)) visit(child, p ? `${p}.${k}` : k);
      return;
    }
    const alts = n.anyOf ?? n.oneOf ?? [];
    const objects = alts.filter((a) => isObject(deref(root, a))).length;
    alts.forEach((a, i) => visit(a, objects > 1 ? `${p} (${variantName(deref(root, a), i)})` : p));
    if (n.items) visit(n.items, `${p}[]`);
    if (n.additionalProperties && typeof n.additionalProperties === 'object') visit(n.additionalProperties, `${p}.<name>`);
  };
  visit(root as Node, '');
  const out = [
    '# Configuration reference: gatehouse.yaml',
    '',
    '<!-- Generated by `node scripts/gen-docs.ts` from the zod schemas in src/topology/. Do not edit: change the schema descriptions and regenerate (test/cli-docs.test.ts fails when this file is stale). -->',
    '',
    'Every field of a topology file, section by section. **Default** is what an absent field means;',
    'a field without a default and not marked required may be left out, and its description says what',
    'absent means. Unknown keys are errors everywhere, so a typo never silently turns a rule off.',
    'The same schema, as JSON Schema for editors, is [gatehouse.schema.json](gatehouse.schema.json)',
    '(`gatehouse schema` prints it).',
    '',
  ];
  for (const s of sections) {
    out.push(`<a id="${anchors.get(s.node)}"></a>`, '', `## ${s.path ? `\`${s.path}\`` : 'Top level'}`, '');
    if (s.node.description && s.path) out.push(s.node.description, '');
    out.push('| field | type | required | default | description |', '|---|---|---|---|---|');
    for (const [k, raw] of Object.entries(s.node.properties!)) {
      const n = deref(root, raw);
      const required = s.node.required?.includes(k) ? 'yes' : '';
      const def = 'default' in n ? code(n.default) : '';
      const more = constraints(n);
      const desc = [n.description ?? '', more ? `(${more})` : ''].filter(Boolean).join(' ');
      out.push(`| \`${k}\` | ${cell(typeOf(root, n, (x) => anchors.get(x)))} | ${required} | ${cell(def)} | ${cell(desc)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** Every generated documentation file, by its path in the repository. */
export function generatedDocs(): Record<string, string> {
  return {
    'docs/reference/configuration.md': configurationReference(),
    'docs/reference/gatehouse.schema.json': JSON.stringify(topologyJsonSchema(), null, 2) + '\n',
  };
}
