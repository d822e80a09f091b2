// The generated documentation is current: what scripts/gen-docs.ts would
// write from the zod schemas today is what docs/reference/ holds. And
// `gatehouse schema` prints a JSON Schema that accepts the example.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { generatedDocs } from '../src/cli/topology-docs.ts';

const root = path.join(import.meta.dirname, '..');

test('docs/reference is what scripts/gen-docs.ts makes from the schemas (run it after changing a schema)', () => {
  for (const [file, text] of Object.entries(generatedDocs())) {
    const on = path.join(root, file);
    assert.ok(existsSync(on), `${file} is missing: node scripts/gen-docs.ts`);
    assert.ok(readFileSync(on, 'utf8') === text, `${file} is stale: node scripts/gen-docs.ts`);
  }
});

test('gatehouse schema prints the JSON Schema; it accepts every example topology and refuses a typo', () => {
  const r = spawnSync(process.execPath, [path.join(root, 'src/cli/main.ts'), 'schema'], { encoding: 'utf8', cwd: root, timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  const schema = JSON.parse(r.stdout);
  assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(schema);
  for (const dir of readdirSync(path.join(root, 'examples'))) {
    const file = path.join(root, 'examples', dir, 'gatehouse.yaml');
    if (!existsSync(file)) continue;
    const doc = parse(readFileSync(file, 'utf8'));
    assert.ok(validate(doc), `${file}: ${JSON.stringify(validate.errors?.slice(0, 3))}`);
    const typo = structuredClone(doc) as { zones: Record<string, Record<string, unknown>> };
    typo.zones[Object.keys(typo.zones)[0]].routs = [];
    assert.equal(validate(typo), false, 'an unknown key is refused');
  }
});

test('every page under docs/ is linked from the README or from docs/README.md, and every relative link resolves', () => {
  const pages: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(path.join(root, d), { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.md')) pages.push(p);
    }
  };
  walk('docs');
  const index = readFileSync(path.join(root, 'docs/README.md'), 'utf8') + readFileSync(path.join(root, 'README.md'), 'utf8');
  for (const p of pages) if (p !== path.join('docs', 'README.md')) assert.ok(index.includes(path.relative('docs', p)) || index.includes(p), `${p} is not linked from docs/README.md`);
  for (const p of [...pages, 'README.md']) {
    // links outside code: fenced blocks and `spans` hold patterns, not links
    const text = readFileSync(path.join(root, p), 'utf8').replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
    for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(m[1])) continue;
      assert.ok(existsSync(path.join(root, path.dirname(p), m[1])), `${p}: link to ${m[1]} does not resolve`);
    }
  }
});
