// `gatehouse probe` against a deliberately weak deployment (a bare Node proxy,
// see support/probe-weak.ts): every check must be able to fail, so a clean
// report on Gatehouse means something. And against targets that refuse,
// stall or flood: the run stays bounded, reports, and never crashes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { runProbe, exitCodeOf, formatReport, planFromTarget, type ProbeReport } from '../src/audit/probe/index.ts';
import { startWeak, startHostile, type Weak } from './support/probe-weak.ts';

let weak: Weak;
let report: ProbeReport;

before(async () => {
  weak = await startWeak();
  report = await runProbe(weak.plan, { timeoutMs: 2_000, maxMs: 90_000 });
});

after(async () => {
  await weak?.close();
});

/** Every check id the probe has, each of which the weak target must fail. */
const EVERY_CHECK = [
  'h1.smuggling.cl-te',
  'h1.smuggling.te-cl',
  'h1.smuggling.duplicate-cl',
  'h1.smuggling.te-obfuscated',
  'h1.smuggling.obs-fold',
  'h1.framing.bare-lf',
  'h1.framing.space-before-colon',
  'h1.smuggling.after-refusal',
  'h2.desync.content-length',
  'h2.desync.transfer-encoding',
  'h2.desync.crlf-header',
  'h2.desync.crlf-path',
  'path.ambiguous',
  'path.auth-bypass',
  'h2.path-normalisation',
  'headers.spoofing',
  'h2.header-spoofing',
  'token.missing',
  'token.alg-none',
  'token.foreign-key',
  'token.expired',
  'token.wrong-audience',
  'token.key-confusion',
  'token.tampered',
  'token.other-zone',
  'ws.unauthenticated',
  'direct.no-client-cert',
  'direct.plaintext',
  'tls.legacy-protocol',
  'tls.weak-cipher',
  'tls.certificate',
  'ports.undeclared',
  'ratelimit.spoofed-forwarding',
];

test('every check fails against the weak target', () => {
  const failed = new Set(report.results.filter((r) => r.status === 'fail').map((r) => r.id));
  const missing = EVERY_CHECK.filter((id) => !failed.has(id));
  assert.deepEqual(missing, [], `checks that did not fail:\n${formatReport(report, 'text')}`);
  const ids = new Set(report.results.map((r) => r.id));
  const unlisted = [...ids].filter((id) => !EVERY_CHECK.includes(id) && id !== 'token.control');
  assert.deepEqual(unlisted, [], 'a new check must be added to EVERY_CHECK and shown to fail here');
  assert.equal(exitCodeOf(report), 1);
});

test('every finding names what was expected and what was observed', () => {
  for (const r of report.results.filter((x) => x.status === 'fail')) {
    assert.ok(r.expected.length > 0 && r.observed.length > 0, `${r.id}: ${JSON.stringify(r)}`);
    assert.match(r.severity, /^(high|medium|low)$/);
  }
});

test('the run stays in its bounds', () => {
  assert.ok(report.requests <= 2_000, `${report.requests} requests`);
  assert.ok(report.durationMs < 90_000, `${report.durationMs} ms`);
  assert.deepEqual(report.targets, ['127.0.0.1']);
});

test('formats: json is the report; sarif 2.1.0 has one result per finding; junit counts failures', () => {
  assert.deepEqual(JSON.parse(formatReport(report, 'json')), report);
  const sarif = JSON.parse(formatReport(report, 'sarif'));
  assert.equal(sarif.version, '2.1.0');
  assert.equal(sarif.runs[0].results.length, report.summary.fail);
  for (const r of sarif.runs[0].results) {
    assert.ok(sarif.runs[0].tool.driver.rules[r.ruleIndex].id === r.ruleId);
    assert.match(r.level, /^(error|warning|note)$/);
  }
  const junit = formatReport(report, 'junit');
  assert.match(junit, new RegExp(`<testsuites name="gatehouse probe" tests="${report.results.length}" failures="${report.summary.fail}"`));
  assert.equal((junit.match(/<failure /g) ?? []).length, report.summary.fail);
  assert.ok(!/[\x00-\x08]/.test(junit));
});

test('a budget of a few requests stops the run with errors, not a crash', async () => {
  const r = await runProbe(weak.plan, { maxRequests: 5, timeoutMs: 1_000 });
  assert.ok(r.requests <= 5);
  assert.ok(r.results.some((x) => x.status === 'error' && /budget/.test(x.observed)), formatReport(r, 'text'));
});

test('targets that refuse, stall, or flood headers and an endless body: bounded, reported, no crash', async () => {
  const hostile = await startHostile();
  try {
    for (const url of [hostile.refused, hostile.stall, hostile.flood]) {
      const started = Date.now();
      const r = await runProbe(planFromTarget(url), { timeoutMs: 500, maxMs: 30_000, maxResponseBytes: 64 * 1024, scanWindow: 1 });
      const took = Date.now() - started;
      assert.ok(took < 35_000, `${url}: ${took} ms`);
      assert.equal(r.summary.high, 0, `${url}: a target that never answers is not a finding:\n${formatReport(r, 'text')}`);
      assert.ok(r.summary.error > 0, `${url}: what could not be checked is reported:\n${formatReport(r, 'text')}`);
      assert.equal(exitCodeOf(r), r.summary.pass + r.summary.fail === 0 ? 1 : 0);
    }
  } finally {
    await hostile.close();
  }
});
