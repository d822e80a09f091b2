// Accepted findings (`gatehouse probe --accept FILE`): a deployment's written
// decision that a medium or low finding is a risk it knows and has weighed,
// with the reason and the date by which it must be looked at again (what
// `.trivyignore` or ZAP's rules file are for scanners). An accepted finding
// stays in every report — status `accepted`, its reason beside it, a SARIF
// suppression — and only stops counting as a finding. A high finding cannot be
// accepted; an acceptance past its date counts as a finding again; an entry
// that matched nothing is reported, so stale ones get removed.
import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { parseYaml } from '../../topology/load.ts';
import { ConfigError, formatPath, type ConfigIssue } from '../../topology/config-error.ts';
import type { CheckResult, ProbeReport } from './types.ts';

const MAX_FILE_BYTES = 64 * 1024;

const Entry = z.strictObject({
  id: z
    .string()
    .regex(/^[a-z0-9-]+(\.[a-z0-9-]+)+$/, 'a check id such as h2.desync.crlf-header')
    .describe('the id of the check whose finding is accepted'),
  target: z.string().min(1).max(300).optional().describe('only findings whose target contains this text; absent: at every target'),
  observed: z
    .string()
    .min(1)
    .max(300)
    .optional()
    .describe('only findings whose observation contains this text, so that a worse observation is still a finding'),
  reason: z.string().trim().min(20, 'say why the risk is accepted (at least 20 characters)').max(2000).describe('why the risk is accepted'),
  expires: z.iso.date('a date YYYY-MM-DD').describe('the last day the acceptance holds; after it the finding counts again'),
});

export const AcceptFile = z.strictObject({ accept: z.array(Entry).max(200) });
export type Acceptance = z.infer<typeof Entry>;

/** Reads and checks an accept file; a ConfigError names file, line, column and field. */
export function loadAcceptances(file: string): Acceptance[] {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new ConfigError([{ file, line: 1, column: 1, path: '', message: 'not a regular file' }]);
    if (st.size > MAX_FILE_BYTES) throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `file is ${st.size} bytes; the limit is ${MAX_FILE_BYTES}` }]);
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})` }]);
  }
  const { data, locate } = parseYaml(text, file);
  const parsed = AcceptFile.safeParse(data);
  if (!parsed.success) {
    const issues: ConfigIssue[] = parsed.error.issues.map((i) => {
      const path = i.code === 'unrecognized_keys' ? [...i.path, i.keys[0]] : i.path;
      const message = i.code === 'unrecognized_keys' ? `unknown key ${JSON.stringify(i.keys[0])} (known: id, target, observed, reason, expires)` : i.message;
      return { file, ...locate(i.path), path: formatPath(path), message };
    });
    throw new ConfigError(issues.sort((a, b) => a.line - b.line || a.column - b.column));
  }
  return parsed.data.accept;
}

const matches = (a: Acceptance, r: CheckResult) =>
  a.id === r.id && (a.target === undefined || r.target.includes(a.target)) && (a.observed === undefined || r.observed.includes(a.observed));

/**
 * Applies acceptances to a report: matching medium/low findings become
 * `accepted` (counted apart); expired and high ones stay findings, saying so.
 * `today` is YYYY-MM-DD. Returns the new report and the entries that matched nothing.
 */
export function applyAcceptances(report: ProbeReport, acceptances: readonly Acceptance[], today: string): { report: ProbeReport; unused: Acceptance[] } {
  const used = new Set<Acceptance>();
  const results = report.results.map((r): CheckResult => {
    if (r.status !== 'fail') return r;
    const a = acceptances.find((x) => matches(x, r));
    if (a === undefined) return r;
    used.add(a);
    if (r.severity === 'high') return { ...r, observed: `${r.observed} (a high finding cannot be accepted)` };
    if (a.expires < today) return { ...r, observed: `${r.observed} (its acceptance expired on ${a.expires})` };
    return { ...r, status: 'accepted', acceptance: { reason: a.reason, expires: a.expires } };
  });
  const failed = (sev: string) => results.filter((r) => r.status === 'fail' && r.severity === sev).length;
  return {
    report: {
      ...report,
      results,
      summary: {
        ...report.summary,
        fail: results.filter((r) => r.status === 'fail').length,
        accepted: results.filter((r) => r.status === 'accepted').length,
        high: failed('high'),
        medium: failed('medium'),
        low: failed('low'),
      },
    },
    unused: acceptances.filter((a) => !used.has(a)),
  };
}
