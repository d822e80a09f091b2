// Signing keys and server secrets, kept in the authority database, sealed
// under the key-encryption key. JWKS is built from public parts only.
//
// Lifecycle of a signing key: created → published (in JWKS) → signing (from
// `sign_from`) → retired when a newer key starts signing (still published) →
// unpublished at `unpublish_at`, once every token it signed has expired.
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import type { Sealer } from './key-encryption.ts';

export type SigningAlg = 'EdDSA' | 'ES256';

export interface SigningKey {
  kid: string;
  alg: SigningAlg;
  publicJwk: JWK;
  privateJwk: JWK;
  signFrom: number;
  unpublishAt: number | null;
}

export interface KeySet {
  /** every published key (the active one first) */
  keys: SigningKey[];
  /** the key that signs now, for the configured algorithm */
  active: SigningKey;
}

function generate(alg: SigningAlg): { publicJwk: JWK; privateJwk: JWK } {
  const pair =
    alg === 'EdDSA' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwk = (k: KeyObject) => k.export({ format: 'jwk' }) as JWK;
  return { publicJwk: jwk(pair.publicKey), privateJwk: jwk(pair.privateKey) };
}

export function publicOnly(jwk: JWK): JWK {
  const { kty, crv, x, y, kid, alg, use } = jwk;
  const out: JWK = { kty, crv, x, kid, alg, use };
  if (y !== undefined) out.y = y;
  return out;
}

export class KeyStore {
  readonly #db: Kysely<Database>;
  readonly #sealer: Sealer;
  readonly #now: () => number;
  readonly #ready: Promise<void>;

  constructor(db: Kysely<Database>, sealer: Sealer, now: () => number) {
    this.#db = db;
    this.#sealer = sealer;
    this.#now = now;
    // the sealer opens the zone's key-encryption key from this database (key-encryption.ts);
    // every method waits for it, and a refusal (wrong master key) surfaces in the first one
    this.#ready = sealer.attach(db);
    this.#ready.catch(() => {});
  }

  async #insert(alg: SigningAlg, signFrom: number): Promise<string> {
    await this.#ready;
    const { publicJwk, privateJwk } = generate(alg);
    const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
    const meta = { kid, alg, use: 'sig' };
    await this.#db
      .insertInto('signing_keys')
      .values({
        kid,
        alg,
        public_jwk: JSON.stringify({ ...publicJwk, ...meta }),
        private_jwk: this.#sealer.seal(JSON.stringify({ ...privateJwk, ...meta }), `signing-key:${kid}`),
        created_at: this.#now(),
        sign_from: signFrom,
        unpublish_at: null,
      })
      .execute();
    return kid;
  }

  /** At first start (or after a change of algorithm): a key that signs at once. */
  async ensureSigningKey(alg: SigningAlg, maxTokenLifetimeSec: number): Promise<void> {
    await this.#ready;
    const now = this.#now();
    const rows = await this.#published(now);
    if (rows.some((r) => r.alg === alg && r.signFrom <= now)) return;
    if (rows.some((r) => r.alg === alg)) return; // a rotated-in key is pending; the old alg keeps signing until then
    await this.#insert(alg, now);
    // keys of another algorithm stop signing now and leave JWKS after their tokens expire
    await this.#db
      .updateTable('signing_keys')
      .set({ unpublish_at: now + (maxTokenLifetimeSec + 60) * 1000 })
      .where('alg', '!=', alg)
      .where('unpublish_at', 'is', null)
      .execute();
  }

  /**
   * A new key, published now and signing after `leadSeconds`; the keys it
   * replaces leave JWKS once the last token they may sign has expired.
   */
  async rotate(alg: SigningAlg, leadSeconds: number, maxTokenLifetimeSec: number): Promise<{ kid: string; signFrom: number; retired: string[] }> {
    await this.#ready;
    const now = this.#now();
    const signFrom = now + leadSeconds * 1000;
    const before = await this.#published(now);
    const kid = await this.#insert(alg, signFrom);
    const retired = before.filter((k) => k.unpublishAt === null).map((k) => k.kid);
    if (retired.length > 0)
      await this.#db
        .updateTable('signing_keys')
        .set({ unpublish_at: signFrom + (maxTokenLifetimeSec + 60) * 1000 })
        .where('kid', 'in', retired)
        .execute();
    return { kid, signFrom, retired };
  }

  async #published(now: number): Promise<SigningKey[]> {
    const rows = await this.#db
      .selectFrom('signing_keys')
      .selectAll()
      .where((eb) => eb.or([eb('unpublish_at', 'is', null), eb('unpublish_at', '>', now)]))
      .orderBy('sign_from', 'desc')
      .execute();
    return rows.map((r) => ({
      kid: r.kid,
      alg: r.alg as SigningAlg,
      publicJwk: JSON.parse(r.public_jwk) as JWK,
      privateJwk: {} as JWK, // opened on demand in load()
      signFrom: Number(r.sign_from),
      unpublishAt: r.unpublish_at === null ? null : Number(r.unpublish_at),
    }));
  }

  /** Published keys with their private parts, the active one first. */
  async load(alg: SigningAlg): Promise<KeySet> {
    await this.#ready;
    const now = this.#now();
    const rows = await this.#db
      .selectFrom('signing_keys')
      .selectAll()
      .where((eb) => eb.or([eb('unpublish_at', 'is', null), eb('unpublish_at', '>', now)]))
      .orderBy('sign_from', 'desc')
      .execute();
    const keys: SigningKey[] = rows.map((r) => ({
      kid: r.kid,
      alg: r.alg as SigningAlg,
      publicJwk: JSON.parse(r.public_jwk) as JWK,
      privateJwk: JSON.parse(this.#sealer.open(r.private_jwk, `signing-key:${r.kid}`).toString('utf8')) as JWK,
      signFrom: Number(r.sign_from),
      unpublishAt: r.unpublish_at === null ? null : Number(r.unpublish_at),
    }));
    const active = keys.find((k) => k.alg === alg && k.signFrom <= now) ?? keys.find((k) => k.signFrom <= now);
    if (!active) throw new Error('no signing key is active');
    return { keys: [active, ...keys.filter((k) => k !== active)], active };
  }

  /** Fingerprint of the key table's state, so a poller can tell when to reload. */
  async version(alg: SigningAlg): Promise<string> {
    const now = this.#now();
    const rows = await this.#published(now);
    const active = rows.find((k) => k.alg === alg && k.signFrom <= now)?.kid ?? '';
    return `${active}|${rows.map((r) => r.kid).join(',')}`;
  }

  async dropUnpublished(): Promise<void> {
    await this.#db.deleteFrom('signing_keys').where('unpublish_at', '<=', this.#now()).execute();
  }

  /** A random server secret, created once and sealed at rest. */
  async secret(name: string, bytes = 32): Promise<Buffer> {
    await this.#ready;
    const row = await this.#db.selectFrom('secrets').select('value').where('name', '=', name).executeTakeFirst();
    if (row) return this.#sealer.open(row.value, `secret:${name}`);
    const value = randomBytes(bytes);
    await this.#db
      .insertInto('secrets')
      .values({ name, value: this.#sealer.seal(value, `secret:${name}`) })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    // another instance may have won the race: read back what is stored
    const stored = await this.#db.selectFrom('secrets').select('value').where('name', '=', name).executeTakeFirstOrThrow();
    return this.#sealer.open(stored.value, `secret:${name}`);
  }

  /** A named value sealed at rest (dev credentials), or undefined. */
  async getSealed(name: string): Promise<string | undefined> {
    await this.#ready;
    const row = await this.#db.selectFrom('secrets').select('value').where('name', '=', name).executeTakeFirst();
    return row ? this.#sealer.open(row.value, `secret:${name}`).toString('utf8') : undefined;
  }

  async putSealed(name: string, value: string): Promise<void> {
    await this.#ready;
    const sealed = this.#sealer.seal(value, `secret:${name}`);
    await this.#db
      .insertInto('secrets')
      .values({ name, value: sealed })
      .onConflict((oc) => oc.column('name').doUpdateSet({ value: sealed }))
      .execute();
  }
}
