// Reads gatehouse.yaml: YAML → document with positions → zod → cross-references.
// Every problem found is reported at once, each with file:line:column and path.
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isPair, isScalar, isNode, type Document, type Node } from 'yaml';
import { Topology } from './schema.ts';
import { ConfigError, formatPath, type ConfigIssue } from './config-error.ts';
import { keysAt, nearest, editDistance } from './suggest.ts';
import { resolveReferences, type ReferenceProblem } from './resolve.ts';

/** Topology files larger than this are refused before parsing. */
export const MAX_TOPOLOGY_BYTES = 1024 * 1024;

export interface LoadedTopology {
  /** Absolute path of the file it came from. */
  file: string;
  /** Directory that relative paths in the file are resolved against. */
  dir: string;
  topology: Topology;
  /** Line and column of a field of the file (its nearest existing parent when absent). */
  locate?: (path: readonly PropertyKey[]) => { line: number; column: number };
}

export function loadTopology(file: string): LoadedTopology {
  const abs = path.resolve(file);
  let text: string;
  try {
    const st = statSync(abs);
    if (!st.isFile()) throw new ConfigError([{ file, line: 1, column: 1, path: '', message: 'not a regular file' }]);
    if (st.size > MAX_TOPOLOGY_BYTES)
      throw new ConfigError([
        { file, line: 1, column: 1, path: '', message: `file is ${st.size} bytes; the limit is ${MAX_TOPOLOGY_BYTES}` },
      ]);
    text = readFileSync(abs, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    // a missing file is most often the default ./gatehouse.yaml: say how to name another
    const hint = code === 'ENOENT' ? ': give --config FILE, set GATEHOUSE_CONFIG, or write one with gatehouse init' : '';
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `cannot read the file (${code})${hint}` }]);
  }
  const { topology, locate } = parseWithPositions(text, file);
  return { file: abs, dir: path.dirname(abs), topology, locate };
}

export function parseTopology(text: string, file = 'gatehouse.yaml'): Topology {
  return parseWithPositions(text, file).topology;
}

function parseWithPositions(text: string, file: string): Pick<LoadedTopology, 'topology'> & Required<Pick<LoadedTopology, 'locate'>> {
  if (Buffer.byteLength(text) > MAX_TOPOLOGY_BYTES)
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `the limit is ${MAX_TOPOLOGY_BYTES} bytes` }]);
  const { doc, data, at } = parseYaml(text, file);
  if (data === null || typeof data !== 'object' || Array.isArray(data))
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: 'the file must be a mapping with version, trustDomain and zones' }]);

  const parsed = Topology.safeParse(data);
  if (!parsed.success) {
    const issues: ConfigIssue[] = [];
    for (const issue of flattenUnions(parsed.error.issues as unknown as ZodIssueLike[], data)) {
      if (issue.code === 'unrecognized_keys') {
        const valid = keysAt(Topology, issue.path);
        for (const key of issue.keys) {
          const hint = nearest(key, valid);
          issues.push({
            file,
            ...at(keyOffset(doc, issue.path, key)),
            path: formatPath([...issue.path, key]),
            message: `unknown key ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`,
          });
        }
      } else {
        issues.push({ file, ...at(valueOffset(doc, issue.path)), path: formatPath(issue.path), message: describe(issue, data) });
      }
    }
    throw new ConfigError(sortIssues(issues));
  }
  const problems = withSuggestions(resolveReferences(parsed.data), parsed.data);
  if (problems.length > 0)
    throw new ConfigError(
      sortIssues(problems.map((p) => ({ file, ...at(valueOffset(doc, p.path)), path: formatPath(p.path), message: p.message }))),
    );
  return { topology: parsed.data, locate: (p) => at(valueOffset(doc, p)) };
}

/** A parsed YAML (or JSON) file, positions kept for messages. */
export interface ParsedYaml {
  doc: Document;
  data: unknown;
  /** Line and column of an offset in the text. */
  at(offset: number): { line: number; column: number };
  /** Line and column of the value at `path` (its nearest existing parent when absent). */
  locate(path: readonly PropertyKey[]): { line: number; column: number };
}

/**
 * YAML 1.2 core schema, the hostile cases refused with their position: no
 * custom tags, no merge keys, duplicate keys are errors, alias expansion bounded.
 */
export function parseYaml(text: string, file: string): ParsedYaml {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, merge: false });
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const syntax = [...doc.errors];
  if (syntax.length > 0) throw new ConfigError([structureIssue(text, file, syntax, at)]);
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 50 });
  } catch (error) {
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `YAML: ${firstLine(String((error as Error).message))}` }]);
  }
  return { doc, data, at, locate: (p) => at(valueOffset(doc, p)) };
}

interface ZodIssueLike {
  code: string;
  message: string;
  path: PropertyKey[];
  input?: unknown;
  keys?: string[];
  errors?: ZodIssueLike[][];
  /** invalid_value: the values allowed */
  values?: unknown[];
  /** invalid_type: the type wanted */
  expected?: string;
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = data;
  for (const part of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[part] : undefined;
  return v;
}

/** `"prefx" is not one of exact, prefix (did you mean "prefix"?)` */
function notOneOf(value: unknown, allowed: readonly unknown[], more?: string): string {
  const names = [...new Set(allowed.map(String))];
  const hint = typeof value === 'string' ? nearest(value, names) : undefined;
  return (
    `${JSON.stringify(value)} is not one of ${names.join(', ')}${more ? `, ${more}` : ''}` +
    (hint ? ` (did you mean ${JSON.stringify(hint)}?)` : '')
  );
}

/**
 * A union reports "Invalid input" with one issue list per branch. Report the
 * branch that got furthest instead (the deepest path), so `methods: [GET, FOO]`
 * says which element is wrong rather than that the union failed.
 */
function flattenUnions(issues: ZodIssueLike[], data: unknown): (ZodIssueLike & { keys: string[] })[] {
  const out: (ZodIssueLike & { keys: string[] })[] = [];
  for (const issue of issues) {
    if (issue.code === 'invalid_union' && isMissing(data, issue.path)) {
      // a missing field whose type is a union: say it is required, not which branch failed
      out.push({ ...issue, code: 'invalid_type', keys: [] });
      continue;
    }
    if (issue.code === 'invalid_union' && issue.errors && issue.errors.length > 0) {
      const depth = (branch: ZodIssueLike[]) => Math.max(...branch.map((i) => i.path.length));
      const best = [...issue.errors].filter((b) => b.length > 0).sort((a, b) => depth(b) - depth(a))[0];
      if (best && depth(best) > 0) {
        out.push(...flattenUnions(best.map((i) => ({ ...i, path: [...issue.path, ...i.path] })), data));
        continue;
      }
    }
    out.push({ ...issue, keys: issue.keys ?? [] });
  }
  return out;
}

/** True when the file has no value at `path` (zod does not report the input it saw). */
function isMissing(data: unknown, path: readonly PropertyKey[]): boolean {
  let v: unknown = data;
  for (const part of path) {
    if (v === null || typeof v !== 'object') return true;
    v = (v as Record<PropertyKey, unknown>)[part];
  }
  return v === undefined;
}

function describe(issue: ZodIssueLike, data: unknown): string {
  if (issue.code === 'invalid_value' && issue.values && issue.values.length > 1) return notOneOf(valueAt(data, issue.path), issue.values);
  if (issue.code === 'invalid_union' && issue.errors) {
    // every branch failed at the value itself: list what each would take
    const values = issue.errors.flat().flatMap((i) => (i.path.length === 0 && i.code === 'invalid_value' ? (i.values ?? []) : []));
    const object = issue.errors.flat().some((i) => i.path.length === 0 && i.code === 'invalid_type' && i.expected === 'object');
    if (values.length > 0) return notOneOf(valueAt(data, issue.path), values, object ? 'or a mapping of its options' : undefined);
  }
  if (issue.code === 'invalid_type' && isMissing(data, issue.path)) {
    const last = issue.path[issue.path.length - 1];
    return last === 'auth' && issue.path.includes('routes')
      ? "is required: every route says who may call it ('anonymous' must be written)"
      : 'is required';
  }
  return issue.message.replace(/^Invalid input: /, '');
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return issues.sort((a, b) => a.line - b.line || a.column - b.column);
}

function nodeAt(doc: Document, p: readonly PropertyKey[]): { node: Node | undefined; depth: number } {
  // Walk as deep as the document goes; a missing field points at its parent.
  let node: unknown = doc.contents;
  let depth = 0;
  for (const part of p) {
    const child = isNode(node) ? (node as unknown as { get?: (k: unknown, keep: boolean) => unknown }).get?.(part, true) : undefined;
    if (!isNode(child)) break;
    node = child;
    depth++;
  }
  return { node: isNode(node) ? (node as Node) : undefined, depth };
}

function valueOffset(doc: Document, p: readonly PropertyKey[]): number {
  const { node, depth } = nodeAt(doc, p);
  if (depth < p.length && isMap(node)) {
    // the field is missing: point at the mapping's first key (the object it belongs in)
    const first = node.items[0];
    if (isPair(first) && isNode(first.key)) return (first.key as Node).range?.[0] ?? 0;
  }
  return node?.range?.[0] ?? 0;
}

function keyOffset(doc: Document, p: readonly PropertyKey[], key: string): number {
  const { node } = nodeAt(doc, p);
  if (isMap(node))
    for (const pair of node.items)
      if (isScalar(pair.key) && String(pair.key.value) === key) return pair.key.range?.[0] ?? 0;
  return node?.range?.[0] ?? 0;
}

/**
 * Cross-reference problems as a person can act on them: an unknown service or
 * zone gets the nearest declared name, and what only follows from a misspelled
 * zone (its services "in zone x" routed by another zone) is left out: fixing
 * the name fixes those.
 */
function withSuggestions(problems: ReferenceProblem[], t: Topology): ReferenceProblem[] {
  const zones = Object.keys(t.zones);
  const services = Object.keys(t.services);
  const unknownZones = new Set(problems.flatMap((p) => /^unknown zone "([^"]+)"/.exec(p.message)?.[1] ?? []));
  return problems
    .filter((p) => ![...unknownZones].some((z) => p.message.includes(`is in zone "${z}"`)))
    .map((p) => {
      const m = /^unknown (service|zone|caller|egress target|service or zone) "([^"]+)"/.exec(p.message);
      if (!m || /did you mean/.test(p.message)) return p;
      const hint = nearest(m[2], m[1] === 'zone' ? zones : m[1] === 'service' || m[1] === 'caller' ? services : [...services, ...zones]);
      // a name that shares nothing with the one written is not a typo of it
      return hint && editDistance(m[2], hint) < m[2].length ? { ...p, message: `${p.message} (did you mean ${JSON.stringify(hint)}?)` } : p;
    });
}

const indentOf = (line: string) => /^ */.exec(line)![0].length;
const blank = (line: string) => /^\s*(#.*)?$/.test(line);

/**
 * A YAML syntax error as one message: the parser reports a slip of indentation
 * as a cascade of errors, out of line order. Report the earliest, say how the
 * line is indented against the lines that hold it, and count the rest.
 */
function structureIssue(text: string, file: string, errors: { pos: [number, number]; message: string }[], at: (offset: number) => { line: number; column: number }): ConfigIssue {
  const first = [...errors].sort((a, b) => a.pos[0] - b.pos[0])[0];
  const where = at(first.pos[0]);
  const lines = text.split('\n');
  const line = lines[where.line - 1] ?? '';
  const rest = errors.length > 1 ? `; ${errors.length - 1} more error${errors.length === 2 ? '' : 's'} follow from it` : '';
  const parser = `(parser: ${firstLine(first.message)}${rest})`;
  if (/^ *\t/.test(line)) return { file, line: where.line, column: 1, path: '', message: `YAML structure: line ${where.line} is indented with a tab; YAML indents with spaces only ${parser}` };
  // the indentations of the lines that enclose this one, nearest first
  const levels = new Set<number>();
  let floor = Infinity;
  for (let i = where.line - 2; i >= 0 && floor > 0; i--) {
    if (blank(lines[i])) continue;
    const n = indentOf(lines[i]);
    if (n <= floor) {
      levels.add(n);
      // a list item's keys sit after its "- "
      const item = /^( *- +)\S/.exec(lines[i]);
      if (item) levels.add(item[1].length);
      floor = n;
    }
  }
  const mine = indentOf(line);
  if (!blank(line) && levels.size > 0 && !levels.has(mine)) {
    const below = Math.max(-1, ...[...levels].filter((n) => n < mine));
    const above = Math.min(Infinity, ...[...levels].filter((n) => n > mine));
    const options = [below >= 0 ? below : undefined, above < Infinity ? above : undefined].filter((n) => n !== undefined).join(' or ');
    return {
      file,
      line: where.line,
      column: mine + 1,
      path: '',
      message: `YAML structure: line ${where.line} is indented ${mine} space${mine === 1 ? '' : 's'}, the lines it belongs under use ${options}: check its indentation ${parser}`,
    };
  }
  return { file, ...where, path: '', message: `YAML structure: check the indentation and the "key: value" form of line ${where.line} and the line before it ${parser}` };
}
