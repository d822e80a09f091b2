// Opens the authority's database: SQLite in the zone's state dir, or
// PostgreSQL when the zone says `storage: postgres://…` (shared/sql-storage.ts).
// Migrations run here.
import path from 'node:path';
import type { Kysely } from 'kysely';
import type { Database } from './schema.ts';
import { openSqlStorage } from '../../shared/sql-storage.ts';
import { migrate } from './migrations.ts';

export interface AuthorityDb {
  db: Kysely<Database>;
  kind: 'sqlite' | 'postgres';
  close(): Promise<void>;
}

/**
 * `schema` (a gatehouse-only query parameter of the postgres URL) puts the
 * tables in that PostgreSQL schema, created when missing; absent: `public`.
 */
export async function openDatabase(storage: string, zoneDir: string): Promise<AuthorityDb> {
  const s = await openSqlStorage<Database>(storage, path.join(zoneDir, 'authority.sqlite'));
  try {
    await migrate(s.db, s.kind === 'postgres' ? { postgres: { schema: s.schema! } } : {});
  } catch (error) {
    await s.close(); // nothing keeps the process alive after a failed start
    throw error;
  }
  return { db: s.db, kind: s.kind, close: s.close };
}
