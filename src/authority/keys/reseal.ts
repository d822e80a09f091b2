// Opens a zone's key-encryption key (KEK) and moves an older zone's secrets
// under it. The KEK is 32 random bytes kept in the zone's `secrets` table as
// the row `kek:master`, sealed under the vault's master key (AAD names the
// zone). Sealed columns: signing_keys.private_jwk, secrets.value,
// users.totp_secret.
//
// The re-seal migration (an older zone: `v1.` values under GATEHOUSE_MASTER_KEY
// itself or under the zone's own `master.key` file):
//   1. every v1 value is opened in memory with the old key; one that does not
//      open refuses the start, nothing written (a wrong key changes nothing);
//   2. the new KEK row is stored (or the stored one opened), then each v1 value
//      is replaced by its v2 form, in transactions of BATCH values,
//      compare-and-set on the old value (a concurrent migrator's rows are left
//      as it wrote them);
//   3. the old key file is removed once no v1 value is left.
// Killed anywhere, every value is either v1 under the old key (still there) or
// v2 under the stored KEK: the rerun opens the KEK row and re-seals the v1
// values left. Nothing is lost, nothing is sealed twice.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../db/schema.ts';
import { openMasterKey, parseMasterKey, MasterKeyError, type Kms } from '../../vault/index.ts';
import { gcmOpen, gcmSeal } from './gcm.ts';

/** The secrets row holding the zone's KEK (never a name the authority's own secrets use: theirs have no colon). */
export const KEK_ROW = 'kek:master';

/** Values re-sealed per transaction. */
const BATCH = 200;

interface Sealed {
  table: 'signing_keys' | 'secrets' | 'users';
  id: string;
  purpose: string;
  value: string;
}

export interface OpenZoneKekOptions {
  db: Kysely<Database>;
  zone: string;
  zoneDir: string;
  stateDir: string;
  env: NodeJS.ProcessEnv;
  /** The older version's per-zone key file (may be absent). */
  legacyFile: string;
}

const aadOf = (zone: string) => `authority-kek:${zone}`;

async function legacyValues(db: Kysely<Database> | Transaction<Database>): Promise<Sealed[]> {
  const out: Sealed[] = [];
  for (const r of await db.selectFrom('signing_keys').select(['kid', 'private_jwk']).where('private_jwk', 'like', 'v1.%').execute())
    out.push({ table: 'signing_keys', id: r.kid, purpose: `signing-key:${r.kid}`, value: r.private_jwk });
  for (const r of await db.selectFrom('secrets').select(['name', 'value']).where('value', 'like', 'v1.%').execute())
    out.push({ table: 'secrets', id: r.name, purpose: `secret:${r.name}`, value: r.value });
  for (const r of await db.selectFrom('users').select(['id', 'totp_secret']).where('totp_secret', 'like', 'v1.%').execute())
    out.push({ table: 'users', id: r.id, purpose: `totp:${r.id}`, value: r.totp_secret! });
  return out;
}

/** The older version's KEK that opens every v1 value: the zone's file, else GATEHOUSE_MASTER_KEY. */
function legacyKey(values: Sealed[], o: OpenZoneKekOptions): { key: Buffer; opened: Buffer[] } {
  const candidates: Buffer[] = [];
  if (existsSync(o.legacyFile)) {
    const k = parseMasterKey(readFileSync(o.legacyFile, 'utf8'));
    if (k) candidates.push(k);
  }
  if (o.env.GATEHOUSE_MASTER_KEY) {
    const k = parseMasterKey(o.env.GATEHOUSE_MASTER_KEY);
    if (k) candidates.push(k);
  }
  for (const key of candidates) {
    const opened: Buffer[] = [];
    for (const v of values) {
      const p = gcmOpen(key, 'v1', v.value, v.purpose);
      if (!p) break;
      opened.push(p);
    }
    if (opened.length === values.length) return { key, opened };
  }
  throw new MasterKeyError(
    `cannot decrypt the zone's ${values.length} sealed value(s) of the older format with ${candidates.length === 0 ? 'no key (neither ' + o.legacyFile + ' nor GATEHOUSE_MASTER_KEY is there)' : 'the key in ' + (existsSync(o.legacyFile) ? o.legacyFile : 'GATEHOUSE_MASTER_KEY')}; refusing to start (nothing was changed)`,
  );
}

async function unwrapKek(kms: Kms, sealed: string, zone: string): Promise<Buffer> {
  const kek = sealed.startsWith('m1.') ? await kms.unwrap(Buffer.from(sealed.slice(3), 'base64url'), aadOf(zone)) : undefined;
  if (!kek || kek.length !== 32)
    throw new MasterKeyError(
      `the master key (${kms.source}) cannot decrypt the key-encryption key of zone ${zone}: it is not the master key this zone's keys are sealed under; refusing to start (nothing was changed)`,
    );
  return Buffer.from(kek);
}

export async function openZoneKek(o: OpenZoneKekOptions): Promise<{ kek: Buffer; masterKeySource: string }> {
  const { db, zone } = o;
  const row = await db.selectFrom('secrets').select('value').where('name', '=', KEK_ROW).executeTakeFirst();
  const legacy = await legacyValues(db);
  // 1. the older values must open before anything is written
  const old = legacy.length > 0 ? legacyKey(legacy, o) : undefined;
  let kek: Buffer | undefined;
  const kms = await openMasterKey(o.stateDir, {
    env: o.env,
    holdsSealed: row !== undefined,
    verify: row ? async (k) => void (kek = await unwrapKek(k, row.value, zone)) : undefined,
  });
  if (!kek) {
    const fresh = randomBytes(32);
    const sealed = 'm1.' + (await kms.wrap(fresh, aadOf(zone))).toString('base64url');
    await db.insertInto('secrets').values({ name: KEK_ROW, value: sealed }).onConflict((oc) => oc.column('name').doNothing()).execute();
    // another instance (a replica, the CLI) may have stored its own first: use what is stored
    const stored = await db.selectFrom('secrets').select('value').where('name', '=', KEK_ROW).executeTakeFirstOrThrow();
    kek = stored.value === sealed ? fresh : await unwrapKek(kms, stored.value, zone);
  }
  // 2. re-seal under the zone's KEK, compare-and-set
  if (old) {
    const key = kek;
    for (let from = 0; from < legacy.length; from += BATCH)
      await db.transaction().execute(async (tx) => {
        for (let i = from; i < Math.min(from + BATCH, legacy.length); i++) {
          const v = legacy[i]!;
          const next = gcmSeal(key, 'v2', old.opened[i]!, v.purpose);
          if (v.table === 'signing_keys')
            await tx.updateTable('signing_keys').set({ private_jwk: next }).where('kid', '=', v.id).where('private_jwk', '=', v.value).execute();
          else if (v.table === 'secrets')
            await tx.updateTable('secrets').set({ value: next }).where('name', '=', v.id).where('value', '=', v.value).execute();
          else await tx.updateTable('users').set({ totp_secret: next }).where('id', '=', v.id).where('totp_secret', '=', v.value).execute();
        }
      });
    for (const p of old.opened) p.fill(0);
    old.key.fill(0);
  }
  // 3. the older key file protects nothing any more
  if (existsSync(o.legacyFile) && (await legacyValues(db)).length === 0) unlinkSync(o.legacyFile);
  return { kek, masterKeySource: kms.source };
}
