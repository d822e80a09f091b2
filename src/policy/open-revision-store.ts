// The revision counter, persisted in <stateDir>/control/revision.json so it
// survives restarts and never goes back: a recompile whose content digest is
// unchanged keeps the revision; any change takes the next integer.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface RevisionStore {
  current(): { revision: number; digest: string };
  /** The revision for content `digest`: the current one when unchanged, else the next (persisted before it is returned). */
  advance(digest: string): number;
}

export function openRevisionStore(stateDir: string): RevisionStore {
  const dir = path.resolve(stateDir, 'control');
  const file = path.join(dir, 'revision.json');
  let state = { revision: 0, digest: '' };
  try {
    const read = JSON.parse(readFileSync(file, 'utf8')) as { revision?: unknown; digest?: unknown };
    if (Number.isSafeInteger(read.revision) && (read.revision as number) >= 0 && typeof read.digest === 'string')
      state = { revision: read.revision as number, digest: read.digest };
    else throw new Error(`${file} is not a revision record`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  return {
    current: () => ({ ...state }),
    advance(digest) {
      if (digest === state.digest && state.revision > 0) return state.revision;
      const next = { revision: state.revision + 1, digest };
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(next) + '\n', { mode: 0o600 });
      renameSync(tmp, file);
      state = next;
      return next.revision;
    },
  };
}
