// `gatehouse vault rewrap --key K` over a table: every ciphertext of a column
// re-encrypted under the key's newest version, the plaintext never leaving the
// vault's memory. Rows are read in id order in pages; each row is updated only
// if its column still holds the ciphertext read (compare-and-set), so a run
// killed at any point (kill -9) leaves every row either as it was or rewrapped,
// and a rerun skips what is done: no row lost, none encrypted twice.
import { sql } from 'kysely';
import { openSqlStorage } from '../shared/sql-storage.ts';
import { GatehouseError } from '../shared/errors.ts';
import { parseCiphertext, STRING_PREFIX } from './lib/ciphertext.ts';
import type { Vault } from './open-vault.ts';

export interface RewrapTableOptions {
  key: string;
  /** A SQLite file or a postgres:// URL (optional ?schema=). */
  db: string;
  table: string;
  column: string;
  /** The primary key column (default id). */
  idColumn?: string;
  /** Each row's context, with {table}, {column} and {id} filled in (default `{table}/{id}/{column}`, as encryptFields makes it). */
  context?: string;
  /** Rows per page (default 500). */
  pageSize?: number;
  onProgress?(done: number, total: number): void;
}

export interface RewrapTableResult {
  /** rows read */
  rows: number;
  rewrapped: number;
  /** already under the newest version */
  current: number;
  /** not a vault ciphertext (NULL, plain text): left as they are */
  other: number;
  /** refused by the vault (wrong context, retired version …): left as they are, by id */
  failed: { id: string; code: string }[];
  /** changed by someone else between read and write: left to them */
  raced: number;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export async function rewrapTable(vault: Vault, o: RewrapTableOptions): Promise<RewrapTableResult> {
  const idColumn = o.idColumn ?? 'id';
  for (const [what, v] of [['table', o.table], ['column', o.column], ['id column', idColumn]] as const)
    if (!IDENT.test(v)) throw new GatehouseError('bad_request', `the ${what} must be a plain SQL identifier`);
  const template = o.context ?? '{table}/{id}/{column}';
  const pageSize = o.pageSize ?? 500;
  const latest = (await vault.keyInfo(o.key)).latest;
  const store = /^postgres(ql)?:\/\//.test(o.db) ? await openSqlStorage<any>(o.db, '') : await openSqlStorage<any>('sqlite', o.db);
  const { db } = store;
  const t = sql.table(o.table);
  const c = sql.ref(o.column);
  const idc = sql.ref(idColumn);
  const result: RewrapTableResult = { rows: 0, rewrapped: 0, current: 0, other: 0, failed: [], raced: 0 };
  try {
    const total = Number((await sql<{ n: number }>`select count(*) as n from ${t}`.execute(db)).rows[0].n);
    let last: unknown;
    for (;;) {
      const page = (
        last === undefined
          ? await sql<{ id: unknown; value: unknown }>`select ${idc} as id, ${c} as value from ${t} order by ${idc} limit ${pageSize}`.execute(db)
          : await sql<{ id: unknown; value: unknown }>`select ${idc} as id, ${c} as value from ${t} where ${idc} > ${last} order by ${idc} limit ${pageSize}`.execute(db)
      ).rows;
      if (page.length === 0) break;
      for (const row of page) {
        result.rows++;
        const value = row.value;
        if (typeof value !== 'string' || !value.startsWith(STRING_PREFIX)) {
          result.other++;
          continue;
        }
        let version: number;
        let keyName: string;
        try {
          ({ version, keyName } = parseCiphertext(value));
        } catch {
          result.failed.push({ id: String(row.id), code: 'vault_ciphertext_malformed' });
          continue;
        }
        if (keyName !== o.key) {
          result.other++;
          continue;
        }
        if (version >= latest) {
          result.current++;
          continue;
        }
        const context = template.replaceAll('{table}', o.table).replaceAll('{column}', o.column).replaceAll('{id}', String(row.id));
        let next: string;
        try {
          next = await vault.rewrap(o.key, value, context);
        } catch (error) {
          result.failed.push({ id: String(row.id), code: error instanceof GatehouseError ? error.code : 'internal' });
          continue;
        }
        const r = await sql`update ${t} set ${c} = ${next} where ${idc} = ${row.id} and ${c} = ${value}`.execute(db);
        if (Number(r.numAffectedRows ?? 0) === 1) result.rewrapped++;
        else result.raced++;
      }
      last = page[page.length - 1].id;
      o.onProgress?.(result.rows, total);
    }
  } finally {
    await store.close();
  }
  return result;
}
