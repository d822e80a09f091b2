import { test } from 'node:test';
import assert from 'node:assert/strict';
import client from 'prom-client';
import { AuthFailureTracker, authFailureTrackerOf, delayAfter } from './auth-failures.ts';
import { createSharedResources, type ProvisionContext } from '../policy.ts';
import { RATE_LIMIT_METRICS } from './metrics.ts';
import { AuthFailureConfig } from './schema.ts';
import { createRateLimitMetrics } from './metrics.ts';
import { frozenClock } from '../../../shared/clock.ts';
import { GatehouseError } from '../../../shared/errors.ts';

const config = (raw: object = {}) => AuthFailureConfig.parse(raw);

function retryAfter(d: GatehouseError | undefined): number | undefined {
  if (d === undefined) return undefined;
  assert.equal(d.status, 429);
  assert.equal(d.code, 'too_many_requests');
  return Number(d.headers['retry-after']);
}

test('schema: defaults and consistency', () => {
  assert.deepEqual(config(), {
    freeFailures: 3,
    maxFailures: 20,
    lockoutSeconds: 900,
    forgetAfterSeconds: 900,
    capacity: 100_000,
    ipv6PrefixBits: 64,
  });
  assert.throws(() => config({ freeFailures: 5, maxFailures: 5 }));
  assert.throws(() => config({ maxfailures: 5 }));
});

test('free failures, then growing delays, then a block; the block ends with a fresh start', () => {
  const clock = frozenClock();
  const t = new AuthFailureTracker(config({ freeFailures: 2, maxFailures: 6, lockoutSeconds: 600 }), clock);
  const a = '198.51.100.9';
  assert.equal(t.check(a), undefined);
  t.record(a);
  t.record(a);
  assert.equal(t.check(a), undefined, 'two typos are free');
  t.record(a); // 3rd: wait 1 s
  assert.equal(retryAfter(t.check(a)), 1);
  clock.advance(1000);
  assert.equal(t.check(a), undefined);
  t.record(a); // 4th: wait 2 s
  clock.advance(1999);
  assert.equal(retryAfter(t.check(a)), 1);
  clock.advance(1);
  assert.equal(t.check(a), undefined);
  t.record(a); // 5th: wait 4 s
  assert.equal(retryAfter(t.check(a)), 4);
  clock.advance(4000);
  t.record(a); // 6th: blocked for 600 s
  assert.equal(retryAfter(t.check(a)), 600);
  clock.advance(599_000);
  assert.equal(retryAfter(t.check(a)), 1);
  assert.equal(t.check('198.51.100.10'), undefined, 'other sources are not affected');
  clock.advance(1000);
  assert.equal(t.check(a), undefined, 'the block is over');
  t.record(a);
  assert.equal(t.check(a), undefined, 'and counting starts afresh');
});

test('failures are forgotten after a quiet period', () => {
  const clock = frozenClock();
  const t = new AuthFailureTracker(config({ freeFailures: 1, maxFailures: 3, forgetAfterSeconds: 60 }), clock);
  t.record('10.0.0.1');
  t.record('10.0.0.1');
  assert.equal(retryAfter(t.check('10.0.0.1')), 1);
  clock.advance(61_000);
  assert.equal(t.check('10.0.0.1'), undefined);
  t.record('10.0.0.1');
  t.record('10.0.0.1');
  assert.equal(retryAfter(t.check('10.0.0.1')), 1, 'slowed again, not blocked: the old failures were forgotten');
});

test('delays double and are capped at 30 s', () => {
  assert.deepEqual([0, 1, 2, 3, 5, 6, 50].map(delayAfter), [0, 1000, 2000, 4000, 16_000, 30_000, 30_000]);
});

test('IPv6 sources are counted per /64, IPv4-mapped as IPv4', () => {
  const clock = frozenClock();
  const t = new AuthFailureTracker(config({ freeFailures: 0, maxFailures: 3 }), clock);
  t.record('2001:db8:1:2::1');
  t.record('2001:db8:1:2:ffff::9');
  t.record('2001:db8:1:2:aaaa:bbbb:cccc:dddd');
  assert.equal(retryAfter(t.check('2001:db8:1:2::77')), 900, 'three addresses of one /64 are one source');
  assert.equal(t.check('2001:db8:1:3::1'), undefined);
  t.record('::ffff:192.0.2.1');
  assert.equal(retryAfter(t.check('192.0.2.1')), 1);
});

test('memory is bounded: 1e6 sprayed sources keep it at capacity, and a blocked source stays blocked', () => {
  const clock = frozenClock();
  const t = new AuthFailureTracker(config({ capacity: 5000, freeFailures: 0, maxFailures: 3 }), clock);
  const attacker = '203.0.113.66';
  for (let i = 0; i < 3; i++) t.record(attacker);
  assert.equal(retryAfter(t.check(attacker)), 900);
  for (let i = 0; i < 1_000_000; i++) t.record(`10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`);
  assert.equal(t.size, 5000);
  assert.equal(retryAfter(t.check(attacker)), 900, 'still blocked after being evicted');
  // a source never seen is not affected by the spray
  let refused = 0;
  for (let i = 0; i < 2000; i++) if (t.check(`192.0.2.${i & 255}`) !== undefined || t.check(`2001:db8:${i.toString(16)}::1`) !== undefined) refused++;
  assert.equal(refused, 0);
});

test('counters: recorded, slowed, blocked', async () => {
  const registry = new client.Registry();
  const metrics = createRateLimitMetrics(registry);
  const clock = frozenClock();
  const t = new AuthFailureTracker(config({ freeFailures: 0, maxFailures: 2 }), clock, metrics);
  t.record('10.0.0.1');
  t.check('10.0.0.1');
  t.record('10.0.0.1');
  t.check('10.0.0.1');
  const values = (await metrics.authFailures.get()).values;
  const of = (result: string) => values.find((v) => v.labels.result === result)?.value;
  assert.equal(of('recorded'), 2);
  assert.equal(of('slowed'), 1);
  assert.equal(of('blocked'), 1);
});

test('authFailureTrackerOf: one tracker per gateway and settings, counting on the shared metrics', async () => {
  const shared = createSharedResources();
  const metrics = createRateLimitMetrics(new client.Registry());
  shared.get(RATE_LIMIT_METRICS, () => metrics);
  const ctx = { shared, clock: frozenClock() } as unknown as ProvisionContext;
  const a = authFailureTrackerOf(ctx, config());
  assert.equal(authFailureTrackerOf(ctx, config()), a, 'every route gets the same tracker');
  assert.notEqual(authFailureTrackerOf(ctx, config({ maxFailures: 5 })), a);
  a.record('10.0.0.1');
  assert.equal((await metrics.authFailures.get()).values.find((v) => v.labels.result === 'recorded')?.value, 1);
});
