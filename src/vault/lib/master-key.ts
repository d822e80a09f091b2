// The master key: every key version and hash key of the vault is stored sealed
// under it (XChaCha20-Poly1305, AAD naming what is sealed). Where it lives is
// pluggable (Kms): `local` — 32 bytes from GATEHOUSE_MASTER_KEY (base64,
// base64url or hex) or else a 0600 file STATE/vault/master.key, created only
// for an empty store — or `transit` — a HashiCorp Vault / OpenBao transit key
// (GATEHOUSE_KMS=transit, GATEHOUSE_KMS_ADDR, GATEHOUSE_KMS_TOKEN,
// GATEHOUSE_KMS_KEY): the master key never leaves that KMS.
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { getSystemErrorMessage } from 'node:util';
import { guardKey, newKey, open, seal, KEY_BYTES } from './aead.ts';

export interface Kms {
  /** Where the master key is, for messages (never the key). */
  readonly source: string;
  wrap(plaintext: Buffer, aad: string): Promise<Buffer>;
  /** undefined when `wrapped` was not sealed by this master key for `aad`. */
  unwrap(wrapped: Buffer, aad: string): Promise<Buffer | undefined>;
}

export class MasterKeyError extends Error {
  readonly code = 'vault_master_key';
}

/** A failed write naming the file (node's own message names none: "ENOSPC: no space left on device, write"); node's code kept. */
function writeError(file: string, error: unknown): Error {
  const e = error as NodeJS.ErrnoException;
  let reason = '';
  try {
    reason = typeof e?.errno === 'number' ? getSystemErrorMessage(e.errno) : '';
  } catch {
    reason = '';
  }
  if (!reason) reason = String(e?.message ?? error).replace(/^[A-Z0-9_]+: /, '').replace(/, \w+(?: '.*')?$/, '');
  return Object.assign(new Error(`cannot write ${file}: ${reason} (${e?.code ?? 'EIO'})`, { cause: error }), { code: e?.code ?? 'EIO' });
}

export function localKms(key: Buffer, source: string): Kms {
  if (key.length !== KEY_BYTES) throw new MasterKeyError(`${source}: the master key must be ${KEY_BYTES} bytes`);
  const k = guardKey(key);
  return {
    source,
    wrap: async (plaintext, aad) => seal(k, plaintext, Buffer.from(`gatehouse-vault:${aad}`)),
    unwrap: async (wrapped, aad) => open(k, wrapped, Buffer.from(`gatehouse-vault:${aad}`)),
  };
}

/** 32 bytes written as 64 hex digits or as (url-safe) base64; anything else is refused. */
export function parseMasterKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (!/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) return undefined;
  const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return b.length === KEY_BYTES ? b : undefined;
}

/**
 * A HashiCorp Vault / OpenBao transit key as the master key: wrap and unwrap
 * are POST /v1/transit/encrypt|decrypt/<key> with the AAD as
 * `associated_data` (an AEAD transit key: aes256-gcm96 or chacha20-poly1305).
 */
export function transitKms(o: { addr: string; token: string; key: string; fetch?: typeof fetch }): Kms {
  const f = o.fetch ?? fetch;
  const base = o.addr.replace(/\/+$/, '');
  const call = async (op: 'encrypt' | 'decrypt', body: object): Promise<Record<string, string> | undefined> => {
    const res = await f(`${base}/v1/transit/${op}/${encodeURIComponent(o.key)}`, {
      method: 'POST',
      headers: { 'x-vault-token': o.token, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    if (op === 'decrypt' && res.status === 400) return undefined; // transit: the ciphertext does not decrypt
    if (!res.ok) throw new MasterKeyError(`the transit KMS at ${base} answered ${res.status} to ${op}`);
    return ((await res.json()) as { data: Record<string, string> }).data;
  };
  return {
    source: `transit key ${o.key} at ${base}`,
    async wrap(plaintext, aad) {
      const data = await call('encrypt', { plaintext: plaintext.toString('base64'), associated_data: Buffer.from(aad).toString('base64') });
      return Buffer.from(data!.ciphertext, 'utf8');
    },
    async unwrap(wrapped, aad) {
      const data = await call('decrypt', { ciphertext: wrapped.toString('utf8'), associated_data: Buffer.from(aad).toString('base64') });
      return data ? Buffer.from(data.plaintext, 'base64') : undefined;
    },
  };
}

/**
 * The KMS the environment names. `mayCreate`: a missing key file may be
 * created (only for a store that holds nothing sealed yet: a new master key
 * can never open what an old one sealed).
 */
export function loadKms(stateDir: string, o: { mayCreate: boolean; env?: NodeJS.ProcessEnv }): Kms {
  const env = o.env ?? process.env;
  if (env.GATEHOUSE_KMS === 'transit') {
    const missing = ['GATEHOUSE_KMS_ADDR', 'GATEHOUSE_KMS_TOKEN', 'GATEHOUSE_KMS_KEY'].filter((v) => !env[v]);
    if (missing.length > 0) throw new MasterKeyError(`GATEHOUSE_KMS=transit needs ${missing.join(', ')}`);
    return transitKms({ addr: env.GATEHOUSE_KMS_ADDR!, token: env.GATEHOUSE_KMS_TOKEN!, key: env.GATEHOUSE_KMS_KEY! });
  }
  if (env.GATEHOUSE_KMS !== undefined && env.GATEHOUSE_KMS !== 'local')
    throw new MasterKeyError(`GATEHOUSE_KMS must be local or transit, not ${JSON.stringify(env.GATEHOUSE_KMS.slice(0, 32))}`);
  if (env.GATEHOUSE_MASTER_KEY) {
    const key = parseMasterKey(env.GATEHOUSE_MASTER_KEY);
    if (!key) throw new MasterKeyError('GATEHOUSE_MASTER_KEY must be 32 bytes as base64, base64url or hex');
    return localKms(key, 'GATEHOUSE_MASTER_KEY');
  }
  const dir = path.resolve(stateDir, 'vault');
  const file = path.join(dir, 'master.key');
  if (!existsSync(file)) {
    if (!o.mayCreate)
      throw new MasterKeyError(
        `the vault's store holds keys sealed under a master key, but GATEHOUSE_MASTER_KEY is not set and ${file} is missing; refusing to start (nothing was changed)`,
      );
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw writeError(dir, error);
    }
    const k = newKey();
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    try {
      writeFileSync(tmp, Buffer.from(k).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
      // link(), not rename(): of two processes creating it at once (the CA and an authority), exactly one
      // key lands and both read that one below; a rename would let the second replace the first's key
      linkSync(tmp, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw writeError(file, error);
    } finally {
      rmSync(tmp, { force: true }); // a full disk leaves no empty key file behind
    }
  }
  const st = statSync(file);
  if ((st.mode & 0o077) !== 0) throw new MasterKeyError(`${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
  const key = parseMasterKey(readFileSync(file, 'utf8'));
  if (!key) throw new MasterKeyError(`${file} does not hold a 32-byte key`);
  return localKms(key, file);
}

const CHECK_TEXT = 'gatehouse master key check';
const CHECK_AAD = 'master-check';

/** STATE/vault/master.check: a value sealed under the master key by its first user (openMasterKey). */
export function masterCheckFile(stateDir: string): string {
  return path.resolve(stateDir, 'vault', 'master.check');
}

export interface OpenMasterKeyOptions {
  env?: NodeJS.ProcessEnv;
  /** A KMS chosen by the caller (tests, embedding); default: loadKms from the environment. */
  kms?: Kms;
  /** The caller's own state holds something sealed under the master key: a missing key file is refused, not created. */
  holdsSealed?: boolean;
  /**
   * The caller's own proof that `kms` is the right key (it opens something the
   * caller sealed earlier); throws when not. Runs before anything is written.
   */
  verify?: (kms: Kms) => Promise<void>;
}

/**
 * The master key for a component other than the vault's store (the
 * authorities, the CA). STATE/vault/master.check holds a value sealed under it
 * by its first user: every later user opens it first, so a wrong master key is
 * refused before anything is sealed under it or changed (MasterKeyError). The
 * key file may be created only while nothing is known to be sealed: no check
 * file, no vault store, `holdsSealed` false.
 */
export async function openMasterKey(stateDir: string, o: OpenMasterKeyOptions = {}): Promise<Kms> {
  const dir = path.resolve(stateDir, 'vault');
  const checkFile = masterCheckFile(stateDir);
  const known = existsSync(checkFile) || existsSync(path.join(dir, 'vault.sqlite')) || o.holdsSealed === true;
  const kms = o.kms ?? loadKms(stateDir, { mayCreate: !known, env: o.env });
  for (let attempt = 0; ; attempt++) {
    if (existsSync(checkFile)) {
      const opened = await kms.unwrap(Buffer.from(readFileSync(checkFile, 'utf8').trim(), 'base64url'), CHECK_AAD);
      if (!opened || opened.toString() !== CHECK_TEXT)
        throw new MasterKeyError(
          `the master key (${kms.source}) cannot decrypt ${checkFile}: it is not the master key this state dir's keys are sealed under; refusing to start (nothing was changed)`,
        );
      await o.verify?.(kms);
      return kms;
    }
    if (attempt > 0) throw new MasterKeyError(`${checkFile} could not be created`);
    await o.verify?.(kms);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw writeError(dir, error);
    }
    const sealed = (await kms.wrap(Buffer.from(CHECK_TEXT), CHECK_AAD)).toString('base64url');
    const tmp = `${checkFile}.${process.pid}.${Date.now()}.tmp`;
    try {
      writeFileSync(tmp, sealed + '\n', { mode: 0o600, flag: 'wx' });
    } catch (error) {
      rmSync(tmp, { force: true });
      throw writeError(checkFile, error);
    }
    try {
      linkSync(tmp, checkFile); // exactly one of two racing first users wins; the other checks the winner's
      return kms;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(tmp);
    }
  }
}
