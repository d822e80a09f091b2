// npm run bench: every benchmark in bench/, one after another. Each is also
// runnable alone (sh scripts/node.sh bench/<name>.ts). Arguments after `--`
// go to each benchmark.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const benches = ['gateway.ts', 'policies.ts', 'authority.ts', 'pki.ts', 'mesh.ts', 'control.ts', 'monitor.ts', 'vault.ts', 'soak.ts'];
const args = process.argv.slice(2);
const only = args[0] && !args[0].startsWith('-') ? args.shift() : undefined;
let failed = false;
for (const b of benches) {
  const file = path.join(import.meta.dirname, b);
  if (!existsSync(file) || (only && !b.startsWith(only))) continue;
  process.stderr.write(`\n== bench/${b} ==\n`);
  const r = spawnSync(process.execPath, [file, ...args], { stdio: 'inherit' });
  if (r.status !== 0) failed = true;
}
process.exitCode = failed ? 1 : 0;
