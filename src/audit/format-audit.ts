// An audit report as text (for people, one finding a line like a compiler's),
// JSON (the report itself) or SARIF 2.1.0 (GitHub code scanning and other
// tools): stable rule ids, the topology file and line of each finding, and a
// fingerprint of rule and field that survives edits elsewhere in the file.
import { sarifLog } from './sarif.ts';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AuditReport } from './audit-topology.ts';
import { RULES, type Severity } from './rules.ts';

export const AUDIT_FORMATS = ['text', 'json', 'sarif'] as const;
export type AuditFormat = (typeof AUDIT_FORMATS)[number];

export function formatAudit(report: AuditReport, format: AuditFormat, version: string): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(report, null, 2)}\n`;
    case 'sarif':
      return `${JSON.stringify(sarif(report, version), null, 2)}\n`;
    default:
      return text(report);
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

function text(r: AuditReport): string {
  const lines = r.findings.flatMap((f) => [`${f.file}:${f.line}:${f.column}: ${f.severity} ${f.ruleId} ${f.rule}: ${f.path}: ${f.message}`, `  fix: ${f.fix}`]);
  const s = r.summary;
  lines.push(`gatehouse audit: ${r.file}: ${plural(s.error, 'error')}, ${plural(s.warning, 'warning')}, ${plural(s.note, 'note')} (${RULES.length} rules)`);
  return `${lines.join('\n')}\n`;
}

/** GitHub's security-severity scale (critical ≥ 9, high ≥ 7, medium ≥ 4). */
const SECURITY_SEVERITY: Record<Severity, string> = { error: '7.5', warning: '5.0', note: '2.0' };

function sarif(r: AuditReport, version: string) {
  const uri = artifactUri(r.file);
  return sarifLog(
    {
      name: 'gatehouse-audit',
      version,
      rules: RULES.map((rule) => ({
        id: rule.id,
        name: rule.name,
        shortDescription: { text: rule.summary },
        fullDescription: { text: `${rule.summary} Practice: ${rule.practice}.` },
        help: { text: `Fix: ${rule.fix}.` },
        defaultConfiguration: { level: rule.severity },
        properties: { tags: ['security', 'configuration'], 'security-severity': SECURITY_SEVERITY[rule.severity] },
      })),
    },
    r.findings.map((f) => ({
      ruleId: f.ruleId,
      ruleIndex: RULES.findIndex((rule) => rule.id === f.ruleId),
      level: f.severity,
      message: { text: `${f.path}: ${f.message}. Fix: ${f.fix}.` },
      locations: [{ physicalLocation: { artifactLocation: uri, region: { startLine: f.line, startColumn: f.column } } }],
      // the rule and the field, not the line: a finding keeps its identity when lines move
      partialFingerprints: { 'gatehouseFinding/v1': createHash('sha256').update(`${f.ruleId}\0${uri.uri}\0${f.path}`).digest('hex').slice(0, 32) },
    })),
    uri.uriBaseId ? { originalUriBaseIds: { SRCROOT: { description: { text: 'the directory gatehouse audit ran in' } } } } : {},
  );
}

/** The file relative to where the audit ran (what code scanning maps to the repository), else an absolute file: URI. */
function artifactUri(file: string): { uri: string; uriBaseId?: string } {
  const relative = path.relative(process.cwd(), path.resolve(file));
  if (relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative))
    return { uri: relative.split(path.sep).map(encodeURIComponent).join('/'), uriBaseId: 'SRCROOT' };
  return { uri: pathToFileURL(path.resolve(file)).href };
}
