// Revoked serials, one file per serial in pki/revoked/ (so a `ca revoke` from
// another process never races a read-modify-write). Readers re-list the folder
// only when its mtime changes, and look at the mtime at most every `checkMs`
// (default 1 s: the request path must not pay a syscall per request).
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { normalizeSerial } from './x509.ts';

export interface RevocationEntry {
  serial: string;
  revokedAt: string;
  reason?: string;
}

export class RevocationStore {
  readonly dir: string;
  readonly checkMs: number;
  #mtime = -1;
  #checkedAt = -Infinity;
  #serials = new Set<string>();

  constructor(dir: string, checkMs = 1000) {
    this.dir = dir;
    this.checkMs = checkMs;
  }

  /** The current set, re-read if the folder changed. */
  serials(): ReadonlySet<string> {
    const now = performance.now();
    if (now - this.#checkedAt < this.checkMs) return this.#serials;
    this.#checkedAt = now;
    let mtime: number;
    try {
      mtime = statSync(this.dir).mtimeMs;
    } catch {
      mtime = 0;
    }
    if (mtime !== this.#mtime) {
      const next = new Set<string>();
      try {
        for (const f of readdirSync(this.dir)) {
          const s = f.endsWith('.json') ? normalizeSerial(f.slice(0, -5)) : null;
          if (s) next.add(s);
        }
      } catch {
        // an absent folder is an empty list
      }
      this.#serials = next;
      this.#mtime = mtime;
    }
    return this.#serials;
  }

  has(serial: string): boolean {
    const s = normalizeSerial(serial);
    return s === null || this.serials().has(s);
  }

  /** Asks the folder itself, past any cache (the CA's renewal path: a folder mtime may not tick between two writes). */
  hasNow(serial: string): boolean {
    const s = normalizeSerial(serial);
    return s === null || existsSync(path.join(this.dir, `${s}.json`));
  }

  /** Adds `serial`; returns false when it was already revoked. */
  add(serial: string, at: Date, reason?: string): boolean {
    const s = normalizeSerial(serial);
    if (s === null) throw new Error('a serial number is hexadecimal (at most 64 digits)');
    const entry: RevocationEntry = { serial: s, revokedAt: at.toISOString(), ...(reason ? { reason } : {}) };
    try {
      writeFileSync(path.join(this.dir, `${s}.json`), JSON.stringify(entry) + '\n', { mode: 0o644, flag: 'wx' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
    this.#mtime = -1;
    this.#checkedAt = -Infinity;
    return true;
  }
}
