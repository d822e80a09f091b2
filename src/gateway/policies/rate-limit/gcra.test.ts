import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gcra, gcraLimit, gcraRemaining, newGcraResult } from './gcra.ts';

const S = 1_000_000; // µs per second
const T0 = Date.UTC(2026, 0, 1) * 1000;

/** Replays requests at the given times (µs after T0); returns the allowed flags. */
function replay(limit: ReturnType<typeof gcraLimit>, times: number[]): boolean[] {
  let tat = 0;
  const out = newGcraResult();
  return times.map((t) => {
    gcra(tat, T0 + t, limit, out);
    if (out.allowed) tat = out.tat;
    return out.allowed;
  });
}

test('a full burst at once, then one request per emission interval', () => {
  const limit = gcraLimit(10, 60, 5); // one per 6 s, 5 at once
  assert.equal(limit.emissionUs, 6 * S);
  assert.equal(limit.toleranceUs, 30 * S);
  const atOnce = replay(limit, Array(8).fill(0));
  assert.deepEqual(atOnce, [true, true, true, true, true, false, false, false]);
  // after the burst, the next request fits at exactly 6 s, not a microsecond before
  assert.deepEqual(replay(limit, [0, 0, 0, 0, 0, 6 * S - 1, 6 * S, 6 * S + 1, 12 * S]), [
    true, true, true, true, true, false, true, false, true,
  ]);
});

test('remaining, retry-after and reset are exact', () => {
  const limit = gcraLimit(100, 60, 100); // T = 600 ms
  const out = newGcraResult();
  gcra(0, T0, limit, out);
  assert.equal(out.allowed, true);
  assert.equal(out.remaining, 99);
  assert.equal(out.resetUs, 600_000, 'one interval until the bucket is full again');
  let tat = out.tat;
  for (let i = 0; i < 99; i++) tat = gcra(tat, T0, limit, out).tat;
  assert.equal(out.remaining, 0);
  assert.equal(out.resetUs, 60 * S);
  gcra(tat, T0 + 100_000, limit, out);
  assert.equal(out.allowed, false);
  assert.equal(out.retryAfterUs, 500_000, 'the next slot opens 600 ms after the burst');
  assert.equal(out.resetUs, 60 * S - 100_000);
  assert.equal(out.tat, tat, 'a refusal leaves the TAT unchanged');
  assert.equal(gcraRemaining(tat, T0 + 600_000, limit), 1);
  assert.equal(gcraRemaining(tat, T0 + 60 * S, limit), 100, 'idle for a window: full again');
  assert.equal(gcraRemaining(0, T0, limit), 100);
});

test('refusals cost nothing: hammering a closed bucket does not delay its reopening', () => {
  const limit = gcraLimit(2, 10, 2);
  const times = [0, 0];
  for (let t = 1; t < 5 * S; t += 1000) times.push(t); // 5000 refused attempts
  times.push(5 * S);
  const r = replay(limit, times);
  assert.equal(r.filter(Boolean).length, 3);
  assert.equal(r.at(-1), true);
});

test('rates that do not divide evenly: exactly `burst` at one instant, no drift over many intervals', () => {
  const limit = gcraLimit(3, 1, 3); // T = 333 333 µs (rounded)
  assert.equal(replay(limit, Array(4).fill(0)).filter(Boolean).length, 3);
  // a client sending exactly at the rate for a simulated day is never refused
  const steady = gcraLimit(7, 3, 1);
  let tat = 0;
  const out = newGcraResult();
  for (let i = 0; i < 200_000; i++) {
    gcra(tat, T0 + i * steady.emissionUs, steady, out);
    assert.ok(out.allowed, `request ${i}`);
    tat = out.tat;
  }
  // and one sent a microsecond early is refused
  assert.equal(gcra(tat, T0 + 200_000 * steady.emissionUs - 1, steady, out).allowed, false);
});

test('over any window the allowed total is at most burst + limit', () => {
  const limit = gcraLimit(20, 10, 5);
  const times: number[] = [];
  for (let t = 0; t < 60 * S; t += 37_000) times.push(t); // ~27 requests per second, far above the rate
  const allowed = replay(limit, times);
  const allowedTimes = times.filter((_, i) => allowed[i]);
  for (const start of allowedTimes) {
    const inWindow = allowedTimes.filter((t) => t >= start && t < start + 10 * S).length;
    assert.ok(inWindow <= 5 + 20, `${inWindow} in the window from ${start}`);
  }
  // sustained: about limit per window over a minute (6 windows) plus the burst
  assert.ok(Math.abs(allowedTimes.length - (6 * 20 + 5)) <= 1, String(allowedTimes.length));
});

test('gcraLimit keeps at least one microsecond between requests', () => {
  const l = gcraLimit(1_000_000_000, 1, 10);
  assert.equal(l.emissionUs, 1);
  assert.equal(l.toleranceUs, 10);
});
