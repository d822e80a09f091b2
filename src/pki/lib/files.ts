// The CA's state under <stateDir>/pki/. Secrets are written 0600 through a
// temporary file and a rename, so a crash never leaves half a key behind.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
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

export function ensureDirs(paths: PkiPaths): void {
  for (const d of [paths.dir, paths.issuers, paths.tokens, paths.revoked]) mkdirSync(d, { recursive: true, mode: 0o700 });
}

export function writeAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}
