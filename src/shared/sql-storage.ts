// The one way a component opens its SQL store: SQLite (node:sqlite, a 0600
// file) by default, PostgreSQL when the configuration gives a postgres:// URL.
// Used by the authority and the vault; each runs its own migrations after.
import { Kysely, PostgresDialect } from 'kysely';
import { nodeSqliteDialect } from './sqlite-dialect.ts';

export interface SqlStorage<DB> {
  db: Kysely<DB>;
  kind: 'sqlite' | 'postgres';
  /** PostgreSQL only: the schema the tables live in (`public` when the URL names none). */
  schema?: string;
  close(): Promise<void>;
}

/**
 * `storage` is `sqlite` (the file `sqliteFile`) or a postgres:// URL. `schema`
 * (a gatehouse-only query parameter of the URL) puts the tables in that
 * PostgreSQL schema, created when missing; absent: `public`.
 */
export async function openSqlStorage<DB>(storage: string, sqliteFile: string): Promise<SqlStorage<DB>> {
  if (storage === 'sqlite') {
    const { dialect } = nodeSqliteDialect(sqliteFile);
    const db = new Kysely<DB>({ dialect });
    return { db, kind: 'sqlite', close: () => db.destroy() };
  }
  const url = new URL(storage);
  const schema = url.searchParams.get('schema');
  url.searchParams.delete('schema');
  if (schema !== null && !/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new Error('storage: schema must be a lowercase SQL identifier');
  // loaded here: only a PostgreSQL store needs the driver
  const { default: pg } = await import('pg');
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
    try {
      const c = await pool.connect();
      try {
        await c.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      } finally {
        c.release();
      }
    } catch (error) {
      await pool.end();
      throw error;
    }
  }
  const db = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) });
  return { db, kind: 'postgres', schema: schema ?? 'public', close: () => db.destroy() };
}
