// The vault's key ring and token store in process: named keys with versions
// (XChaCha20-Poly1305 through libsodium), the caller's context as AAD,
// rotation, rewrap, data keys, min_decryption_version, tokenization. Key
// material is stored sealed under the master key (lib/master-key.ts) and kept
// in libsodium's guarded memory once opened.
//
// Lifecycle: open (store, master key check, keys loaded lazily) → operations
// → close. Another process (the CLI) may change keys in the same store; a
// running vault sees it within `refreshMs` (a version it does not know yet is
// loaded at once).
import { GatehouseError } from '../shared/errors.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { newKey, open, sealInto, keyedHash, randomBytes, NONCE_BYTES, TAG_BYTES, KEY_BYTES } from './lib/aead.ts';
import { encodeHeader, parseCiphertext, ciphertextString, MAX_PLAINTEXT_BYTES, type ParsedCiphertext } from './lib/ciphertext.ts';
import { existsSync } from 'node:fs';
import { loadKms, openMasterKey, masterCheckFile, MasterKeyError, type Kms } from './lib/master-key.ts';
import { openVaultStore, type VaultStore } from './lib/store.ts';
import { cardToken, isCardNumber } from './lib/card-token.ts';

export type TokenFormat = 'opaque' | 'card';

export interface VaultKeyInfo {
  name: string;
  latest: number;
  /** Versions below it no longer decrypt; `latest + 1`: the key is retired (nothing encrypts or decrypts). */
  minDecryptionVersion: number;
  tokens: TokenFormat;
  deterministic: boolean;
}

export interface OpenVaultOptions {
  stateDir: string;
  /** 'sqlite' (STATE/vault/vault.sqlite) or a postgres:// URL; default sqlite. */
  storage?: string;
  /** The master key's home; default: from the environment (loadKms). */
  kms?: Kms;
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  /** How stale a key's metadata may be before it is read again (default 1000 ms). */
  refreshMs?: number;
}

export interface Vault {
  readonly kind: 'sqlite' | 'postgres';
  /** Where the master key is (for messages; never the key). */
  readonly masterKeySource: string;
  createKey(name: string, options?: { tokens?: TokenFormat; deterministic?: boolean }): Promise<VaultKeyInfo>;
  /** The key, created with `options` when missing (topology keys at start). */
  ensureKey(name: string, options?: { tokens?: TokenFormat; deterministic?: boolean }): Promise<VaultKeyInfo>;
  rotateKey(name: string): Promise<VaultKeyInfo>;
  setMinDecryptionVersion(name: string, version: number): Promise<VaultKeyInfo>;
  /** Removes the material of versions below min_decryption_version (irreversible); the versions removed. */
  trimKey(name: string): Promise<number[]>;
  /** Deletes a retired key (min_decryption_version above latest) with its tokens; refused otherwise. */
  deleteKey(name: string): Promise<void>;
  listKeys(): Promise<VaultKeyInfo[]>;
  keyInfo(name: string): Promise<VaultKeyInfo>;
  /** `gh:v1:` string by default; raw bytes with `{ raw: true }`. */
  encrypt(name: string, plaintext: Uint8Array | string, context: string): Promise<string>;
  encrypt(name: string, plaintext: Uint8Array | string, context: string, o: { raw: true }): Promise<Buffer>;
  /** `name`: the key the caller means; a ciphertext of another key is refused (vault_key_mismatch). */
  decrypt(name: string, ciphertext: string | Buffer, context: string): Promise<Buffer>;
  /** The same plaintext under the newest version, never returned; a ciphertext already there is returned as is. */
  rewrap(name: string, ciphertext: string, context: string): Promise<string>;
  /** A fresh 32-byte data key and the same key encrypted (envelope encryption). */
  datakey(name: string, context: string): Promise<{ plaintext: Buffer; ciphertext: string }>;
  tokenize(name: string, value: string): Promise<string>;
  detokenize(name: string, token: string): Promise<string>;
  revokeToken(name: string, token: string): Promise<void>;
  /** The stored values of a key's tokens re-encrypted under its newest version (compare-and-set per token: safe to interrupt and rerun). */
  rewrapTokens(name: string): Promise<{ tokens: number; rewrapped: number }>;
  close(): Promise<void>;
}

interface LoadedKey {
  info: VaultKeyInfo;
  versions: Map<number, Buffer>;
  hashKey: Buffer;
  loadedAt: number;
}

const KEY_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const MAX_CONTEXT_BYTES = 1024;
const MAX_TOKEN_VALUE_BYTES = 4096;
const TOKEN_SHAPE = /^(?:tok_[A-Za-z0-9_-]{22}|[0-9]{13,19})$/;
const CHECK = 'gatehouse vault master key check';

const notFound = (name: string) => new GatehouseError('vault_key_not_found', `no key ${JSON.stringify(name)}`);

function checkName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || !KEY_NAME.test(name)) throw new GatehouseError('vault_key_not_found', 'a key name is lowercase letters, digits and -');
}

function contextBytes(context: unknown): Buffer {
  if (typeof context !== 'string' || context.length === 0) throw new GatehouseError('vault_context_invalid', 'a context (non-empty string) is required');
  const b = Buffer.from(context, 'utf8');
  if (b.length > MAX_CONTEXT_BYTES) throw new GatehouseError('vault_context_invalid', `the context exceeds ${MAX_CONTEXT_BYTES} bytes`);
  return b;
}

const aadOf = (header: Buffer, context: Buffer) => Buffer.concat([header, Buffer.from([0]), context]);

const isUniqueViolation = (e: unknown) => /unique|duplicate key|constraint/i.test(String((e as Error)?.message ?? e));

export async function openVault(options: OpenVaultOptions): Promise<Vault> {
  const clock = options.clock ?? systemClock;
  const refreshMs = options.refreshMs ?? 1000;
  const store: VaultStore = await openVaultStore(options.storage ?? 'sqlite', options.stateDir);
  const { db } = store;
  let kms: Kms;
  try {
    const check = await db.selectFrom('vault_meta').select('value').where('name', '=', 'master_check').executeTakeFirst();
    kms = options.kms ?? loadKms(options.stateDir, { mayCreate: check === undefined && !existsSync(masterCheckFile(options.stateDir)), env: options.env });
    if (check) {
      const opened = await kms.unwrap(Buffer.from(check.value, 'base64url'), 'check');
      if (!opened || opened.toString() !== CHECK)
        throw new MasterKeyError(
          `the master key (${kms.source}) is not the one this vault's keys are sealed under; refusing to start (nothing was changed)`,
        );
      // the state dir's check value (the CA and the authorities seal under the same master key)
      await openMasterKey(options.stateDir, { kms });
    } else {
      // a fresh store: the state dir's check value first, so a wrong key writes nothing here
      await openMasterKey(options.stateDir, { kms });
      const sealed = (await kms.wrap(Buffer.from(CHECK), 'check')).toString('base64url');
      await db.insertInto('vault_meta').values({ name: 'master_check', value: sealed }).onConflict((c) => c.doNothing()).execute();
    }
  } catch (error) {
    await store.close();
    throw error;
  }

  const cache = new Map<string, LoadedKey>();
  const loading = new Map<string, Promise<LoadedKey>>();

  const unsealMaterial = async (sealed: string, aad: string): Promise<Buffer> => {
    const k = await kms.unwrap(Buffer.from(sealed, 'base64url'), aad);
    if (!k || k.length !== KEY_BYTES) throw new MasterKeyError(`a sealed key (${aad}) does not open with the master key (${kms.source})`);
    return k;
  };

  async function load(name: string): Promise<LoadedKey> {
    const row = await db.selectFrom('vault_keys').selectAll().where('name', '=', name).executeTakeFirst();
    if (!row) {
      cache.delete(name);
      throw notFound(name);
    }
    const previous = cache.get(name);
    const versions = new Map<number, Buffer>();
    const rows = await db.selectFrom('vault_key_versions').select(['version', 'material']).where('name', '=', name).execute();
    for (const v of rows) {
      const known = previous?.versions.get(v.version);
      versions.set(v.version, known ?? (await unsealMaterial(v.material, `key:${name}:${v.version}`)));
    }
    const loaded: LoadedKey = {
      info: {
        name,
        latest: row.latest,
        minDecryptionVersion: row.min_decryption_version,
        tokens: row.token_format as TokenFormat,
        deterministic: Number(row.deterministic) === 1,
      },
      versions,
      hashKey: previous?.hashKey ?? (await unsealMaterial(row.hash_key, `hash:${name}`)),
      loadedAt: clock.now(),
    };
    cache.set(name, loaded);
    return loaded;
  }

  /** The key, read again when stale or when `needVersion` is newer than what is cached. */
  function key(name: string, needVersion = 0): Promise<LoadedKey> | LoadedKey {
    const k = cache.get(name);
    if (k && clock.now() - k.loadedAt < refreshMs && needVersion <= k.info.latest) return k;
    let p = loading.get(name);
    if (!p) {
      p = load(name).finally(() => loading.delete(name));
      loading.set(name, p);
    }
    return p;
  }

  const sealMaterial = async (material: Buffer, aad: string) => (await kms.wrap(material, aad)).toString('base64url');

  async function encryptWith(k: LoadedKey, plaintext: Uint8Array, context: Buffer): Promise<Buffer> {
    const { latest, minDecryptionVersion } = k.info;
    if (minDecryptionVersion > latest) throw new GatehouseError('vault_version_retired', `key ${k.info.name} is retired`);
    if (plaintext.length > MAX_PLAINTEXT_BYTES)
      throw new GatehouseError('payload_too_large', `a field is at most ${MAX_PLAINTEXT_BYTES} bytes; use a data key for more`);
    const material = k.versions.get(latest)!;
    const header = encodeHeader(k.info.name, latest);
    const raw = Buffer.allocUnsafe(header.length + NONCE_BYTES + plaintext.length + TAG_BYTES);
    header.copy(raw, 0);
    sealInto(raw, header.length, material, plaintext, aadOf(header, context));
    return raw;
  }

  async function decryptParsed(name: string, c: ParsedCiphertext, context: Buffer): Promise<Buffer> {
    if (c.keyName !== name) throw new GatehouseError('vault_key_mismatch', 'the ciphertext is of another key');
    const k = await key(name, c.version);
    if (c.version < k.info.minDecryptionVersion)
      throw new GatehouseError('vault_version_retired', `version ${c.version} of ${name} is below its min_decryption_version`);
    const material = k.versions.get(c.version);
    if (!material) throw new GatehouseError('vault_decrypt_failed', 'the ciphertext names a version this key does not have');
    const plaintext = open(material, c.sealed, aadOf(c.header, context));
    if (!plaintext) throw new GatehouseError('vault_decrypt_failed', 'the ciphertext does not decrypt with this context');
    return plaintext;
  }

  const asBytes = (p: Uint8Array | string): Uint8Array => {
    if (typeof p === 'string') return Buffer.from(p, 'utf8');
    if (p instanceof Uint8Array) return p;
    throw new GatehouseError('bad_request', 'the plaintext must be bytes or a string');
  };

  async function insertKey(name: string, o: { tokens?: TokenFormat; deterministic?: boolean }): Promise<void> {
    const now = clock.now();
    const material = newKey();
    const hashKey = newKey();
    await db.transaction().execute(async (tx) => {
      await tx
        .insertInto('vault_keys')
        .values({
          name,
          latest: 1,
          min_decryption_version: 1,
          token_format: o.tokens ?? 'opaque',
          deterministic: o.deterministic ? 1 : 0,
          hash_key: await sealMaterial(hashKey, `hash:${name}`),
          created_at: now,
          updated_at: now,
        })
        .execute();
      await tx.insertInto('vault_key_versions').values({ name, version: 1, material: await sealMaterial(material, `key:${name}:1`), created_at: now }).execute();
    });
  }

  async function tokenOf(k: LoadedKey, value: string): Promise<string> {
    if (typeof value !== 'string' || value.length === 0) throw new GatehouseError('vault_value_invalid', 'a value (non-empty string) is required');
    if (Buffer.byteLength(value) > MAX_TOKEN_VALUE_BYTES) throw new GatehouseError('vault_value_invalid', `a value is at most ${MAX_TOKEN_VALUE_BYTES} bytes`);
    const card = k.info.tokens === 'card';
    if (card && !isCardNumber(value))
      throw new GatehouseError('vault_value_invalid', 'not a card number (13–19 digits, Luhn-valid, not starting with the reserved token digit 0)');
    const name = k.info.name;
    const lookup = k.info.deterministic ? keyedHash(k.hashKey, Buffer.from(value, 'utf8')).toString('hex') : null;
    const existing = async () =>
      lookup === null
        ? undefined
        : (await db.selectFrom('vault_tokens').select('token').where('key_name', '=', name).where('lookup', '=', lookup).executeTakeFirst())?.token;
    const found = await existing();
    if (found) return found;
    for (let attempt = 0; attempt < 8; attempt++) {
      const token = card ? cardToken(value) : `tok_${randomBytes(16).toString('base64url')}`;
      const sealed = ciphertextString(await encryptWith(k, Buffer.from(value, 'utf8'), Buffer.from(`token:${name}:${token}`)));
      try {
        await db.insertInto('vault_tokens').values({ token, key_name: name, value: sealed, lookup, created_at: clock.now(), revoked_at: null }).execute();
        return token;
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
        // another caller tokenized the same value at the same time (deterministic), or a random token collided
        const raced = await existing();
        if (raced) return raced;
      }
    }
    throw new GatehouseError('vault_unavailable', 'no free token was found; retry');
  }

  const vault: Vault = {
    kind: store.kind,
    masterKeySource: kms.source,

    async createKey(name, o = {}) {
      checkName(name);
      try {
        await insertKey(name, o);
      } catch (error) {
        if (isUniqueViolation(error)) throw new GatehouseError('vault_key_exists', `key ${name} exists`);
        throw error;
      }
      return (await load(name)).info;
    },

    async ensureKey(name, o = {}) {
      checkName(name);
      try {
        return (await load(name)).info;
      } catch (error) {
        if ((error as GatehouseError).code !== 'vault_key_not_found') throw error;
      }
      try {
        await insertKey(name, o);
      } catch (error) {
        if (!isUniqueViolation(error)) throw error; // created meanwhile by another process
      }
      return (await load(name)).info;
    },

    async rotateKey(name) {
      checkName(name);
      for (let attempt = 0; ; attempt++) {
        const row = await db.selectFrom('vault_keys').select('latest').where('name', '=', name).executeTakeFirst();
        if (!row) throw notFound(name);
        const next = row.latest + 1;
        const material = newKey();
        const sealed = await sealMaterial(material, `key:${name}:${next}`);
        try {
          await db.transaction().execute(async (tx) => {
            await tx.insertInto('vault_key_versions').values({ name, version: next, material: sealed, created_at: clock.now() }).execute();
            const r = await tx
              .updateTable('vault_keys')
              .set({ latest: next, updated_at: clock.now() })
              .where('name', '=', name)
              .where('latest', '=', row.latest)
              .executeTakeFirst();
            if (Number(r.numUpdatedRows) !== 1) throw new Error('unique: rotated meanwhile');
          });
          return (await load(name)).info;
        } catch (error) {
          if (!isUniqueViolation(error) || attempt >= 4) throw error;
        }
      }
    },

    async setMinDecryptionVersion(name, version) {
      checkName(name);
      const k = await load(name);
      if (!Number.isSafeInteger(version) || version < 1 || version > k.info.latest + 1)
        throw new GatehouseError('vault_version_invalid', `min_decryption_version of ${name} is 1 to ${k.info.latest + 1} (latest + 1 retires the key)`);
      await db.updateTable('vault_keys').set({ min_decryption_version: version, updated_at: clock.now() }).where('name', '=', name).execute();
      return (await load(name)).info;
    },

    async trimKey(name) {
      checkName(name);
      const k = await load(name);
      const below = [...k.versions.keys()].filter((v) => v < k.info.minDecryptionVersion).sort((a, b) => a - b);
      if (below.length > 0)
        await db.deleteFrom('vault_key_versions').where('name', '=', name).where('version', '<', k.info.minDecryptionVersion).execute();
      await load(name);
      return below;
    },

    async deleteKey(name) {
      checkName(name);
      const k = await load(name);
      if (k.info.minDecryptionVersion <= k.info.latest)
        throw new GatehouseError('vault_key_in_use', `key ${name} still decrypts; retire it first (set-min-version ${k.info.latest + 1})`);
      await db.transaction().execute(async (tx) => {
        await tx.deleteFrom('vault_tokens').where('key_name', '=', name).execute();
        await tx.deleteFrom('vault_key_versions').where('name', '=', name).execute();
        await tx.deleteFrom('vault_keys').where('name', '=', name).execute();
      });
      cache.delete(name);
    },

    async listKeys() {
      const rows = await db.selectFrom('vault_keys').select('name').orderBy('name').execute();
      return Promise.all(rows.map(async (r) => (await load(r.name)).info));
    },

    async keyInfo(name) {
      checkName(name);
      return (await key(name)).info;
    },

    async encrypt(name: string, plaintext: Uint8Array | string, context: string, o?: { raw: true }): Promise<never> {
      checkName(name);
      const ctx = contextBytes(context);
      const raw = await encryptWith(await key(name), asBytes(plaintext), ctx);
      return (o?.raw ? raw : ciphertextString(raw)) as never;
    },

    async decrypt(name, ciphertext, context) {
      checkName(name);
      const ctx = contextBytes(context);
      return decryptParsed(name, parseCiphertext(ciphertext), ctx);
    },

    async rewrap(name, ciphertext, context) {
      checkName(name);
      const ctx = contextBytes(context);
      const c = parseCiphertext(ciphertext);
      const plaintext = await decryptParsed(name, c, ctx);
      const k = await key(name);
      if (c.version === k.info.latest && typeof ciphertext === 'string') return ciphertext;
      try {
        return ciphertextString(await encryptWith(k, plaintext, ctx));
      } finally {
        plaintext.fill(0);
      }
    },

    async datakey(name, context) {
      checkName(name);
      const ctx = contextBytes(context);
      const k = await key(name);
      const plaintext = randomBytes(KEY_BYTES);
      return { plaintext, ciphertext: ciphertextString(await encryptWith(k, plaintext, ctx)) };
    },

    async tokenize(name, value) {
      checkName(name);
      return tokenOf(await key(name), value);
    },

    async detokenize(name, token) {
      checkName(name);
      if (typeof token !== 'string' || !TOKEN_SHAPE.test(token)) throw new GatehouseError('vault_token_not_found', 'not a token');
      const row = await db.selectFrom('vault_tokens').select(['key_name', 'value', 'revoked_at']).where('token', '=', token).executeTakeFirst();
      if (!row) throw new GatehouseError('vault_token_not_found', 'no such token');
      if (row.key_name !== name) throw new GatehouseError('vault_token_wrong_key', 'the token is of another key');
      if (row.revoked_at !== null) throw new GatehouseError('vault_token_revoked', 'the token was revoked');
      return (await decryptParsed(name, parseCiphertext(row.value), Buffer.from(`token:${name}:${token}`))).toString('utf8');
    },

    async revokeToken(name, token) {
      checkName(name);
      if (typeof token !== 'string' || !TOKEN_SHAPE.test(token)) throw new GatehouseError('vault_token_not_found', 'not a token');
      const row = await db.selectFrom('vault_tokens').select(['key_name']).where('token', '=', token).executeTakeFirst();
      if (!row) throw new GatehouseError('vault_token_not_found', 'no such token');
      if (row.key_name !== name) throw new GatehouseError('vault_token_wrong_key', 'the token is of another key');
      // a deterministic value gets a fresh token after this one is revoked
      await db.updateTable('vault_tokens').set({ revoked_at: clock.now(), lookup: null }).where('token', '=', token).execute();
    },

    async rewrapTokens(name) {
      checkName(name);
      const latest = (await load(name)).info.latest;
      let last = '';
      const result = { tokens: 0, rewrapped: 0 };
      for (;;) {
        const page = await db.selectFrom('vault_tokens').select(['token', 'value']).where('key_name', '=', name).where('token', '>', last).orderBy('token').limit(500).execute();
        if (page.length === 0) return result;
        for (const row of page) {
          result.tokens++;
          if (parseCiphertext(row.value).version >= latest) continue;
          const next = await vault.rewrap(name, row.value, `token:${name}:${row.token}`);
          const r = await db.updateTable('vault_tokens').set({ value: next }).where('token', '=', row.token).where('value', '=', row.value).executeTakeFirst();
          result.rewrapped += Number(r.numUpdatedRows);
        }
        last = page[page.length - 1].token;
      }
    },

    async close() {
      cache.clear();
      await store.close();
    },
  };
  return vault;
}
