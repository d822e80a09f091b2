// oidc-provider's storage adapter over Kysely: every model (sessions,
// interactions, grants, codes, refresh tokens, replay markers …) lives in one
// table, so a restart or a second instance loses nothing. Clients come from
// the `clients` table, managed by the admin CLI.
//
// Consuming is atomic: when two requests race to redeem the same code or
// refresh token, exactly one wins; the loser revokes the whole grant (reuse).
//
// Whenever a grant is revoked (reuse, RFC 7009 revocation of its refresh
// token, logout, client removal), the JWT access tokens issued under it are
// marked revoked in token_index with the time: introspection then reads them
// inactive and the revocation feed (revocation-feed.ts) hands their jti to the
// gateway.
import type { Kysely } from 'kysely';
import { errors } from 'oidc-provider';
import type { Database } from './db/schema.ts';

export interface AdapterHooks {
  /** a consumed code or refresh token was presented again; the grant is already revoked */
  onReuse(model: string, grantId: string | null, clientId: string | undefined): void;
}

export type AdapterPayload = Record<string, any>;

/** Marks every JWT access token of a grant revoked (idempotent: keeps the first revocation time). */
export async function markGrantRevoked(db: Kysely<Database>, grantId: string, at: number): Promise<void> {
  await db
    .updateTable('token_index')
    .set({ revoked: 1, revoked_at: at })
    .where('grant_id', '=', grantId)
    .where('revoked', '=', 0)
    .execute();
}

export function createAdapterClass(db: Kysely<Database>, now: () => number, hooks: AdapterHooks) {
  async function revokeGrant(grantId: string): Promise<void> {
    await markGrantRevoked(db, grantId, now());
    await db.deleteFrom('oidc_models').where('grant_id', '=', grantId).execute();
  }

  function rowToPayload(row: { payload: string; consumed_at: number | null }): AdapterPayload {
    const payload = JSON.parse(row.payload) as AdapterPayload;
    if (row.consumed_at !== null) payload.consumed = Math.floor(Number(row.consumed_at) / 1000);
    return payload;
  }

  return class KyselyAdapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed with `gatehouse clients`');
      const expiresAt = typeof expiresIn === 'number' && expiresIn > 0 ? now() + expiresIn * 1000 : null;
      const grantId = typeof payload.grantId === 'string' ? payload.grantId : this.model === 'Grant' ? id : null;
      const row = {
        model: this.model,
        id,
        payload: JSON.stringify(payload),
        grant_id: grantId,
        user_code: typeof payload.userCode === 'string' ? payload.userCode : null,
        uid: typeof payload.uid === 'string' ? payload.uid : null,
        expires_at: expiresAt,
        consumed_at: null,
      };
      await db
        .insertInto('oidc_models')
        .values(row)
        .onConflict((oc) =>
          oc.columns(['model', 'id']).doUpdateSet({
            payload: row.payload,
            grant_id: row.grant_id,
            user_code: row.user_code,
            uid: row.uid,
            expires_at: row.expires_at,
          }),
        )
        .execute();
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (typeof id !== 'string' || id.length === 0 || id.length > 512) return undefined;
      if (this.model === 'Client') return findClient(id);
      const row = await db
        .selectFrom('oidc_models')
        .select(['payload', 'consumed_at', 'expires_at'])
        .where('model', '=', this.model)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row || (row.expires_at !== null && Number(row.expires_at) <= now())) return undefined;
      return rowToPayload(row);
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const row = await db
        .selectFrom('oidc_models')
        .select(['payload', 'consumed_at', 'expires_at'])
        .where('model', '=', this.model)
        .where('uid', '=', uid)
        .executeTakeFirst();
      if (!row || (row.expires_at !== null && Number(row.expires_at) <= now())) return undefined;
      return rowToPayload(row);
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const row = await db
        .selectFrom('oidc_models')
        .select(['payload', 'consumed_at', 'expires_at'])
        .where('model', '=', this.model)
        .where('user_code', '=', userCode)
        .executeTakeFirst();
      if (!row || (row.expires_at !== null && Number(row.expires_at) <= now())) return undefined;
      return rowToPayload(row);
    }

    async consume(id: string): Promise<void> {
      const result = await db
        .updateTable('oidc_models')
        .set({ consumed_at: now() })
        .where('model', '=', this.model)
        .where('id', '=', id)
        .where('consumed_at', 'is', null)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 1) return;
      // Lost a race with another redemption of the same artifact: reuse.
      const row = await db
        .selectFrom('oidc_models')
        .select(['grant_id', 'payload'])
        .where('model', '=', this.model)
        .where('id', '=', id)
        .executeTakeFirst();
      const grantId = row?.grant_id ?? null;
      if (grantId) await revokeGrant(grantId);
      hooks.onReuse(this.model, grantId, row ? (JSON.parse(row.payload) as AdapterPayload).clientId : undefined);
      throw new errors.InvalidGrant(
        this.model === 'RefreshToken' ? 'refresh token already used' : 'grant request is invalid',
      );
    }

    async destroy(id: string): Promise<void> {
      if (this.model === 'Grant') await markGrantRevoked(db, id, now());
      await db.deleteFrom('oidc_models').where('model', '=', this.model).where('id', '=', id).execute();
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await markGrantRevoked(db, grantId, now());
      await db
        .deleteFrom('oidc_models')
        .where('model', '=', this.model)
        .where('grant_id', '=', grantId)
        .execute();
    }
  };

  async function findClient(id: string): Promise<AdapterPayload | undefined> {
    const row = await db
      .selectFrom('clients')
      .select(['metadata', 'secret_hash'])
      .where('client_id', '=', id)
      .executeTakeFirst();
    if (!row) return undefined;
    const metadata = JSON.parse(row.metadata) as AdapterPayload;
    // a client without grant types only reads the revocation feed (its own
    // endpoint): it is no OAuth client, so it authenticates at no endpoint here
    if (!Array.isArray(metadata.grant_types) || metadata.grant_types.length === 0) return undefined;
    // The stored value is a keyed hash; Client#compareClientSecret is replaced
    // to hash what the client presents (see provider.ts).
    if (row.secret_hash) metadata.client_secret = row.secret_hash;
    return metadata;
  }
}

/** Removes expired rows; run on a timer. */
export async function sweepExpired(db: Kysely<Database>, now: number): Promise<void> {
  await db.deleteFrom('oidc_models').where('expires_at', '<=', now).execute();
  await db.deleteFrom('token_index').where('expires_at', '<=', now).execute();
  await db.deleteFrom('mfa_pending').where('expires_at', '<=', now).execute();
  await db.deleteFrom('webauthn_challenges').where('expires_at', '<=', now).execute();
  await db
    .deleteFrom('throttle')
    .where('locked_until', '<=', now)
    .where('last_failure', '<=', now - 86_400_000)
    .execute();
}
