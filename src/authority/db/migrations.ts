// Schema migrations, run at every start (idempotent, recorded by Kysely's Migrator).
import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';

const migrations: Record<string, Migration> = {
  '0001_initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('oidc_models')
        .addColumn('model', 'varchar(64)', (c) => c.notNull())
        .addColumn('id', 'varchar(512)', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('grant_id', 'varchar(512)')
        .addColumn('user_code', 'varchar(512)')
        .addColumn('uid', 'varchar(512)')
        .addColumn('expires_at', 'bigint')
        .addColumn('consumed_at', 'bigint')
        .addPrimaryKeyConstraint('oidc_models_pk', ['model', 'id'])
        .execute();
      await db.schema.createIndex('oidc_models_grant').on('oidc_models').column('grant_id').execute();
      await db.schema.createIndex('oidc_models_uid').on('oidc_models').columns(['model', 'uid']).execute();
      await db.schema.createIndex('oidc_models_user_code').on('oidc_models').columns(['model', 'user_code']).execute();
      await db.schema.createIndex('oidc_models_expires').on('oidc_models').column('expires_at').execute();

      await db.schema
        .createTable('clients')
        .addColumn('client_id', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('metadata', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'varchar(128)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('users')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('username', 'varchar(128)', (c) => c.notNull().unique())
        .addColumn('password_hash', 'text', (c) => c.notNull())
        .addColumn('totp_secret', 'text')
        .addColumn('totp_last_step', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('locked', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('claims', 'text', (c) => c.notNull().defaultTo('{}'))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('signing_keys')
        .addColumn('kid', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('alg', 'varchar(16)', (c) => c.notNull())
        .addColumn('public_jwk', 'text', (c) => c.notNull())
        .addColumn('private_jwk', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('sign_from', 'bigint', (c) => c.notNull())
        .addColumn('unpublish_at', 'bigint')
        .execute();

      await db.schema
        .createTable('secrets')
        .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('throttle')
        .addColumn('key', 'varchar(512)', (c) => c.primaryKey())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('last_failure', 'bigint', (c) => c.notNull())
        .addColumn('locked_until', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('mfa_pending')
        .addColumn('uid', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('account_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('token_index')
        .addColumn('jti', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('client_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('grant_id', 'varchar(512)')
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('token_index_expires').on('token_index').column('expires_at').execute();
      void sql;
    },
  },
  // WebAuthn credentials (second factor) and their single-use challenges; the
  // time a token_index row was revoked (the gateway's revocation feed reads it).
  '0002_webauthn_revocation_feed': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('webauthn_credentials')
        // a credential id is at most 1023 bytes: 1364 base64url characters
        .addColumn('id', 'varchar(1400)', (c) => c.primaryKey())
        .addColumn('user_id', 'varchar(64)', (c) => c.notNull().references('users.id').onDelete('cascade'))
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('counter', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('transports', 'text', (c) => c.notNull().defaultTo('[]'))
        .addColumn('device_type', 'varchar(16)', (c) => c.notNull())
        .addColumn('backed_up', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('aaguid', 'varchar(36)', (c) => c.notNull())
        .addColumn('name', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint')
        .execute();
      await db.schema.createIndex('webauthn_credentials_user').on('webauthn_credentials').column('user_id').execute();

      await db.schema
        .createTable('webauthn_challenges')
        .addColumn('challenge', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('purpose', 'varchar(16)', (c) => c.notNull())
        .addColumn('binding', 'varchar(128)', (c) => c.notNull())
        .addColumn('account_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('webauthn_challenges_binding').on('webauthn_challenges').columns(['purpose', 'binding']).execute();
      await db.schema.createIndex('webauthn_challenges_expires').on('webauthn_challenges').column('expires_at').execute();

      await db.schema.alterTable('token_index').addColumn('revoked_at', 'bigint').execute();
      await db.schema.createIndex('token_index_revoked_at').on('token_index').column('revoked_at').execute();
    },
  },
  // Exchanged tokens remember their subject token (RFC 8693): revoking the
  // subject revokes what was exchanged from it, here and across zones.
  '0003_exchange_subject': {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('token_index').addColumn('subject_jti', 'varchar(128)').execute();
      await db.schema.alterTable('token_index').addColumn('subject_iss', 'varchar(512)').execute();
      await db.schema.createIndex('token_index_subject').on('token_index').columns(['subject_jti', 'subject_iss']).execute();
    },
  },
  // What a user consented to, per client (consent.ts): outlives browser sessions.
  '0004_consents': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('consents')
        .addColumn('account_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('client_id', 'varchar(128)', (c) => c.notNull())
        .addColumn('scopes', 'text', (c) => c.notNull())
        .addColumn('granted_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('consents_pk', ['account_id', 'client_id'])
        .execute();
    },
  },
  // Sign-in through an upstream OpenID Provider (federation.ts).
  '0005_federation': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('federation_pending')
        .addColumn('state', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('uid', 'varchar(64)', (c) => c.notNull())
        .addColumn('upstream', 'varchar(32)', (c) => c.notNull())
        .addColumn('nonce', 'varchar(64)', (c) => c.notNull())
        .addColumn('verifier', 'varchar(128)', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('federated_identities')
        .addColumn('issuer', 'varchar(512)', (c) => c.notNull())
        .addColumn('subject', 'varchar(255)', (c) => c.notNull())
        .addColumn('user_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('federated_identities_pk', ['issuer', 'subject'])
        .execute();
    },
  },
};

const provider: MigrationProvider = { getMigrations: async () => migrations };

/** pg_advisory_lock key of authority migrations ('ghmi'). */
const MIGRATION_LOCK = 0x6768_6d69;

/**
 * Bring the schema to the latest version. On PostgreSQL several authorities
 * may start at once against one database: a session advisory lock makes them
 * migrate one after the other (the migrator's own lock table is created
 * without one, and two creating it at once fail). Its tables live in the
 * authority's own schema (`?schema=`), never found in another one.
 */
export async function migrate(db: Kysely<any>, o: { postgres?: { schema: string } } = {}): Promise<void> {
  const run = async (on: Kysely<any>) => {
    const migrator = new Migrator({
      db: on,
      provider,
      migrationTableName: 'gh_migrations',
      migrationLockTableName: 'gh_migrations_lock',
      // the migrator looks its tables up by schema: another schema's in the same database are not ours
      migrationTableSchema: o.postgres?.schema,
    });
    const { error } = await migrator.migrateToLatest();
    if (error) throw new Error('authority database migration failed', { cause: error });
  };
  if (!o.postgres) return run(db);
  await db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`.execute(conn);
    try {
      await run(conn);
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.execute(conn);
    }
  });
}
