// The CA's state under <stateDir>/pki/. Every file is written whole or not at
// all (a temporary file, flushed, then renamed or linked into place), so a
// crash or a full disk never leaves half a key or an empty record behind; a
// failed write names the file it was writing (StateWriteError). Secrets are 0600.
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { getSystemErrorMessage } from 'node:util';
import path from 'node:path';

export interface PkiPaths {
  dir: string;
  meta: string;
  /** The trust bundle: the root certificate, PEM. */
  bundle: string;
  rootKey: string;
  /** Dev mode only: the generated passphrase of the root key. */
  rootPassphrase: string;
  issuers: string;
  tokens: string;
  revoked: string;
  /** Renewal lineage records (lib/lineage.ts). */
  lineages: string;
  /** serial → lineage index (lib/lineage.ts). */
  issued: string;
}

export function pkiPaths(stateDir: string): PkiPaths {
  const dir = path.resolve(stateDir, 'pki');
  return {
    dir,
    meta: path.join(dir, 'ca.json'),
    bundle: path.join(dir, 'bundle.pem'),
    rootKey: path.join(dir, 'root-key.enc.json'),
    rootPassphrase: path.join(dir, 'root-passphrase'),
    issuers: path.join(dir, 'issuers'),
    tokens: path.join(dir, 'tokens'),
    revoked: path.join(dir, 'revoked'),
    lineages: path.join(dir, 'lineages'),
    issued: path.join(dir, 'issued'),
  };
}

/** Issuer (intermediate) of a zone; `_control` signs the CA's own serving certificate. */
export function issuerFiles(paths: PkiPaths, name: string): { cert: string; key: string } {
  return { cert: path.join(paths.issuers, `${name}.pem`), key: path.join(paths.issuers, `${name}.key`) };
}

export const CONTROL_ISSUER = '_control';

/**
 * A file-system error of the CA's state, naming the file (or folder) it was
 * writing: node's own message for a failed write names no path ("ENOSPC: no
 * space left on device, write"), and an operator must learn which state dir is
 * full. `code` is node's (ENOSPC, EACCES, EEXIST …), so callers test it as
 * before; `cause` is the original error. Paths only: never a secret.
 */
export class StateWriteError extends Error {
  readonly code: string;
  readonly path: string;
  readonly syscall?: string;

  constructor(target: string, cause: unknown, action = 'write') {
    const e = cause as NodeJS.ErrnoException;
    const code = typeof e?.code === 'string' ? e.code : 'EIO';
    let reason: string;
    try {
      reason = typeof e?.errno === 'number' ? getSystemErrorMessage(e.errno) : '';
    } catch {
      reason = '';
    }
    // node's message is "CODE: reason, syscall 'path'": keep the reason alone
    if (!reason) reason = String(e?.message ?? cause).replace(/^[A-Z0-9_]+: /, '').replace(/, \w+(?: '.*')?$/, '');
    super(`cannot ${action} ${target}: ${reason} (${code})`, { cause });
    this.name = 'StateWriteError';
    this.code = code;
    this.path = target;
    if (typeof e?.syscall === 'string') this.syscall = e.syscall;
  }
}

/** `error` as a StateWriteError about `target` (one already naming a file is kept). */
export function stateWriteError(target: string, error: unknown, action = 'write'): StateWriteError {
  return error instanceof StateWriteError ? error : new StateWriteError(target, error, action);
}

/** Creates `dir` (and its parents) 0700; a failure names the folder. */
export function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw stateWriteError(dir, error, 'create');
  }
}

export function ensureDirs(paths: PkiPaths): void {
  for (const d of [paths.dir, paths.issuers, paths.tokens, paths.revoked]) makeDir(d);
}

/** A temporary name beside `file` that no reader lists (they list `.json`, `.pem`, `.key`, serials, `.used`). */
function tempBeside(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Writes `data` whole into a new file `tmp` and flushes it, or removes `tmp` and throws. */
function writeTemp(tmp: string, data: string, mode: number): void {
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
  } catch (error) {
    removeQuietly(tmp);
    throw error;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // absent already (the open failed), or the folder is gone
  }
}

/**
 * Replaces `file` with `data`, whole or not at all: a temporary file beside it,
 * flushed, then renamed over it. A failure (a full disk) leaves the old file
 * as it was and no temporary behind, and throws a StateWriteError naming `file`.
 */
export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = tempBeside(file);
  try {
    writeTemp(tmp, data, mode);
    try {
      renameSync(tmp, file);
    } catch (error) {
      removeQuietly(tmp);
      throw error;
    }
  } catch (error) {
    throw stateWriteError(file, error);
  }
}

/**
 * Creates `file` with `data` exactly once, whole or not at all; returns false
 * (writing nothing) when it exists. Like `writeFileSync(…, { flag: 'wx' })`,
 * whose create-then-write leaves an empty file when the write fails: here a
 * complete temporary file is hard-linked into place (link() refuses an existing
 * name, so exactly one of two racing creators wins) and then unlinked. A
 * failure throws a StateWriteError naming `file` (or `label`, for a file whose
 * name should not be shown).
 */
export function createOnce(file: string, data: string, mode = 0o600, label = file): boolean {
  const tmp = tempBeside(file);
  try {
    writeTemp(tmp, data, mode);
  } catch (error) {
    throw stateWriteError(label, error);
  }
  try {
    linkSync(tmp, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // a file system without hard links: create-exclusive, removed again if the write fails
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') return createExclusive(file, data, mode, label);
    throw stateWriteError(label, error);
  } finally {
    removeQuietly(tmp);
  }
}

function createExclusive(file: string, data: string, mode: number, label: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', mode);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw stateWriteError(label, error);
  }
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    removeQuietly(file);
    throw stateWriteError(label, error);
  }
  closeSync(fd);
  return true;
}
