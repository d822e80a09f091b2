// The suite's global setup and teardown (npm test: --test-global-setup): a
// folder for the logs the example runs make, and at the end one scan of all
// of them (suite-logs.ts) that fails the run if any line holds a secret in clear.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SUITE_LOGS_ENV, scanLogs } from './suite-logs.ts';

let dir: string | undefined;

export async function globalSetup(): Promise<void> {
  dir = mkdtempSync(path.join(tmpdir(), 'gh-suite-logs-'));
  process.env[SUITE_LOGS_ENV] = dir;
}

export async function globalTeardown(): Promise<void> {
  if (dir === undefined) return;
  const { files, lines, findings } = scanLogs(dir);
  rmSync(dir, { recursive: true, force: true });
  dir = undefined;
  process.stdout.write(`# suite log scan: ${lines} lines in ${files} log files of the example runs, ${findings.length} with a secret in clear\n`);
  for (const f of findings) process.stdout.write(`# in clear: ${f}\n`);
  if (findings.length > 0) throw new Error(`logs of the example hold what masking hides:\n${findings.join('\n')}`);
}
