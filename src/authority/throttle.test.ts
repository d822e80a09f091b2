import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Kysely } from 'kysely';
import { nodeSqliteDialect } from './db/sqlite-dialect.ts';
import { migrate } from './db/migrations.ts';
import type { Database } from './db/schema.ts';
import { Throttle, delayAfter } from './throttle.ts';
import { frozenClock } from '../shared/clock.ts';

async function setup() {
  const db = new Kysely<Database>({ dialect: nodeSqliteDialect(':memory:').dialect });
  await migrate(db);
  const clock = frozenClock();
  return { db, clock, throttle: new Throttle(db, () => clock.now()) };
}

test('delays grow 1 s, 2 s, 4 s … and stop at 30 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 9].map(delayAfter), [0, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
});

test('failures delay the next attempt, lock at the budget, and the lock ends', async () => {
  const { db, clock, throttle } = await setup();
  const budget = { maxFailures: 3, lockoutSeconds: 60 };
  const keys = [{ key: 'pwd:a', budget }];
  assert.deepEqual(await throttle.check(keys), { allowed: true });
  await throttle.fail('pwd:a', budget);
  assert.equal((await throttle.check(keys)).allowed, false);
  clock.advance(1000);
  assert.equal((await throttle.check(keys)).allowed, true);
  await throttle.fail('pwd:a', budget);
  clock.advance(1000);
  assert.deepEqual(await throttle.check(keys), { allowed: false, reason: 'slow_down', retryAfterSec: 1, key: 'pwd:a' });
  clock.advance(1000);
  assert.ok(await throttle.fail('pwd:a', budget), 'the third failure locks');
  clock.advance(30_000);
  assert.equal(((await throttle.check(keys)) as any).reason, 'locked');
  clock.advance(31_000);
  assert.deepEqual(await throttle.check(keys), { allowed: true });
  assert.equal(await throttle.fail('pwd:a', budget), undefined, 'a new failure after the lockout starts afresh');
  await db.destroy();
});

test('shared keys without delays only lock', async () => {
  const { db, throttle } = await setup();
  const budget = { maxFailures: 2, lockoutSeconds: 60 };
  await throttle.fail('src:x', budget);
  assert.deepEqual(await throttle.check([{ key: 'src:x', budget, delays: false }]), { allowed: true });
  await throttle.fail('src:x', budget);
  assert.equal(((await throttle.check([{ key: 'src:x', budget, delays: false }])) as any).reason, 'locked');
  await db.destroy();
});
