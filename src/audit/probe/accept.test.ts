import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadAcceptances, applyAcceptances, type Acceptance } from './accept.ts';
import { exitCodeOf } from './run.ts';
import { formatReport } from './report.ts';
import type { CheckResult, ProbeReport } from './types.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'gh-accept-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  return f;
};
const REASON = 'a reason long enough to say why the risk is accepted';

function report(results: Partial<CheckResult>[]): ProbeReport {
  const full = results.map((r) => ({ id: 'x.y', title: 't', severity: 'medium', status: 'fail', target: 'public gateway https://127.0.0.1:1', expected: 'e', observed: 'o', ...r }) as CheckResult);
  const f = (sev: string) => full.filter((r) => r.status === 'fail' && r.severity === sev).length;
  return {
    tool: { name: 'gatehouse probe', version: '0' },
    startedAt: '2026-11-27T00:00:00Z',
    durationMs: 1,
    requests: 1,
    targets: [],
    summary: { pass: full.filter((r) => r.status === 'pass').length, fail: full.filter((r) => r.status === 'fail').length, skip: 0, error: 0, accepted: 0, high: f('high'), medium: f('medium'), low: f('low') },
    results: full,
  };
}

test('the example accept file loads', () => {
  const list = loadAcceptances(path.join(import.meta.dirname, '../../../examples/shop/probe-accept.yaml'));
  assert.equal(list.length, 1);
  assert.equal(list[0].id, 'h2.desync.crlf-header');
});

test('hostile or malformed accept files: one message naming file:line:column and the field', () => {
  const cases: [string, RegExp][] = [
    ['accept:\n  - id: h2.x\n    reason: too short\n    expires: 2027-01-01\n', /:3:13: accept\[0\]\.reason: say why the risk is accepted/],
    ['accept:\n  - id: h2.x\n    reason: ' + REASON + '\n    expires: next week\n', /:4:14: accept\[0\]\.expires: a date YYYY-MM-DD/],
    ['accept:\n  - id: h2.x\n    reason: ' + REASON + '\n    expires: 2027-02-30\n', /accept\[0\]\.expires: a date YYYY-MM-DD/],
    ['accept:\n  - id: "../etc"\n    reason: ' + REASON + '\n    expires: 2027-01-01\n', /:2:9: accept\[0\]\.id: a check id/],
    ['accept:\n  - id: h2.x\n    reason: ' + REASON + '\n    expires: 2027-01-01\n    severity: low\n', /accept\[0\]\.severity: unknown key "severity"/],
    ['accept:\n  - id: h2.x\n    id: h2.y\n', /:3:5: .*[Mm]ap keys must be unique/],
    ['accept: [\n', /:\d+:\d+: /],
    ['- just a list\n', /expected object/],
    ['accept: !!js/function "x"\n', /:1:\d+: accept: .*expected array/],
  ];
  cases.forEach(([text, expected], i) => assert.throws(() => loadAcceptances(file(`a${i}.yaml`, text)), (e: Error) => {
    assert.match(e.message, expected);
    assert.ok(e.message.startsWith(path.join(dir, `a${i}.yaml`)), e.message);
    return true;
  }));
  assert.throws(() => loadAcceptances(file('big.yaml', `# ${'x'.repeat(70_000)}\naccept: []\n`)), /the limit is 65536/);
  assert.throws(() => loadAcceptances(path.join(dir, 'absent.yaml')), /cannot read the file \(ENOENT\)/);
  assert.throws(() => loadAcceptances(dir), /not a regular file/);
});

test('a matching medium or low finding is accepted, with its reason; the summary and the exit code count only the rest', () => {
  const a: Acceptance[] = [{ id: 'x.y', observed: 'dropped', reason: REASON, expires: '2027-05-31' }];
  const r = report([{ observed: 'answered 200: dropped, not passed on' }, { id: 'other.check', severity: 'low' }]);
  const { report: out, unused } = applyAcceptances(r, a, '2026-11-27');
  assert.deepEqual(unused, []);
  assert.equal(out.results[0].status, 'accepted');
  assert.deepEqual(out.results[0].acceptance, { reason: REASON, expires: '2027-05-31' });
  assert.deepEqual([out.summary.fail, out.summary.accepted, out.summary.medium, out.summary.low], [1, 1, 0, 1]);
  assert.equal(exitCodeOf(out, 'high'), 0);
  assert.equal(exitCodeOf(out, 'low'), 1, 'the unaccepted low finding fails a --fail-on low run');
  assert.equal(exitCodeOf(applyAcceptances(report([{ observed: 'dropped' }]), a, '2026-11-27').report, 'low'), 0);
  // every format still shows it
  assert.match(formatReport(out, 'text'), /accept +x\.y[\s\S]*accepted until 2027-05-31: a reason long enough/);
  const sarif = JSON.parse(formatReport(out, 'sarif'));
  assert.deepEqual(sarif.runs[0].results[0].suppressions, [{ kind: 'external', status: 'accepted', justification: `${REASON} (until 2027-05-31)` }]);
  assert.match(formatReport(out, 'junit'), /<skipped message="accepted until 2027-05-31/);
});

test('not accepted: a worse observation, another target, a high finding, an expired acceptance; an entry that matched nothing is returned', () => {
  const a: Acceptance[] = [
    { id: 'x.y', observed: 'dropped', target: 'public', reason: REASON, expires: '2027-05-31' },
    { id: 'never.seen', reason: REASON, expires: '2027-05-31' },
  ];
  const r = report([
    { observed: 'the injected header reached the upstream' },
    { observed: 'dropped', target: 'private gateway https://127.0.0.1:2' },
    { observed: 'dropped', severity: 'high' },
  ]);
  const { report: out, unused } = applyAcceptances(r, a, '2026-11-27');
  assert.deepEqual(out.results.map((x) => x.status), ['fail', 'fail', 'fail']);
  assert.match(out.results[2].observed, /a high finding cannot be accepted/);
  assert.equal(exitCodeOf(out), 1);
  assert.deepEqual(unused.map((x) => x.id), ['never.seen']);
  const expired = applyAcceptances(report([{ observed: 'dropped' }]), a, '2027-06-01').report;
  assert.equal(expired.results[0].status, 'fail');
  assert.match(expired.results[0].observed, /its acceptance expired on 2027-05-31/);
  assert.equal(exitCodeOf(expired, 'medium'), 1);
  assert.equal(applyAcceptances(report([{ observed: 'dropped' }]), a, '2027-05-31').report.results[0].status, 'accepted', 'the last day still holds');
});
