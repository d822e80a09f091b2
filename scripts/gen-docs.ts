// Writes the generated documentation: docs/reference/configuration.md and
// docs/reference/gatehouse.schema.json, from the zod schemas in src/topology/.
// Run after changing a schema: node scripts/gen-docs.ts
// (test/cli-docs.test.ts fails while these files are stale.)
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { generatedDocs } from '../src/cli/topology-docs.ts';

const root = path.join(import.meta.dirname, '..');
for (const [file, text] of Object.entries(generatedDocs())) {
  mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  writeFileSync(path.join(root, file), text);
  process.stdout.write(`wrote ${file}\n`);
}
