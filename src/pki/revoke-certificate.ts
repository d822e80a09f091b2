// `gatehouse ca revoke SERIAL`: adds a serial, and every certificate renewed
// from it (its lineage's subtree, lib/lineage.ts), to the revocation list. The
// CA refuses to renew any of them at once; every mesh peer and gateway refuses
// them within its refresh interval of GET /v1/revocations (see
// REVOCATION_REFRESH_SECONDS).
import { systemClock, type Clock } from '../shared/clock.ts';
import { pkiPaths, ensureDirs } from './lib/files.ts';
import { RevocationStore } from './lib/revocations.ts';
import { descendantsOf } from './lib/lineage.ts';
import { normalizeSerial } from './lib/x509.ts';
import { GatehouseError } from '../shared/errors.ts';

/** How often peers re-read the revocation list; the bound on revocation. */
export const REVOCATION_REFRESH_SECONDS = 10;

const MAX_REASON = 256;

export function revokeCertificate(options: { stateDir: string; serial: string; reason?: string; clock?: Clock }): {
  serial: string;
  added: boolean;
  /** Descendants revoked by this call (those revoked before are not repeated). */
  descendants: string[];
} {
  const serial = normalizeSerial(options.serial);
  if (serial === null) throw new GatehouseError('bad_request', 'a serial number is hexadecimal (colons allowed), at most 64 digits');
  if (options.reason !== undefined && (options.reason.length > MAX_REASON || /[\u0000-\u001f\u007f]/.test(options.reason)))
    throw new GatehouseError('bad_request', `a reason is one line of at most ${MAX_REASON} characters`);
  const paths = pkiPaths(options.stateDir);
  ensureDirs(paths);
  const store = new RevocationStore(paths.revoked);
  const at = new Date((options.clock ?? systemClock).now());
  // The serial first, then its descendants, until a pass finds none new: a
  // renewal recorded while this runs either sees its parent revoked (the CA
  // re-checks after recording) or is found by the next pass.
  const added = store.add(serial, at, options.reason);
  const descendants: string[] = [];
  const done = new Set([serial]);
  const reason = `descendant of ${serial}${options.reason ? `: ${options.reason}` : ''}`;
  for (;;) {
    const fresh = descendantsOf(paths, serial).filter((d) => !done.has(d));
    if (fresh.length === 0) break;
    for (const d of fresh) {
      done.add(d);
      if (store.add(d, at, reason)) descendants.push(d);
    }
  }
  return { serial, added, descendants };
}
