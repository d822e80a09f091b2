// Join tokens on disk: pki/tokens/<sha256(token)>.json holds the service it is
// bound to and its expiry, never the token itself. Redemption is a rename to
// `.used`, which the filesystem lets exactly one process win, so a token is
// single-use even with `ca token` and `ca serve` in different processes.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, renameSync, statSync, unlinkSync, existsSync } from 'node:fs';
import path from 'node:path';
import { GatehouseError } from '../../shared/errors.ts';
import { createOnce } from './files.ts';

export const TOKEN_PREFIX = 'ghjt_';
const TOKEN = /^ghjt_[A-Za-z0-9_-]{43}$/;

export interface JoinTokenRecord {
  service: string;
  spiffeId: string;
  createdAt: string;
  expiresAt: string;
}

export function newTokenSecret(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

function fileOf(dir: string, token: string): string {
  return path.join(dir, createHash('sha256').update(token).digest('hex'));
}

/**
 * Stores the record of a new token, whole or not at all (a failure throws a
 * StateWriteError naming the tokens folder, and the token must not be handed out).
 */
export function storeToken(dir: string, token: string, record: JoinTokenRecord): void {
  const label = `a join token record in ${dir}`;
  if (!createOnce(fileOf(dir, token) + '.json', JSON.stringify(record) + '\n', 0o600, label))
    throw new Error(`cannot write ${label}: that token exists already`);
}

/** Deletes expired tokens, and used markers and temporary files (a crash mid-write) older than a day. */
export function sweepTokens(dir: string, now: number): void {
  for (const f of readdirSync(dir)) {
    const file = path.join(dir, f);
    try {
      if (f.endsWith('.json')) {
        const r = JSON.parse(readFileSync(file, 'utf8')) as JoinTokenRecord;
        if (Date.parse(r.expiresAt) < now) unlinkSync(file);
      } else if ((f.endsWith('.used') || f.endsWith('.tmp')) && statSync(file).mtimeMs < now - 86_400_000) unlinkSync(file);
    } catch {
      // a file another process just consumed or swept
    }
  }
}

export interface PendingRedemption {
  record: JoinTokenRecord;
  /** Marks the token used; throws token_invalid when another request won the race. */
  consume(): void;
}

/**
 * Checks `token` for `service` without consuming it: a refused attempt (wrong
 * service, expired, malformed) changes nothing.
 */
export function lookupToken(dir: string, token: unknown, service: string, now: number): PendingRedemption {
  if (typeof token !== 'string' || !TOKEN.test(token)) throw new GatehouseError('token_invalid', 'the join token is not valid');
  const base = fileOf(dir, token);
  let record: JoinTokenRecord;
  try {
    record = JSON.parse(readFileSync(base + '.json', 'utf8')) as JoinTokenRecord;
  } catch (error) {
    const reused = existsSync(base + '.used');
    throw new GatehouseError('token_invalid', 'the join token is not valid', {
      cause: reused ? new Error('join token already used') : error,
    });
  }
  if (!(Date.parse(record.expiresAt) > now)) throw new GatehouseError('token_expired', 'the join token has expired');
  if (record.service !== service)
    throw new GatehouseError('token_wrong_service', 'the join token is for another service');
  return {
    record,
    consume() {
      try {
        renameSync(base + '.json', base + '.used');
      } catch (error) {
        throw new GatehouseError('token_invalid', 'the join token is not valid', { cause: new Error('join token already used', { cause: error }) });
      }
    },
  };
}
