// Security events as the control plane keeps them, one row per event id (a
// retried batch is stored once), pruned past the topology's retention:
//   sqlite (the default)  <stateDir>/control/events.db (0600, node:sqlite)
//   postgres://…          a table security_events (monitor.storage), shared by
//                         the control plane's replicas; `?schema=NAME` puts it
//                         in that schema (created when missing)
// Both answer the same queries: newest last, by receive time, optionally one type.
import { DatabaseSync } from 'node:sqlite';
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Generated } from 'kysely';
import type { Clock } from '../shared/clock.ts';
import { openSqlStorage } from '../shared/sql-storage.ts';
import type { EventType, SecurityEvent } from './event.ts';

export interface EventQuery {
  /** Received at or after (ms since the epoch). */
  since: number;
  type?: EventType;
  /** At most this many, the newest ones (default 1000, at most 10000). */
  limit?: number;
}

export interface EventStore {
  kind: 'sqlite' | 'postgres';
  /** Stores what is new; answers how many were (a known id is skipped). */
  add(events: readonly SecurityEvent[]): Promise<number>;
  /** Newest last. */
  query(q: EventQuery): Promise<SecurityEvent[]>;
  /** Drops events received before `before` (ms, never in the future); answers how many. */
  prune(before: number): Promise<number>;
  close(): Promise<void>;
}

export interface OpenEventStoreOptions {
  stateDir: string;
  clock: Clock;
  /** 'sqlite' (absent) or a postgres:// URL. */
  storage?: string;
}

const limitOf = (q: EventQuery) => Math.min(Math.max(q.limit ?? 1000, 1), 10_000);

export async function openEventStore(o: OpenEventStoreOptions): Promise<EventStore> {
  const storage = o.storage ?? 'sqlite';
  return storage === 'sqlite' ? openSqliteStore(o.stateDir, o.clock) : openPostgresStore(storage, o.clock);
}

function openSqliteStore(stateDir: string, clock: Clock): EventStore {
  const dir = path.resolve(stateDir, 'control');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'events.db');
  const db = new DatabaseSync(file);
  chmodSync(file, 0o600);
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, received INTEGER NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS events_received ON events (received);`);
  const insert = db.prepare('INSERT OR IGNORE INTO events (id, received, type, body) VALUES (?, ?, ?, ?)');
  const byTime = db.prepare('SELECT body FROM events WHERE received >= ? ORDER BY received DESC, rowid DESC LIMIT ?');
  const byType = db.prepare('SELECT body FROM events WHERE received >= ? AND type = ? ORDER BY received DESC, rowid DESC LIMIT ?');
  const prune = db.prepare('DELETE FROM events WHERE received < ?');
  return {
    kind: 'sqlite',
    async add(events) {
      let added = 0;
      db.exec('BEGIN');
      try {
        for (const e of events) added += Number(insert.run(e.id, Date.parse(e.received), e.type, JSON.stringify(e)).changes);
        db.exec('COMMIT');
      } catch (error) {
        db.exec('ROLLBACK');
        throw error;
      }
      return added;
    },
    async query(q) {
      const limit = limitOf(q);
      const rows = (q.type ? byType.all(q.since, q.type, limit) : byTime.all(q.since, limit)) as { body: string }[];
      return rows.map((r) => JSON.parse(r.body) as SecurityEvent).reverse();
    },
    prune: async (before) => Number(prune.run(Math.min(before, clock.now())).changes),
    close: async () => db.close(),
  };
}

interface EventsDb {
  security_events: { seq: Generated<number>; id: string; received: number; type: string; body: string };
}

async function openPostgresStore(url: string, clock: Clock): Promise<EventStore> {
  // the SQLite file argument is never used for a postgres:// URL
  const { db, close } = await openSqlStorage<EventsDb>(url, '');
  try {
    await db.schema
      .createTable('security_events')
      .ifNotExists()
      .addColumn('seq', 'bigserial', (c) => c.primaryKey())
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('received', 'bigint', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('body', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('security_events_received').ifNotExists().on('security_events').columns(['received', 'seq']).execute();
  } catch (error) {
    await close();
    throw error;
  }
  return {
    kind: 'postgres',
    async add(events) {
      if (events.length === 0) return 0;
      const rows = await db
        .insertInto('security_events')
        .values(events.map((e) => ({ id: e.id, received: Date.parse(e.received), type: e.type, body: JSON.stringify(e) })))
        .onConflict((oc) => oc.column('id').doNothing())
        .returning('id')
        .execute();
      return rows.length;
    },
    async query(q) {
      let s = db.selectFrom('security_events').select('body').where('received', '>=', q.since);
      if (q.type) s = s.where('type', '=', q.type);
      const rows = await s.orderBy('received', 'desc').orderBy('seq', 'desc').limit(limitOf(q)).execute();
      return rows.map((r) => JSON.parse(r.body) as SecurityEvent).reverse();
    },
    async prune(before) {
      const r = await db.deleteFrom('security_events').where('received', '<', Math.min(before, clock.now())).executeTakeFirst();
      return Number(r.numDeletedRows);
    },
    close,
  };
}

