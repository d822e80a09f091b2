// The vault's store: key metadata, key versions and hash keys (sealed under
// the master key), tokens (their values sealed under the token key's newest
// version). SQLite by default, PostgreSQL when configured, opened like the
// authority's (shared/sql-storage.ts); the vault's own migration table.
import path from 'node:path';
import { mkdirSync } from 'node:fs';
import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration } from 'kysely/migration';
import { openSqlStorage } from '../../shared/sql-storage.ts';

export interface VaultTables {
  vault_meta: { name: string; value: string };
  vault_keys: {
    name: string;
    latest: number;
    min_decryption_version: number;
    token_format: string;
    deterministic: number;
    /** the deterministic-token hash key, sealed (base64url) */
    hash_key: string;
    created_at: number;
    updated_at: number;
  };
  vault_key_versions: { name: string; version: number; material: string; created_at: number };
  vault_tokens: {
    token: string;
    key_name: string;
    /** gh:v1: ciphertext of the value under the key, context `token:<key>:<token>` */
    value: string;
    /** deterministic keys only: keyed hash of the value (hex) */
    lookup: string | null;
    created_at: number;
    revoked_at: number | null;
  };
}

const migrations: Record<string, Migration> = {
  '0001_vault': {
    async up(db: Kysely<any>) {
      await db.schema.createTable('vault_meta').addColumn('name', 'varchar(64)', (c) => c.primaryKey()).addColumn('value', 'text', (c) => c.notNull()).execute();
      await db.schema
        .createTable('vault_keys')
        .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('latest', 'integer', (c) => c.notNull())
        .addColumn('min_decryption_version', 'integer', (c) => c.notNull())
        .addColumn('token_format', 'varchar(16)', (c) => c.notNull())
        .addColumn('deterministic', 'integer', (c) => c.notNull())
        .addColumn('hash_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('vault_key_versions')
        .addColumn('name', 'varchar(64)', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('material', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('vault_key_versions_pk', ['name', 'version'])
        .execute();
      await db.schema
        .createTable('vault_tokens')
        .addColumn('token', 'varchar(128)', (c) => c.primaryKey())
        .addColumn('key_name', 'varchar(64)', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addColumn('lookup', 'varchar(64)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('vault_tokens_lookup').unique().on('vault_tokens').columns(['key_name', 'lookup']).execute();
    },
  },
};

export interface VaultStore {
  db: Kysely<VaultTables>;
  kind: 'sqlite' | 'postgres';
  close(): Promise<void>;
}

/** Advisory lock id of the vault's PostgreSQL migrations (the authority's differs). */
const MIGRATION_LOCK = 0x67_68_76_31; // 'ghv1'

export async function openVaultStore(storage: string, stateDir: string): Promise<VaultStore> {
  const dir = path.resolve(stateDir, 'vault');
  if (storage === 'sqlite') mkdirSync(dir, { recursive: true, mode: 0o700 });
  const s = await openSqlStorage<VaultTables>(storage, path.join(dir, 'vault.sqlite'));
  const run = async (on: Kysely<any>) => {
    const migrator = new Migrator({
      db: on,
      provider: { getMigrations: async () => migrations },
      migrationTableName: 'gh_vault_migrations',
      migrationLockTableName: 'gh_vault_migrations_lock',
      migrationTableSchema: s.schema,
    });
    const { error } = await migrator.migrateToLatest();
    if (error) throw new Error('vault store migration failed', { cause: error });
  };
  try {
    if (s.kind === 'sqlite') await run(s.db);
    else
      await s.db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock(${MIGRATION_LOCK})`.execute(conn);
        try {
          await run(conn);
        } finally {
          await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.execute(conn);
        }
      });
  } catch (error) {
    await s.close();
    throw error;
  }
  return { db: s.db, kind: s.kind, close: s.close };
}
