// A config error names the file, the line and column, and the field path, so a
// user can jump straight to it. One ConfigError carries every issue found.

export interface ConfigIssue {
  file: string;
  line: number;
  column: number;
  /** Field path like `zones.public.routes[2].methods`; empty for the whole file. */
  path: string;
  message: string;
}

export class ConfigError extends Error {
  readonly code = 'invalid_config';
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export function formatIssue(issue: ConfigIssue): string {
  const where = `${issue.file}:${issue.line}:${issue.column}`;
  return issue.path === '' ? `${where}: ${issue.message}` : `${where}: ${issue.path}: ${issue.message}`;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z_$][\w$-]*$/.test(String(part))) out += (out === '' ? '' : '.') + String(part);
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}
