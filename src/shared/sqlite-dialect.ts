// Kysely over the built-in `node:sqlite` (DatabaseSync). Kysely's SqliteDialect
// takes any object with prepare()/close(); this adapts node:sqlite to it and
// keeps a small cache of prepared statements, since the request path runs the
// same few statements over and over.
import { chmodSync } from 'node:fs';
import { DatabaseSync, type StatementSync, type SQLInputValue } from 'node:sqlite';
import { SqliteDialect, type SqliteDatabase, type SqliteStatement } from 'kysely';

const CACHE_MAX = 256;

function bind(parameters: ReadonlyArray<unknown>): SQLInputValue[] {
  // node:sqlite refuses booleans and undefined; SQLite has neither.
  return parameters.map((p) => (p === true ? 1 : p === false ? 0 : p === undefined ? null : (p as SQLInputValue)));
}

export class NodeSqliteDatabase implements SqliteDatabase {
  readonly raw: DatabaseSync;
  readonly #cache = new Map<string, { stmt: StatementSync; reader: boolean }>();

  constructor(file: string) {
    this.raw = new DatabaseSync(file, { timeout: 5_000 });
    // holds hashes and sealed keys: owner only (the WAL files inherit this mode)
    if (file !== ':memory:') chmodSync(file, 0o600);
    // WAL: readers do not block the writer, and the admin CLI can write while
    // the authority runs. synchronous=NORMAL is durable across process crashes.
    this.raw.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;');
  }

  prepare(sql: string): SqliteStatement {
    let entry = this.#cache.get(sql);
    if (!entry) {
      const stmt = this.raw.prepare(sql);
      entry = { stmt, reader: stmt.columns().length > 0 };
      if (this.#cache.size >= CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value as string);
      this.#cache.set(sql, entry);
    }
    const { stmt, reader } = entry;
    return {
      reader,
      all: (p) => stmt.all(...bind(p)),
      run: (p) => {
        const r = stmt.run(...bind(p));
        return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
      },
      iterate: (p) => stmt.iterate(...bind(p)),
    };
  }

  close(): void {
    this.#cache.clear();
    if (this.raw.isOpen) this.raw.close();
  }
}

export function nodeSqliteDialect(file: string): { dialect: SqliteDialect; database: NodeSqliteDatabase } {
  const database = new NodeSqliteDatabase(file);
  return { dialect: new SqliteDialect({ database }), database };
}
