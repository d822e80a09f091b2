// Partner API keys of a zone: `gh_<prefix>_<secret>`. The prefix is public
// (lookup, logs); only a SHA-256 of the whole key is stored — the secret has
// 256 bits of entropy, so a slow hash would add nothing. Kept in SQLite in the
// state dir; the gateway re-reads the table every few seconds, so a revoked
// key stops working within that bound without a restart.
import { DatabaseSync } from 'node:sqlite';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdirSync, openSync, closeSync, chmodSync } from 'node:fs';
import path from 'node:path';

export interface ApiKeyRecord {
  prefix: string;
  consumer: string;
  scopes: string[];
  tier: string | undefined;
  createdAt: number;
  revokedAt: number | undefined;
}

const KEY = /^gh_([a-z0-9]{8})_([A-Za-z0-9_-]{43})$/;
const CONSUMER = /^[a-z][a-z0-9-]{0,62}$/;

export function apiKeyDbPath(stateDir: string, zone: string): string {
  return path.join(stateDir, 'gateway', zone, 'api-keys.db');
}

function open(stateDir: string, zone: string): DatabaseSync {
  const file = apiKeyDbPath(stateDir, zone);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // owner-only: SQLite gives its -wal and -shm files the database file's mode
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
  const db = new DatabaseSync(file);
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS api_keys (
      prefix TEXT PRIMARY KEY, hash BLOB NOT NULL, consumer TEXT NOT NULL, scopes TEXT NOT NULL,
      tier TEXT, created_at INTEGER NOT NULL, revoked_at INTEGER)`);
  return db;
}

const hashOf = (key: string) => createHash('sha256').update(key).digest();

export function addApiKey(
  stateDir: string,
  zone: string,
  o: { consumer: string; scopes: string[]; tier?: string; now?: number },
): { key: string; prefix: string } {
  if (!CONSUMER.test(o.consumer)) throw new Error('consumer must be lowercase letters, digits and -');
  const db = open(stateDir, zone);
  try {
    const prefix = randomBytes(5).toString('hex').slice(0, 8).replace(/[^a-z0-9]/g, '0');
    const key = `gh_${prefix}_${randomBytes(32).toString('base64url')}`;
    db.prepare('INSERT INTO api_keys (prefix, hash, consumer, scopes, tier, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(
      prefix,
      hashOf(key),
      o.consumer,
      o.scopes.join(' '),
      o.tier ?? null,
      o.now ?? Date.now(),
    );
    return { key, prefix };
  } finally {
    db.close();
  }
}

export function revokeApiKey(stateDir: string, zone: string, prefix: string, now = Date.now()): boolean {
  const db = open(stateDir, zone);
  try {
    return Number(db.prepare('UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL').run(now, prefix).changes) === 1;
  } finally {
    db.close();
  }
}

export function listApiKeys(stateDir: string, zone: string): ApiKeyRecord[] {
  const db = open(stateDir, zone);
  try {
    return (db.prepare('SELECT prefix, consumer, scopes, tier, created_at, revoked_at FROM api_keys ORDER BY created_at').all() as Record<string, unknown>[]).map(
      (r) => ({
        prefix: String(r.prefix),
        consumer: String(r.consumer),
        scopes: String(r.scopes).split(' ').filter(Boolean),
        tier: r.tier === null ? undefined : String(r.tier),
        createdAt: Number(r.created_at),
        revokedAt: r.revoked_at === null ? undefined : Number(r.revoked_at),
      }),
    );
  } finally {
    db.close();
  }
}

export interface ApiKeyVerifier {
  /** The consumer of a valid, unrevoked key; undefined otherwise. */
  verify(key: string): ApiKeyRecord | undefined;
  close(): void;
}

/** An in-memory view of the table, re-read every `refreshMs`. */
export function openApiKeyVerifier(stateDir: string, zone: string, refreshMs = 2_000): ApiKeyVerifier {
  let byPrefix = new Map<string, { hash: Buffer; record: ApiKeyRecord }>();
  const reload = () => {
    const db = open(stateDir, zone);
    try {
      const next = new Map<string, { hash: Buffer; record: ApiKeyRecord }>();
      for (const r of db.prepare('SELECT prefix, hash, consumer, scopes, tier, created_at FROM api_keys WHERE revoked_at IS NULL').all() as Record<string, unknown>[])
        next.set(String(r.prefix), {
          hash: Buffer.from(r.hash as Uint8Array),
          record: {
            prefix: String(r.prefix),
            consumer: String(r.consumer),
            scopes: String(r.scopes).split(' ').filter(Boolean),
            tier: r.tier === null ? undefined : String(r.tier),
            createdAt: Number(r.created_at),
            revokedAt: undefined,
          },
        });
      byPrefix = next;
    } finally {
      db.close();
    }
  };
  reload();
  const timer = setInterval(() => {
    try {
      reload();
    } catch {
      // keep the last good view; a broken table never opens access
    }
  }, refreshMs);
  timer.unref();
  return {
    verify(key) {
      const m = KEY.exec(key);
      if (!m) return undefined;
      const entry = byPrefix.get(m[1]);
      if (!entry) return undefined;
      return timingSafeEqual(entry.hash, hashOf(key)) ? entry.record : undefined;
    },
    close: () => clearInterval(timer),
  };
}
