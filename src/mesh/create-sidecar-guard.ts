// For an application behind `gatehouse sidecar`: refuse every request that did
// not come through the sidecar. The sidecar sends its shared secret in
// x-gatehouse-sidecar (sidecar-paths.ts, lib/sidecar-secret.ts); anything else
// that reaches the application — another local process on a loopback port, a
// forged x-gatehouse-user — lacks it. The comparison is constant-time over
// SHA-256 digests (so the length leaks nothing either); the file is re-read only
// when a presented secret is unknown and the file changed (a rotation), so the
// allowed path makes no system call. Deny by default: no file, no secret, no entry.
//
// In another language: read the file's lines, compare the header against each
// in constant time, and remove the header before anything could echo it.
import { createHash, timingSafeEqual, randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatehouseError } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { SIDECAR_SECRET_HEADER } from './lib/sidecar-secret.ts';

export { SIDECAR_SECRET_HEADER };

export interface SidecarGuard {
  /** True when `req` carries the sidecar's current or previous secret; the header is then removed from `req`. */
  verify(req: IncomingMessage): boolean;
  /** verify(), and when it fails answers 403 problem+json and returns false. */
  admit(req: IncomingMessage, res: ServerResponse): boolean;
}

const MAX_SECRET = 256;
const digest = (s: string) => createHash('sha256').update(s).digest();

export function createSidecarGuard(options: { secretFile: string }): SidecarGuard {
  if (typeof options?.secretFile !== 'string' || options.secretFile === '') throw new TypeError('createSidecarGuard: secretFile is required');
  let known: Buffer[] = [];
  let stamp = '';
  const reload = (): boolean => {
    let next: string;
    try {
      const st = statSync(options.secretFile);
      next = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      known = [];
      stamp = '';
      return false;
    }
    if (next === stamp) return false;
    stamp = next;
    try {
      known = readFileSync(options.secretFile, 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l.length >= 32 && l.length <= MAX_SECRET)
        .map(digest);
    } catch {
      known = [];
    }
    return true;
  };
  reload();
  const matches = (d: Buffer) => {
    let ok = false;
    for (const k of known) ok = timingSafeEqual(k, d) || ok; // every entry, no early exit
    return ok;
  };
  function verify(req: IncomingMessage): boolean {
    const value = req.headers[SIDECAR_SECRET_HEADER];
    if (typeof value !== 'string' || value.length === 0 || value.length > MAX_SECRET) return false;
    const d = digest(value);
    const ok = matches(d) || (reload() && matches(d));
    if (!ok) return false;
    // the application never sees (or echoes) the secret
    delete req.headers[SIDECAR_SECRET_HEADER];
    for (let i = req.rawHeaders.length - 2; i >= 0; i -= 2)
      if (req.rawHeaders[i].toLowerCase() === SIDECAR_SECRET_HEADER) req.rawHeaders.splice(i, 2);
    return true;
  }
  return {
    verify,
    admit(req, res) {
      if (verify(req)) return true;
      writeProblem(res, new GatehouseError('forbidden', 'This application answers only through its sidecar.'), randomUUID());
      req.resume();
      return false;
    },
  };
}
