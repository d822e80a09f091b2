// Brute-force throttling. Each key (an account, an account+source, a source)
// has a budget: `maxFailures` failures lock the key for `lockoutSeconds`; on
// keys checked with `delays`, every failure also makes the next attempt wait
// longer (1 s, 2 s, 4 s … 30 s). Shared keys (a whole source address, an
// account across every source) only lock, so nobody can slow others down.
// Password and one-time-code failures count against separate keys, so OTP
// guesses never lock the password step, and OTP guesses from one source lock
// that source long before they lock the account everywhere.
//
// An attempt is charged *before* its slow check, never after: `reserve`
// counts it as a failure on every key at once (one transaction, rows locked
// in key order on PostgreSQL, so two instances sharing the database see one
// count), and only a success gives the charge back (`refund`, `reset`). So
// guesses sent in parallel cannot all pass a check made before any of them
// failed: while one is being checked it already counts, and a delayed key
// lets one attempt at a time through.
import type { Kysely } from 'kysely';
import type { Database } from './db/schema.ts';

export interface Budget {
  maxFailures: number;
  lockoutSeconds: number;
}

export interface Charge {
  key: string;
  budget: Budget;
  /** the growing delay applies (default true); false: the key only locks */
  delays?: boolean;
}

export type ThrottleDenial = { allowed: false; reason: 'locked' | 'slow_down'; retryAfterSec: number; key: string };

/** An attempt that may go ahead; it counts as a failure until refunded. */
export interface Reservation {
  allowed: true;
  /** keys this attempt locks if it fails (it was the last one the budget allowed), with the lockout end */
  locks: { key: string; until: number }[];
}

export type ThrottleVerdict = Reservation | ThrottleDenial;

const MAX_DELAY_MS = 30_000;

export function delayAfter(failures: number): number {
  return failures <= 0 ? 0 : Math.min(1000 * 2 ** (failures - 1), MAX_DELAY_MS);
}

export class Throttle {
  readonly #db: Kysely<Database>;
  readonly #now: () => number;
  readonly #rowLocks: boolean;

  /** `kind` postgres: rows are locked (SELECT … FOR UPDATE); SQLite serializes writers itself. */
  constructor(db: Kysely<Database>, now: () => number, kind: 'sqlite' | 'postgres' = 'sqlite') {
    this.#db = db;
    this.#now = now;
    this.#rowLocks = kind === 'postgres';
  }

  /**
   * Charges one failure to every key, atomically, if each allows another
   * attempt now; otherwise charges nothing and says why.
   */
  async reserve(charges: Charge[]): Promise<ThrottleVerdict> {
    const sorted = [...new Map(charges.map((c) => [c.key, c])).values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    if (sorted.length === 0) return { allowed: true, locks: [] };
    return this.#db.transaction().execute(async (trx) => {
      const now = this.#now();
      // rows must exist to be locked; an empty row reads as "no failures"
      await trx
        .insertInto('throttle')
        .values(sorted.map((c) => ({ key: c.key, failures: 0, last_failure: 0, locked_until: 0 })))
        .onConflict((oc) => oc.column('key').doNothing())
        .execute();
      let q = trx
        .selectFrom('throttle')
        .selectAll()
        .where('key', 'in', sorted.map((c) => c.key))
        .orderBy('key');
      if (this.#rowLocks) q = q.forUpdate();
      const rows = new Map((await q.execute()).map((r) => [r.key, r]));
      const next: { key: string; failures: number; lockedUntil: number }[] = [];
      for (const { key, budget, delays = true } of sorted) {
        const r = rows.get(key);
        const lockedUntil = Number(r?.locked_until ?? 0);
        const last = Number(r?.last_failure ?? 0);
        if (lockedUntil > now) return { allowed: false, reason: 'locked', retryAfterSec: Math.ceil((lockedUntil - now) / 1000), key } as const;
        // a lockout that ended, or failures older than the lockout window: start afresh
        const fresh = lockedUntil === 0 && now - last <= budget.lockoutSeconds * 1000;
        const failures = fresh ? Number(r?.failures ?? 0) : 0;
        if (failures >= budget.maxFailures)
          return { allowed: false, reason: 'locked', retryAfterSec: Math.max(1, Math.ceil((last + budget.lockoutSeconds * 1000 - now) / 1000)), key } as const;
        if (delays && failures > 0) {
          const at = last + delayAfter(failures);
          if (at > now) return { allowed: false, reason: 'slow_down', retryAfterSec: Math.ceil((at - now) / 1000), key } as const;
        }
        const charged = failures + 1;
        next.push({ key, failures: charged, lockedUntil: charged >= budget.maxFailures ? now + budget.lockoutSeconds * 1000 : 0 });
      }
      for (const n of next)
        await trx.updateTable('throttle').set({ failures: n.failures, last_failure: now, locked_until: n.lockedUntil }).where('key', '=', n.key).execute();
      return { allowed: true, locks: next.filter((n) => n.lockedUntil > 0).map((n) => ({ key: n.key, until: n.lockedUntil })) } as const;
    });
  }

  /** Gives back one charge of a reservation that succeeded (and the lock it may have set). */
  async refund(key: string, budget: Budget): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      let q = trx.selectFrom('throttle').selectAll().where('key', '=', key);
      if (this.#rowLocks) q = q.forUpdate();
      const r = await q.executeTakeFirst();
      if (!r) return;
      const failures = Math.max(0, Number(r.failures) - 1);
      const lockedUntil = failures < budget.maxFailures ? 0 : Number(r.locked_until);
      await trx.updateTable('throttle').set({ failures, locked_until: lockedUntil }).where('key', '=', key).execute();
    });
  }

  /** Forgets every failure of a key (a success on the account's own key). */
  async reset(key: string): Promise<void> {
    await this.#db.deleteFrom('throttle').where('key', '=', key).execute();
  }
}
