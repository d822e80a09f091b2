// Revoked certificate serials as the CA keeps them: one file per serial,
// pki/revoked/<serial>.json in the CA's state dir (see pki/lib/revocations.ts).
import { readdirSync } from 'node:fs';
import { pkiPaths } from '../pki/index.ts';

export function readRevokedSerials(stateDir: string): string[] {
  let files: string[];
  try {
    files = readdirSync(pkiPaths(stateDir).revoked);
  } catch {
    return []; // no folder: nothing revoked
  }
  const out: string[] = [];
  for (const f of files) {
    const s = f.endsWith('.json') ? f.slice(0, -5).toLowerCase().replace(/^0+(?=.)/, '') : '';
    if (/^[0-9a-f]{1,64}$/.test(s)) out.push(s);
  }
  return out.sort();
}
