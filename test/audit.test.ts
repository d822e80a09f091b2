// `gatehouse audit` as CI runs it: the example passes with zero errors (exit
// 0); a topology with an error-level finding exits 1; SARIF 2.1.0 carries what
// code scanning needs (rules, ruleId/ruleIndex, physical locations, partial
// fingerprints that survive lines moving).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');
const EXAMPLE = 'examples/shop/gatehouse.yaml';

async function audit(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'audit', ...args]);
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('the example passes the audit with zero errors', async () => {
  const text = await audit('--config', EXAMPLE);
  process.stdout.write(text.stdout.trimEnd().replace(/^/gm, '# ') + '\n');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /: 0 errors, /);
  const json = await audit('--config', EXAMPLE, '--format', 'json');
  assert.equal(json.code, 0);
  const report = JSON.parse(json.stdout) as { findings: { severity: string }[]; summary: { error: number } };
  assert.equal(report.summary.error, 0);
  assert.ok(report.findings.every((f) => f.severity !== 'error'));
});

test('an error-level finding exits 1; SARIF 2.1.0 locates it and keeps its fingerprint when lines move', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-cli-'));
  try {
    const file = path.join(dir, 'gatehouse.yaml');
    const text = readFileSync(EXAMPLE, 'utf8').replace(/rate_limit: \{ limit: 120[^}]*\}/, 'ip_rules: { deny: [10.0.0.0/8] }');
    assert.notEqual(text, readFileSync(EXAMPLE, 'utf8'), 'the catalog route loses its rate limit');
    writeFileSync(file, text);
    const sarifRun = async () => {
      const r = await audit('--config', file, '--format', 'sarif');
      assert.equal(r.code, 1, r.stderr);
      return JSON.parse(r.stdout);
    };
    const log = await sarifRun();
    assert.equal(log.version, '2.1.0');
    assert.match(log.$schema, /sarif-2\.1\.0/);
    const runObject = log.runs[0];
    const rules = runObject.tool.driver.rules as { id: string; defaultConfiguration: { level: string } }[];
    assert.ok(rules.length > 10 && rules.every((r) => /^GH\d{3}$/.test(r.id)));
    const results = runObject.results as any[];
    const unlimited = results.find((r) => r.ruleId === 'GH001');
    assert.ok(unlimited, 'the anonymous catalog route without a rate limit is found');
    assert.equal(unlimited.level, 'error');
    assert.equal(rules[unlimited.ruleIndex].id, 'GH001');
    const location = unlimited.locations[0].physicalLocation;
    assert.ok(location.artifactLocation.uri.endsWith('gatehouse.yaml'));
    const line = text.split('\n')[location.region.startLine - 1];
    assert.match(line, /auth: anonymous/, 'the region is the route\'s auth line');
    for (const r of results) {
      assert.ok(['error', 'warning', 'note'].includes(r.level));
      assert.ok(r.message.text.length > 0);
      assert.ok(r.locations[0].physicalLocation.region.startLine >= 1);
      assert.match(r.partialFingerprints['gatehouseFinding/v1'], /^[0-9a-f]{32}$/);
    }
    // two lines added at the top: every finding moves down two lines and keeps its fingerprint
    writeFileSync(file, `# moved\n# down\n${text}`);
    const moved = (await sarifRun()).runs[0].results as any[];
    assert.deepEqual(
      moved.map((r) => [r.ruleId, r.partialFingerprints['gatehouseFinding/v1'], r.locations[0].physicalLocation.region.startLine - 2]),
      results.map((r) => [r.ruleId, r.partialFingerprints['gatehouseFinding/v1'], r.locations[0].physicalLocation.region.startLine]),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown format or a topology that does not load exits 2', async () => {
  assert.equal((await audit('--config', EXAMPLE, '--format', 'xml')).code, 2);
  const r = await audit('--config', 'examples/shop/no-such.yaml');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no-such\.yaml:1:1: cannot read the file/);
});
