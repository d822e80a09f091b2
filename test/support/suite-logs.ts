// The logs the whole suite made, scanned once at its end: every test that runs
// the example (`gatehouse up`) keeps its components' logs and audit trails here
// before it removes its state dir, and the suite's global teardown
// (global-setup.ts) reads every line with the one masking module — a line that
// masking would still change holds a card number, a JWT, a credential, an
// e-mail, … in clear, and fails the run with file and line.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { maskText } from '../../src/shared/mask.ts';

export const SUITE_LOGS_ENV = 'GATEHOUSE_SUITE_LOGS';

/** Copies the *.log and *.jsonl files under `stateDir` (relative paths kept) for the end-of-suite scan; nothing when no scan runs. */
export function keepLogs(stateDir: string, label: string): void {
  const into = process.env[SUITE_LOGS_ENV];
  if (!into || !existsSync(stateDir)) return;
  const dest = path.join(into, `${label}-${process.pid}-${randomBytes(4).toString('hex')}`);
  for (const file of logFiles(stateDir)) {
    const target = path.join(dest, path.relative(stateDir, file));
    mkdirSync(path.dirname(target), { recursive: true });
    cpSync(file, target);
  }
}

function logFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = path.join(d, name);
      const s = statSync(p, { throwIfNoEntry: false });
      if (s?.isDirectory()) walk(p);
      else if (s?.isFile() && /\.(log|jsonl)$/.test(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Every line masking would still change, as `file:line: text` (bounded); and what was read. */
export function scanLogs(dir: string): { files: number; lines: number; findings: string[] } {
  const files = existsSync(dir) ? logFiles(dir) : [];
  let lines = 0;
  const findings: string[] = [];
  for (const file of files) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line === '') return;
        lines++;
        if (maskText(line) !== line && findings.length < 50) findings.push(`${path.relative(dir, file)}:${i + 1}: ${line.slice(0, 400)}`);
      });
  }
  return { files: files.length, lines, findings };
}
