// Opens the authority's database: SQLite in the zone's state dir, or
// PostgreSQL when the zone says `storage: postgres://…`. Migrations run here.
import path from 'node:path';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';
import { nodeSqliteDialect } from './sqlite-dialect.ts';
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
  if (storage === 'sqlite') {
    const { dialect } = nodeSqliteDialect(path.join(zoneDir, 'authority.sqlite'));
    const db = new Kysely<Database>({ dialect });
    await migrate(db);
    return { db, kind: 'sqlite', close: () => db.destroy() };
  }
  const url = new URL(storage);
  const schema = url.searchParams.get('schema');
  url.searchParams.delete('schema');
  if (schema !== null && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error('storage: schema must be a lowercase SQL identifier');
  const int8 = 20;
  const pool = new pg.Pool({
    connectionString: url.toString(),
    max: 10,
    options: schema ? `-c search_path=${schema}` : undefined,
    // BIGINT columns hold epoch milliseconds, which fit a JS number.
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === int8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  if (schema) {
    const c = await pool.connect();
    try {
      await c.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    } finally {
      c.release();
    }
  }
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  try {
    await migrate(db, { postgres: { schema: schema ?? 'public' } });
  } catch (error) {
    await db.destroy(); // nothing keeps the process alive after a failed start
    throw error;
  }
  return { db, kind: 'postgres', close: () => db.destroy() };
}
