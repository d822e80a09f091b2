// `gatehouse init` in a terminal: it asks for what the flags did not give, and
// what it writes validates. Run in a real pseudo-terminal (util-linux `script`),
// answered at each prompt as a person would type.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');
const hasScript = spawnSync('sh', ['-c', 'command -v script'], { stdio: 'ignore' }).status === 0;

/** Runs `init` in a pty; each answer is typed once the prompt before it appears. Resolves with the exit code and the terminal's output. */
function initInTerminal(dir: string, answers: [prompt: RegExp, answer: string][], extra: string[] = []): Promise<{ code: number | null; out: string }> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, main, 'init', '--out', path.join(dir, 'gatehouse.yaml'), ...extra].map(quote).join(' ');
  const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], { cwd: dir, env: { ...process.env, TERM: 'dumb' } });
  let out = '';
  let next = 0;
  const onData = (d: Buffer) => {
    out += d.toString('utf8');
    while (next < answers.length && answers[next][0].test(out.slice(out.lastIndexOf('\n', out.length - 2) + 1))) {
      child.stdin.write(`${answers[next][1]}\r`);
      next++;
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    }),
  );
}

test('asked in a terminal: service, zone, where it listens, auth, path — the written topology validates and routes to it', { skip: !hasScript && 'util-linux script is not installed' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-init-'));
  try {
    const { code, out } = await initInTerminal(dir, [
      [/service name: $/, 'billing'],
      [/zone \[public\]: $/, ''], // Enter takes the default
      [/where it listens .*\[http:\/\/127\.0\.0\.1:3000\]: $/, 'http://127.0.0.1:4100'],
      [/auth \(anonymous \| jwt\) \[jwt\]: $/, 'jwt'],
      [/path prefix \[\/api\/billing\/\]: $/, '/bills/'],
    ]);
    assert.equal(code, 0, out);
    assert.match(out, /wrote .*gatehouse\.yaml/);
    const file = path.join(dir, 'gatehouse.yaml');
    const yaml = readFileSync(file, 'utf8');
    assert.match(yaml, /billing/);
    assert.match(yaml, /http:\/\/127\.0\.0\.1:4100/);
    const validate = spawnSync(process.execPath, [main, 'validate', file], { encoding: 'utf8' });
    assert.equal(validate.status, 0, validate.stdout + validate.stderr);
    const routes = spawnSync(process.execPath, [main, 'routes', '--config', file, '--zone', 'public', '--json'], { encoding: 'utf8' });
    assert.equal(routes.status, 0, routes.stderr);
    const table = JSON.parse(routes.stdout) as { path: string; service: string }[];
    assert.ok(table.some((r) => r.service === 'billing' && r.path.startsWith('/bills')), routes.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a typed name that would break the YAML is refused with the reason, and nothing is written', { skip: !hasScript && 'util-linux script is not installed' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-init-'));
  try {
    const { code, out } = await initInTerminal(dir, [
      [/service name: $/, 'bad: {name} #x'],
      [/zone \[public\]: $/, ''],
      [/where it listens/, ''],
      [/auth/, ''],
      [/path prefix/, ''],
    ]);
    assert.equal(code, 2, out);
    assert.match(out, /gatehouse init: service "bad: \{name\} #x": lowercase letters, digits and '-'/);
    assert.equal(existsSync(path.join(dir, 'gatehouse.yaml')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
