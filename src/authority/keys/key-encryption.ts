// The key-encryption key (KEK) that seals signing keys, TOTP secrets and
// server secrets at rest (AES-256-GCM, node:crypto). Each zone has its own
// random KEK, kept in the zone's database sealed under the vault's master key
// (src/vault: GATEHOUSE_MASTER_KEY, the 0600 file STATE/vault/master.key, or a
// transit KMS): whoever holds the database but not the master key holds
// nothing. Several replicas on one PostgreSQL database share the one row.
//
// Lifecycle: loadKeyEncryptionKey() (synchronous: checks the environment) →
// attach(db), called by the KeyStore before its first use: opens the zone's KEK,
// or creates it, and re-seals what an older version sealed (reseal.ts) → seal /
// open. A wrong master key refuses in attach and changes nothing.
//
// Sealed values: `v2.<iv>.<ciphertext>.<tag>` under the zone's KEK. `v1.` is
// the older format, under GATEHOUSE_MASTER_KEY itself or a per-zone
// `master.key` file; attach re-seals every v1 value and then removes that file.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { parseMasterKey } from '../../vault/index.ts';
import { openZoneKek } from './reseal.ts';
import { gcmSeal, gcmOpen } from './gcm.ts';

export interface Sealer {
  seal(plaintext: Buffer | string, purpose: string): string;
  open(sealed: string, purpose: string): Buffer;
  /** where the KEK came from, for diagnostics (never the key) */
  source: string;
  /**
   * Opens the zone's KEK from `db` (creating it, or re-sealing older values,
   * when needed). Seal and open work once it has resolved; a second call
   * returns the first call's promise.
   */
  attach(db: Kysely<Database>): Promise<void>;
}

export class KeyEncryptionError extends Error {
  readonly code = 'kek_error';
}

/**
 * The zone's sealer. `zoneDir` is STATE/authority/<zone>; the master key is
 * looked up from the state dir above it (or `stateDir` when given).
 */
export function loadKeyEncryptionKey(zoneDir: string, env: NodeJS.ProcessEnv = process.env, stateDir?: string): Sealer {
  const dir = path.resolve(zoneDir);
  if (stateDir === undefined) {
    if (path.basename(path.dirname(dir)) !== 'authority')
      throw new KeyEncryptionError(`${dir} is not a zone folder (STATE/authority/<zone>); pass the state dir`);
    stateDir = path.dirname(path.dirname(dir));
  }
  if (env.GATEHOUSE_MASTER_KEY && !parseMasterKey(env.GATEHOUSE_MASTER_KEY))
    throw new KeyEncryptionError('GATEHOUSE_MASTER_KEY must be 32 bytes as base64, base64url or hex');
  // an older version's per-zone key file: still needed to re-seal what it sealed
  const legacyFile = path.join(dir, 'master.key');
  if (existsSync(legacyFile)) {
    const st = statSync(legacyFile);
    if ((st.mode & 0o077) !== 0)
      throw new KeyEncryptionError(`${legacyFile} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  }
  let kek: Buffer | undefined;
  let attaching: Promise<void> | undefined;
  const zone = path.basename(dir);
  const sealer: Sealer = {
    source: 'the vault master key',
    attach(db) {
      attaching ??= openZoneKek({ db, zone, zoneDir: dir, stateDir: stateDir!, env, legacyFile }).then((opened) => {
        kek = opened.kek;
        sealer.source = `the zone's key-encryption key, sealed under ${opened.masterKeySource}`;
      });
      return attaching;
    },
    seal(plaintext, purpose) {
      if (!kek) throw new KeyEncryptionError('the key-encryption key is not open yet (KeyStore opens it first)');
      return gcmSeal(kek, 'v2', plaintext, purpose);
    },
    open(sealed, purpose) {
      if (!kek) throw new KeyEncryptionError('the key-encryption key is not open yet (KeyStore opens it first)');
      const opened = gcmOpen(kek, 'v2', sealed, purpose);
      if (!opened)
        throw new KeyEncryptionError(
          `cannot decrypt the ${purpose.split(':')[0]} (is the key-encryption key the one that sealed it? source: ${sealer.source})`,
        );
      return opened;
    },
  };
  return sealer;
}
