// A probe report as text (for people), JSON (the report itself), SARIF 2.1.0
// (code-scanning tools) or JUnit XML (CI test views). Only failures are
// findings; skipped and errored checks are listed so nothing passes silently.
import type { CheckResult, ProbeReport, Severity } from './types.ts';
import { sarifLog } from '../sarif.ts';

export const FORMATS = ['text', 'json', 'sarif', 'junit'] as const;
export type Format = (typeof FORMATS)[number];

export function formatReport(report: ProbeReport, format: Format): string {
  switch (format) {
    case 'json':
      return JSON.stringify(report, null, 2) + '\n';
    case 'sarif':
      return JSON.stringify(sarif(report), null, 2) + '\n';
    case 'junit':
      return junit(report);
    default:
      return text(report);
  }
}

const MARK: Record<CheckResult['status'], string> = { pass: 'pass  ', fail: 'FAIL  ', skip: 'skip  ', error: 'ERROR ', accepted: 'accept' };

function text(r: ProbeReport): string {
  const lines = [`gatehouse probe: ${r.results.length} checks, ${r.requests} requests to ${r.targets.join(', ')} in ${(r.durationMs / 1000).toFixed(1)} s`];
  for (const c of r.results) {
    lines.push(`${MARK[c.status]} ${c.status === 'fail' ? c.severity.padEnd(6) : '      '} ${c.id.padEnd(30)} ${c.target}`);
    if (c.status === 'fail' || c.status === 'error') lines.push(`        expected: ${c.expected}`, `        observed: ${c.observed}`);
    else if (c.status === 'accepted')
      lines.push(`        observed: ${c.observed}`, `        accepted until ${c.acceptance!.expires}: ${c.acceptance!.reason}`);
    else if (c.status === 'skip') lines.push(`        ${c.observed}`);
  }
  const s = r.summary;
  lines.push(
    `${s.fail} finding${s.fail === 1 ? '' : 's'} (${s.high} high, ${s.medium} medium, ${s.low} low)${s.accepted ? `, ${s.accepted} accepted` : ''}, ${s.pass} passed, ${s.skip} skipped, ${s.error} could not run`,
  );
  return lines.join('\n') + '\n';
}

const LEVEL: Record<Severity, 'error' | 'warning' | 'note'> = { high: 'error', medium: 'warning', low: 'note' };
const SCORE: Record<Severity, string> = { high: '8.0', medium: '5.0', low: '2.0' };

function sarif(r: ProbeReport) {
  const rules = new Map<string, CheckResult>();
  for (const c of r.results) if (!rules.has(c.id)) rules.set(c.id, c);
  const ids = [...rules.keys()];
  return sarifLog(
    {
      name: 'gatehouse-probe',
      version: r.tool.version,
      rules: ids.map((id) => ({
        id,
        shortDescription: { text: rules.get(id)!.title },
        defaultConfiguration: { level: LEVEL[rules.get(id)!.severity] },
        properties: { 'security-severity': SCORE[rules.get(id)!.severity], tags: ['security'] },
      })),
    },
    r.results
      .filter((c) => c.status === 'fail' || c.status === 'accepted')
      .map((c) => ({
        ruleId: c.id,
        ruleIndex: ids.indexOf(c.id),
        level: LEVEL[c.severity],
        message: { text: `${c.title} at ${c.target}: expected ${c.expected}; observed ${c.observed}` },
        locations: [{ physicalLocation: { artifactLocation: { uri: uriOf(c.target) } } }],
        // SARIF's own way to carry an accepted risk: code-scanning views show it as dismissed, with why
        ...(c.acceptance ? { suppressions: [{ kind: 'external', status: 'accepted', justification: `${c.acceptance.reason} (until ${c.acceptance.expires})` }] } : {}),
      })),
    { invocations: [{ executionSuccessful: true, startTimeUtc: r.startedAt }] },
  );
}

const uriOf = (target: string) => /https?:\/\/\S+/.exec(target)?.[0] ?? `tcp://${target.split(' ')[0]}`;

const xml = (s: string) =>
  s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '');

function junit(r: ProbeReport): string {
  const s = r.summary;
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="gatehouse probe" tests="${r.results.length}" failures="${s.fail}" errors="${s.error}" skipped="${s.skip + s.accepted}" time="${(r.durationMs / 1000).toFixed(3)}">`,
  ];
  const families = new Map<string, CheckResult[]>();
  for (const c of r.results) {
    const f = c.id.split('.')[0];
    families.set(f, [...(families.get(f) ?? []), c]);
  }
  for (const [family, cs] of families) {
    const n = (st: string) => cs.filter((c) => c.status === st).length;
    out.push(`  <testsuite name="${xml(family)}" tests="${cs.length}" failures="${n('fail')}" errors="${n('error')}" skipped="${n('skip') + n('accepted')}">`);
    for (const c of cs) {
      out.push(`    <testcase classname="${xml(c.id)}" name="${xml(`${c.id} ${c.target}`)}">`);
      if (c.status === 'fail') out.push(`      <failure type="${c.severity}" message="${xml(c.observed)}">${xml(`${c.title}\nexpected: ${c.expected}\nobserved: ${c.observed}`)}</failure>`);
      if (c.status === 'error') out.push(`      <error message="${xml(c.observed)}"/>`);
      if (c.status === 'skip') out.push(`      <skipped message="${xml(c.observed)}"/>`);
      if (c.status === 'accepted') out.push(`      <skipped message="${xml(`accepted until ${c.acceptance!.expires}: ${c.acceptance!.reason}`)}"/>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return out.join('\n') + '\n';
}
