import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CircuitBreaker } from './upstream.ts';
import { frozenClock } from '../shared/clock.ts';
import { GatehouseError } from '../shared/errors.ts';

test('the circuit opens after N consecutive failures, answers 503 with Retry-After, then allows one trial', () => {
  const clock = frozenClock();
  const b = new CircuitBreaker(3, 10_000, clock);
  for (let i = 0; i < 2; i++) b.failure(b.admit());
  b.success(b.admit()); // a success resets the count
  for (let i = 0; i < 3; i++) b.failure(b.admit());
  assert.equal(b.state, 'open');
  clock.advance(2_500);
  assert.throws(
    () => b.admit(),
    (e: unknown) => e instanceof GatehouseError && e.status === 503 && e.headers['retry-after'] === '8',
  );
  clock.advance(7_500);
  assert.equal(b.state, 'half_open');
  const trial = b.admit();
  assert.equal(trial, true);
  assert.throws(() => b.admit(), /paused/); // only one trial at a time
  b.failure(trial);
  assert.equal(b.state, 'open');
  clock.advance(10_000);
  b.success(b.admit());
  assert.equal(b.state, 'closed');
  assert.equal(b.admit(), false);
});
