// Brute-force throttling. Each key (an account, an account+source, a source)
// has a budget: `maxFailures` failures lock the key for `lockoutSeconds`; on
// keys checked with `delays`, every failure also makes the next attempt wait
// longer (1 s, 2 s, 4 s … 30 s). Shared keys (a whole source address, an
// account across every source) only lock, so nobody can slow others down.
// Password and one-time-code failures count against separate keys, so OTP
// guesses never lock the password step, and OTP guesses from one source lock
// that source long before they lock the account everywhere.
import type { Kysely } from 'kysely';
import type { Database } from './db/schema.ts';

export interface Budget {
  maxFailures: number;
  lockoutSeconds: number;
}

export type ThrottleVerdict =
  | { allowed: true }
  | { allowed: false; reason: 'locked' | 'slow_down'; retryAfterSec: number; key: string };

const MAX_DELAY_MS = 30_000;

export function delayAfter(failures: number): number {
  return failures <= 0 ? 0 : Math.min(1000 * 2 ** (failures - 1), MAX_DELAY_MS);
}

export class Throttle {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;

  constructor(db: Kysely<Database>, now: () => number) {
    this.#db = db;
    this.#now = now;
  }

  async #row(key: string) {
    return this.#db.selectFrom('throttle').selectAll().where('key', '=', key).executeTakeFirst();
  }

  /** May an attempt go ahead on every one of these keys? */
  async check(keys: { key: string; budget: Budget; delays?: boolean }[]): Promise<ThrottleVerdict> {
    const now = this.#now();
    for (const { key, budget, delays = true } of keys) {
      const r = await this.#row(key);
      if (!r) continue;
      const lockedUntil = Number(r.locked_until);
      if (lockedUntil > now) return { allowed: false, reason: 'locked', retryAfterSec: Math.ceil((lockedUntil - now) / 1000), key };
      if (lockedUntil !== 0) continue; // a lockout that ended: the next failure starts afresh
      if (now - Number(r.last_failure) > budget.lockoutSeconds * 1000) continue; // failures aged out
      if (!delays) continue;
      const next = Number(r.last_failure) + delayAfter(Number(r.failures));
      if (next > now) return { allowed: false, reason: 'slow_down', retryAfterSec: Math.ceil((next - now) / 1000), key };
    }
    return { allowed: true };
  }

  /** Records a failure; returns the lockout end when this failure locked the key. */
  async fail(key: string, budget: Budget): Promise<number | undefined> {
    const now = this.#now();
    const r = await this.#row(key);
    const stale =
      !r ||
      (Number(r.locked_until) !== 0 && Number(r.locked_until) <= now) ||
      now - Number(r.last_failure) > budget.lockoutSeconds * 1000;
    const failures = stale ? 1 : Number(r.failures) + 1;
    const lockedUntil = failures >= budget.maxFailures ? now + budget.lockoutSeconds * 1000 : 0;
    await this.#db
      .insertInto('throttle')
      .values({ key, failures, last_failure: now, locked_until: lockedUntil })
      .onConflict((oc) => oc.column('key').doUpdateSet({ failures, last_failure: now, locked_until: lockedUntil }))
      .execute();
    return lockedUntil || undefined;
  }

  async reset(key: string): Promise<void> {
    await this.#db.deleteFrom('throttle').where('key', '=', key).execute();
  }
}
