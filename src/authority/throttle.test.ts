import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Kysely } from 'kysely';
import { nodeSqliteDialect } from '../shared/sqlite-dialect.ts';
import { migrate } from './db/migrations.ts';
import type { Database } from './db/schema.ts';
import { Throttle, delayAfter, type ThrottleVerdict } from './throttle.ts';
import { frozenClock } from '../shared/clock.ts';

/** Why the throttle refused, or undefined when it allowed. */
const denialOf = (v: ThrottleVerdict) => (v.allowed ? undefined : v.reason);

async function setup() {
  const db = new Kysely<Database>({ dialect: nodeSqliteDialect(':memory:').dialect });
  await migrate(db);
  const clock = frozenClock();
  return { db, clock, throttle: new Throttle(db, () => clock.now()) };
}

test('delays grow 1 s, 2 s, 4 s … and stop at 30 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 9].map(delayAfter), [0, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
});

test('an attempt counts as a failure from its reservation: the next waits, the budget locks, the lock ends', async () => {
  const { db, clock, throttle } = await setup();
  const budget = { maxFailures: 3, lockoutSeconds: 60 };
  const keys = [{ key: 'pwd:a', budget }];
  assert.deepEqual(await throttle.reserve(keys), { allowed: true, locks: [] });
  assert.deepEqual(await throttle.reserve(keys), { allowed: false, reason: 'slow_down', retryAfterSec: 1, key: 'pwd:a' }, 'one attempt at a time');
  clock.advance(1000);
  assert.equal((await throttle.reserve(keys)).allowed, true);
  clock.advance(1000);
  assert.deepEqual(await throttle.reserve(keys), { allowed: false, reason: 'slow_down', retryAfterSec: 1, key: 'pwd:a' });
  clock.advance(1000);
  const third = await throttle.reserve(keys);
  assert.deepEqual(third, { allowed: true, locks: [{ key: 'pwd:a', until: clock.now() + 60_000 }] }, 'the last attempt the budget allows');
  clock.advance(30_000);
  assert.equal(denialOf(await throttle.reserve(keys)), 'locked');
  clock.advance(31_000);
  assert.deepEqual(await throttle.reserve(keys), { allowed: true, locks: [] }, 'a new attempt after the lockout starts afresh');
  await db.destroy();
});

test('a refund gives the charge (and the lock it set) back', async () => {
  const { db, throttle } = await setup();
  const budget = { maxFailures: 2, lockoutSeconds: 60 };
  const keys = [{ key: 'src:x', budget, delays: false }];
  assert.equal((await throttle.reserve(keys)).allowed, true);
  const second = await throttle.reserve(keys);
  assert.equal(second.allowed && second.locks.length, 1);
  assert.equal(denialOf(await throttle.reserve(keys)), 'locked');
  await throttle.refund('src:x', budget);
  assert.equal((await throttle.reserve(keys)).allowed, true, 'one failure left: open again');
  await db.destroy();
});

test('keys are charged together or not at all', async () => {
  const { db, throttle } = await setup();
  const small = { maxFailures: 1, lockoutSeconds: 60 };
  const big = { maxFailures: 10, lockoutSeconds: 60 };
  assert.equal((await throttle.reserve([{ key: 'b', budget: small, delays: false }])).allowed, true);
  const denied = await throttle.reserve([{ key: 'a', budget: big, delays: false }, { key: 'b', budget: small, delays: false }]);
  assert.equal(denied.allowed, false);
  const row = await db.selectFrom('throttle').selectAll().where('key', '=', 'a').executeTakeFirst();
  assert.equal(Number(row?.failures ?? 0), 0, 'the refused attempt charged nothing to the other key');
  await db.destroy();
});

test('parallel reservations: exactly the budget goes through', async () => {
  const { db, throttle } = await setup();
  const budget = { maxFailures: 5, lockoutSeconds: 60 };
  const results = await Promise.all(Array.from({ length: 50 }, () => throttle.reserve([{ key: 'src:y', budget, delays: false }])));
  assert.equal(results.filter((r) => r.allowed).length, 5);
  await db.destroy();
});
