// Problems an export finds in a topology, each at its file:line:column, all
// thrown at once as one ConfigError (exit 2), like the loader's.
import path from 'node:path';
import { ConfigError, type ConfigIssue, type LoadedTopology } from '../../topology/index.ts';
import { formatPath } from '../../topology/config-error.ts';
import type { TopologyPath } from '../flows.ts';

export class Issues {
  readonly #loaded: LoadedTopology;
  readonly #issues: ConfigIssue[] = [];

  constructor(loaded: LoadedTopology) {
    this.#loaded = loaded;
  }

  add(at: TopologyPath, message: string): void {
    const { line, column } = this.#loaded.locate?.(at) ?? { line: 1, column: 1 };
    const file = path.relative(process.cwd(), this.#loaded.file) || this.#loaded.file;
    if (!this.#issues.some((i) => i.line === line && i.column === column && i.message === message))
      this.#issues.push({ file, line, column, path: formatPath(at), message });
  }

  /** Throws every problem found so far. */
  check(): void {
    if (this.#issues.length > 0) throw this.#error();
  }

  /** The error to throw for a problem that stops the export here (with those found before it). */
  refuse(at: TopologyPath, message: string): ConfigError {
    this.add(at, message);
    return this.#error();
  }

  #error(): ConfigError {
    return new ConfigError([...this.#issues].sort((a, b) => a.line - b.line || a.column - b.column));
  }
}

/** `gatehouse.yaml:12`: where an exported rule comes from, for its comment (the file's base name: same bytes wherever it is exported). */
export function sourceLine(loaded: LoadedTopology, at: TopologyPath): string {
  const { line } = loaded.locate?.(at) ?? { line: 1 };
  return `${path.basename(loaded.file)}:${line}`;
}

/**
 * Text safe inside a one-line comment of any output format: printable ASCII
 * only; anything else (newlines, quotes' look-alikes, control characters,
 * unicode) is written as a \u escape, so no input ends a comment early or
 * passes for something it is not.
 */
export function commentText(s: string): string {
  return s.replace(/[^\x20-\x7e]/gu, (c) => [...c].map((ch) => `\\u{${ch.codePointAt(0)!.toString(16)}}`).join(''));
}
