// Security events as the control plane keeps them: SQLite in
// <stateDir>/control/events.db (0600), one row per event id (a retried batch
// is stored once), pruned past the topology's retention.
import { DatabaseSync } from 'node:sqlite';
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../shared/clock.ts';
import type { EventType, SecurityEvent } from './event.ts';

export interface EventQuery {
  /** Received at or after (ms since the epoch). */
  since: number;
  type?: EventType;
  /** At most this many, the newest ones (default 1000, at most 10000). */
  limit?: number;
}

export interface EventStore {
  /** Stores what is new; answers how many were (a known id is skipped). */
  add(events: readonly SecurityEvent[]): number;
  /** Newest last. */
  query(q: EventQuery): SecurityEvent[];
  /** Drops events received before `before` (ms); answers how many. */
  prune(before: number): number;
  close(): void;
}

export function openEventStore(stateDir: string, clock: Clock): EventStore {
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
    add(events) {
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
    query(q) {
      const limit = Math.min(Math.max(q.limit ?? 1000, 1), 10_000);
      const rows = (q.type ? byType.all(q.since, q.type, limit) : byTime.all(q.since, limit)) as { body: string }[];
      return rows.map((r) => JSON.parse(r.body) as SecurityEvent).reverse();
    },
    prune: (before) => Number(prune.run(Math.min(before, clock.now())).changes),
    close: () => db.close(),
  };
}
