// Revoked serials, one file per serial in pki/revoked/ (so a `ca revoke` from
// another process never races a read-modify-write). Readers re-list the folder
// only when its mtime changes, and look at the mtime at most every `checkMs`
// (default 1 s: the request path must not pay a syscall per request).
// A record appears whole or not at all (files.ts createOnce): the file's name
// is the revocation, so a half-written one would revoke although `ca revoke`
// failed, and block the retry that would complete it.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { normalizeSerial } from './x509.ts';
import { createOnce, writeAtomic } from './files.ts';

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

  /**
   * Adds `serial`; returns false when it was already revoked. Throws (a
   * StateWriteError naming the record) when the record cannot be written, and
   * then nothing was stored: the serial is not revoked and a retry can add it.
   */
  add(serial: string, at: Date, reason?: string): boolean {
    const s = normalizeSerial(serial);
    if (s === null) throw new Error('a serial number is hexadecimal (at most 64 digits)');
    const entry: RevocationEntry = { serial: s, revokedAt: at.toISOString(), ...(reason ? { reason } : {}) };
    const file = path.join(this.dir, `${s}.json`);
    const data = JSON.stringify(entry) + '\n';
    if (!createOnce(file, data, 0o644)) {
      // Revoked before. A record left empty or cut short by an older version
      // (which created the file, then wrote it) is completed now; a whole one is kept.
      if (!wholeRecord(file)) writeAtomic(file, data, 0o644);
      return false;
    }
    this.#mtime = -1;
    this.#checkedAt = -Infinity;
    return true;
  }
}

function wholeRecord(file: string): boolean {
  try {
    const r = JSON.parse(readFileSync(file, 'utf8')) as Partial<RevocationEntry>;
    return typeof r.revokedAt === 'string';
  } catch (error) {
    // unreadable for another reason than its content: leave it alone
    return !(error instanceof SyntaxError);
  }
}
