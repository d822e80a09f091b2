// The CA's private keys at rest, sealed under the vault's master key
// (src/vault: GATEHOUSE_MASTER_KEY, STATE/vault/master.key or a transit KMS):
// the root key in pki/root-key.enc.json, each issuer's key in
// pki/issuers/<name>.key. Both files are JSON `{ "v": 2, "sealed": "<base64url>" }`
// whose AAD names the key (`pki:root`, `pki:issuer:<name>`), so one file
// copied over another does not open.
//
// Older versions stored the root key under a passphrase (key-envelope.ts, v1)
// and the issuer keys as plain PKCS#8 PEM. `resealCaKeys` moves them: each
// file is replaced whole (temporary file, fsync, rename) after its new form
// has been written, so a kill at any point leaves every file either in its old
// or its new form, and the rerun finishes the rest. The dev passphrase file is
// removed only once the root is sealed under the master key.
import { existsSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { openMasterKey, type Kms } from '../../vault/index.ts';
import { GatehouseError } from '../../shared/errors.ts';
import { openKey, type KeyEnvelope } from './key-envelope.ts';
import { x509, importPrivateKeyDer, crypto, type Key } from './x509.ts';
import { issuerFiles, writeAtomic, type PkiPaths } from './files.ts';

export interface SealedKeyFile {
  v: 2;
  sealed: string;
}

export interface CaKeyOptions {
  env?: NodeJS.ProcessEnv;
  /** A KMS chosen by the caller; default: the environment's (loadKms). */
  kms?: Kms;
}

const rootAad = 'pki:root';
const issuerAad = (name: string) => `pki:issuer:${name}`;

type Stored = { kind: 'sealed'; file: SealedKeyFile } | { kind: 'passphrase'; envelope: KeyEnvelope } | { kind: 'pem'; pem: string };

function readStored(file: string): Stored {
  const text = readFileSync(file, 'utf8');
  if (text.trimStart().startsWith('-----BEGIN')) return { kind: 'pem', pem: text };
  let parsed: { v?: unknown };
  try {
    parsed = JSON.parse(text) as { v?: unknown };
  } catch {
    throw new GatehouseError('ca_locked', `${file} is neither a sealed key nor a PEM key`);
  }
  if (parsed.v === 2 && typeof (parsed as SealedKeyFile).sealed === 'string') return { kind: 'sealed', file: parsed as SealedKeyFile };
  if (parsed.v === 1) return { kind: 'passphrase', envelope: parsed as KeyEnvelope };
  throw new GatehouseError('ca_locked', `${file} has an unknown format`);
}

async function sealDer(kms: Kms, der: Uint8Array, aad: string): Promise<string> {
  return JSON.stringify({ v: 2, sealed: (await kms.wrap(Buffer.from(der), aad)).toString('base64url') } satisfies SealedKeyFile) + '\n';
}

async function unsealDer(kms: Kms, f: SealedKeyFile, aad: string, file: string): Promise<Buffer> {
  const der = await kms.unwrap(Buffer.from(f.sealed, 'base64url'), aad);
  if (!der)
    throw new GatehouseError(
      'ca_locked',
      `the master key (${kms.source}) cannot decrypt ${file}: it is not the master key the CA's keys are sealed under, or the file was altered; refusing (nothing was changed)`,
    );
  return der;
}

function issuerNames(paths: PkiPaths): string[] {
  if (!existsSync(paths.issuers)) return [];
  return readdirSync(paths.issuers)
    .filter((f) => f.endsWith('.key') && !f.startsWith('.'))
    .map((f) => f.slice(0, -4));
}

/**
 * The master key for the CA in `paths`. A wrong one is refused before
 * anything is written: the state dir's check value, then one of the CA's own
 * sealed keys, must open.
 */
export async function caMasterKey(stateDir: string, paths: PkiPaths, o: CaKeyOptions = {}): Promise<Kms> {
  const sealed: [string, SealedKeyFile, string][] = [];
  if (existsSync(paths.rootKey)) {
    const s = readStored(paths.rootKey);
    if (s.kind === 'sealed') sealed.push([paths.rootKey, s.file, rootAad]);
  }
  for (const name of issuerNames(paths)) {
    const file = issuerFiles(paths, name).key;
    const s = readStored(file);
    if (s.kind === 'sealed') sealed.push([file, s.file, issuerAad(name)]);
  }
  return openMasterKey(stateDir, {
    env: o.env,
    kms: o.kms,
    holdsSealed: sealed.length > 0,
    verify: async (kms) => {
      const first = sealed[0];
      if (first) (await unsealDer(kms, first[1], first[2], first[0])).fill(0);
    },
  });
}

/** Seals a new root key's PKCS#8 into root-key.enc.json. */
export async function writeSealedRootKey(kms: Kms, paths: PkiPaths, pkcs8: Uint8Array): Promise<void> {
  writeAtomic(paths.rootKey, await sealDer(kms, pkcs8, rootAad));
}

/** Seals an issuer's new key into issuers/<name>.key. */
export async function writeSealedIssuerKey(kms: Kms, paths: PkiPaths, name: string, key: Key): Promise<void> {
  const der = new Uint8Array(await crypto.subtle.exportKey('pkcs8', key));
  try {
    writeAtomic(issuerFiles(paths, name).key, await sealDer(kms, der, issuerAad(name)));
  } finally {
    der.fill(0);
  }
}

/** An issuer's signing key (a plain PEM of an older version is read as is: resealCaKeys moves it). */
export async function readIssuerKey(kms: Kms, paths: PkiPaths, name: string): Promise<Key> {
  const file = issuerFiles(paths, name).key;
  const s = readStored(file);
  if (s.kind === 'pem') return importPrivateKeyDer(new Uint8Array(x509.PemConverter.decodeFirst(s.pem)));
  if (s.kind !== 'sealed') throw new GatehouseError('ca_locked', `${file} has an unknown format`);
  const der = await unsealDer(kms, s.file, issuerAad(name), file);
  try {
    return await importPrivateKeyDer(der);
  } finally {
    der.fill(0);
  }
}

/**
 * The root key's PKCS#8, or undefined when root-key.enc.json is absent
 * (offline). A passphrase envelope of an older version needs `passphrase`.
 */
export async function readRootKey(kms: Kms, paths: PkiPaths, passphrase: string | undefined): Promise<Buffer | undefined> {
  if (!existsSync(paths.rootKey)) return undefined;
  const s = readStored(paths.rootKey);
  if (s.kind === 'sealed') return unsealDer(kms, s.file, rootAad, paths.rootKey);
  if (s.kind !== 'passphrase') throw new GatehouseError('ca_locked', `${paths.rootKey} has an unknown format`);
  if (passphrase === undefined) throw new GatehouseError('ca_locked', 'the root key is sealed under a passphrase (an older version); pass it once to re-seal it under the master key');
  try {
    return openKey(s.envelope, passphrase);
  } catch (error) {
    throw new GatehouseError('ca_locked', 'the root key cannot be decrypted (wrong passphrase or altered file)', { cause: error });
  }
}

/** The dev passphrase an older version generated (pki/root-passphrase), if still there. */
export function devPassphrase(paths: PkiPaths): string | undefined {
  return existsSync(paths.rootPassphrase) ? readFileSync(paths.rootPassphrase, 'utf8').trim() : undefined;
}

/**
 * Moves what an older version stored outside the master key under it: plain
 * PEM issuer keys, and the passphrase-sealed root key when its passphrase is
 * at hand (given, or the dev file). Returns what it re-sealed.
 */
export async function resealCaKeys(kms: Kms, paths: PkiPaths, passphrase?: string): Promise<string[]> {
  const done: string[] = [];
  for (const name of issuerNames(paths)) {
    const file = issuerFiles(paths, name).key;
    const s = readStored(file);
    if (s.kind !== 'pem') continue;
    const der = Buffer.from(x509.PemConverter.decodeFirst(s.pem));
    try {
      await importPrivateKeyDer(der); // a key that does not parse is left for the operator, not sealed
      writeAtomic(file, await sealDer(kms, der, issuerAad(name)));
    } finally {
      der.fill(0);
    }
    done.push(`issuer:${name}`);
  }
  if (existsSync(paths.rootKey)) {
    const s = readStored(paths.rootKey);
    const secret = passphrase ?? devPassphrase(paths);
    if (s.kind === 'passphrase' && secret !== undefined) {
      const der = await readRootKey(kms, paths, secret);
      try {
        writeAtomic(paths.rootKey, await sealDer(kms, der!, rootAad));
      } finally {
        der!.fill(0);
      }
      done.push('root');
    }
    // the dev passphrase protects nothing once the root is under the master key
    if (readStored(paths.rootKey).kind === 'sealed' && existsSync(paths.rootPassphrase)) unlinkSync(paths.rootPassphrase);
  }
  return done;
}
