// `gatehouse sidecar` refuses bad addresses before it makes any certificate:
// exit 2, the flag named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { tempDir, TOPOLOGY_YAML } from './support/pki-fixtures.ts';

const root = path.resolve(import.meta.dirname, '..');
const sidecar = (args: string[]) =>
  new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = execFile(process.execPath, [path.join(root, 'src/cli/main.ts'), 'sidecar', ...args], { cwd: root }, (_e, _out, stderr) =>
      resolve({ code: child.exitCode, stderr }),
    );
  });

test('bad --upstream, --outbound-listen and --state-dir are usage errors naming the flag', async (t) => {
  const tmp = tempDir('gh-sc-');
  t.after(tmp.cleanup);
  const config = path.join(tmp.dir, 'gatehouse.yaml');
  writeFileSync(config, TOPOLOGY_YAML);
  const common = ['--service', 'orders', '--config', config, '--state-dir', tmp.dir];
  const cases: [string[], RegExp][] = [
    [['--upstream', 'http://10.0.0.1:8080'], /^gatehouse sidecar: --upstream: .*loopback/m],
    [['--upstream', 'unix:app.sock'], /^gatehouse sidecar: --upstream: .*absolute/m],
    [['--upstream', 'https://127.0.0.1:1'], /^gatehouse sidecar: --upstream: /m],
    [['--outbound-listen', '0.0.0.0:0'], /^gatehouse sidecar: --outbound-listen: .*loopback/m],
    [['--outbound-listen', 'unix:/' + 'o'.repeat(200)], /^gatehouse sidecar: --outbound-listen: .*at most 107/m],
  ];
  for (const [flags, message] of cases) {
    const r = await sidecar([...common, ...flags]);
    assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  const deep = path.join(tmp.dir, 'd'.repeat(100));
  const r = await sidecar(['--service', 'orders', '--config', config, '--state-dir', deep]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^gatehouse sidecar: --state-dir: .*at most 107/m);
  // nothing was made: no certificate, no run folder
  assert.equal(existsSync(path.join(tmp.dir, 'run')), false);
  assert.equal(existsSync(path.join(tmp.dir, 'pki')), false);
});
