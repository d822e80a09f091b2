// `gatehouse ca revoke SERIAL`: adds a serial to the revocation list. The CA
// refuses to renew it at once; every mesh peer refuses it within its refresh
// interval of GET /v1/revocations (see REVOCATION_REFRESH_SECONDS).
import { systemClock, type Clock } from '../shared/clock.ts';
import { pkiPaths, ensureDirs } from './lib/files.ts';
import { RevocationStore } from './lib/revocations.ts';
import { normalizeSerial } from './lib/x509.ts';
import { GatehouseError } from '../shared/errors.ts';

/** How often peers re-read the revocation list; the bound on revocation. */
export const REVOCATION_REFRESH_SECONDS = 10;

export function revokeCertificate(options: { stateDir: string; serial: string; reason?: string; clock?: Clock }): {
  serial: string;
  added: boolean;
} {
  const serial = normalizeSerial(options.serial);
  if (serial === null) throw new GatehouseError('bad_request', 'a serial number is hexadecimal (colons allowed)');
  const paths = pkiPaths(options.stateDir);
  ensureDirs(paths);
  const added = new RevocationStore(paths.revoked).add(serial, new Date((options.clock ?? systemClock).now()), options.reason);
  return { serial, added };
}
