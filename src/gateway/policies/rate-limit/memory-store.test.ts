import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from './memory-store.ts';
import { SlotLru } from './slot-lru.ts';
import { gcraLimit } from './gcra.ts';
import { frozenClock } from '../../../shared/clock.ts';
import type { CompiledLimit } from './store.ts';

const limitOf = (limit: number, windowSeconds: number, burst = limit, concurrency = 0): CompiledLimit => ({
  ...gcraLimit(limit, windowSeconds, burst),
  concurrency,
});

function sprayAddress(i: number): string {
  return `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
}

test('SlotLru: evicts the least recently used, and a lookup counts as use', () => {
  const lru = new SlotLru(3);
  const a = lru.insert('a');
  lru.insert('b');
  lru.insert('c');
  assert.equal(lru.evicted, undefined);
  assert.equal(lru.find('a'), a, 'a is now the most recent');
  const d = lru.insert('d');
  assert.equal(lru.evicted, 'b');
  assert.equal(lru.find('b'), -1);
  assert.equal(lru.insert('e') !== d, true);
  assert.equal(lru.evicted, 'c');
  assert.deepEqual(['a', 'd', 'e'].map((k) => lru.find(k) !== -1), [true, true, true]);
  assert.equal(lru.size, 3);
  assert.equal(lru.evictions, 2);
  const one = new SlotLru(1);
  one.insert('x');
  assert.equal(one.insert('y'), 0);
  assert.equal(one.evicted, 'x');
  assert.equal(one.find('y'), 0);
});

test('decisions follow GCRA on the injected clock', () => {
  const clock = frozenClock();
  const store = new MemoryStore({ capacity: 100 });
  const limit = limitOf(60, 60, 3); // one per second, three at once
  const take = () => {
    const r = store.take('k', limit, clock.now());
    return { allowed: r.allowed, remaining: r.remaining, retryAfterUs: r.retryAfterUs, limitedBy: r.limitedBy };
  };
  assert.deepEqual(take(), { allowed: true, remaining: 2, retryAfterUs: 0, limitedBy: undefined });
  take();
  take();
  assert.deepEqual(take(), { allowed: false, remaining: 0, retryAfterUs: 1_000_000, limitedBy: 'rate' });
  clock.advance(999);
  assert.equal(take().allowed, false);
  clock.advance(1);
  assert.equal(take().allowed, true);
  clock.advance(10_000);
  assert.equal(take().remaining, 2, 'idle: the full burst is back');
  assert.equal(store.take('other', limit, clock.now()).remaining, 2, 'keys are independent');
});

test('the hot path reuses one result object', () => {
  const store = new MemoryStore({ capacity: 10 });
  const limit = limitOf(10, 1);
  assert.equal(store.take('a', limit, 0), store.take('b', limit, 0));
});

test('1e6 distinct addresses keep the store at its capacity', () => {
  const clock = frozenClock();
  const capacity = 10_000;
  let evictions = 0;
  const store = new MemoryStore({ capacity, evictions: { inc: () => evictions++ } });
  const limit = limitOf(100, 60);
  for (let i = 0; i < 1_000_000; i++) {
    assert.equal(store.take(sprayAddress(i), limit, clock.now()).allowed, true);
    if (i % 1000 === 0) clock.advance(1);
  }
  assert.equal(store.size, capacity);
  assert.equal(store.evictions, 1_000_000 - capacity);
  assert.equal(evictions, 1_000_000 - capacity);
});

test('spraying addresses cannot evict a heavy hitter out of its debt', () => {
  const clock = frozenClock();
  const store = new MemoryStore({ capacity: 1000 });
  const limit = limitOf(10, 60); // 10 per minute, 10 at once
  for (let i = 0; i < 10; i++) assert.ok(store.take('203.0.113.7', limit, clock.now()).allowed);
  assert.equal(store.take('203.0.113.7', limit, clock.now()).allowed, false);
  // its accomplice sprays a million addresses: the heavy hitter's bucket is evicted many times over
  for (let i = 0; i < 1_000_000; i++) store.take(sprayAddress(i), limit, clock.now());
  assert.equal(store.size, 1000);
  const again = store.take('203.0.113.7', limit, clock.now());
  assert.equal(again.allowed, false, 'still refused: the debt survived eviction');
  assert.equal(again.retryAfterUs, 6_000_000, 'and the wait is unchanged');
  // it comes back as the rate allows, not with a fresh burst
  clock.advance(6000);
  assert.equal(store.take('203.0.113.7', limit, clock.now()).allowed, true);
  assert.equal(store.take('203.0.113.7', limit, clock.now()).allowed, false);
});

test('after a spray, new clients are not refused (sprayed keys fold one interval of debt)', () => {
  const clock = frozenClock();
  const store = new MemoryStore({ capacity: 1000 });
  const limit = limitOf(10, 60);
  for (let i = 0; i < 200_000; i++) store.take(sprayAddress(i), limit, clock.now());
  let refused = 0;
  for (let i = 0; i < 5000; i++) if (!store.take(`192.0.2.${i % 256}/${i}`, limit, clock.now()).allowed) refused++;
  assert.equal(refused, 0);
});

test('a client sharing a fold slot with a heavy hitter never inherits its debt', () => {
  // a capacity of 1 gives two fold slots, so about half the keys share the heavy hitter's
  const clock = frozenClock();
  const store = new MemoryStore({ capacity: 1 });
  const limit = limitOf(5, 10); // T = 2 s, burst 5
  for (let i = 0; i < 5; i++) store.take('heavy', limit, clock.now());
  for (let i = 0; i < 40; i++) assert.ok(store.take(`innocent-${i}`, limit, clock.now()).allowed, `innocent-${i}`);
  const heavy = store.take('heavy', limit, clock.now());
  assert.equal(heavy.allowed, false, 'evicted 40 times over, the heavy hitter still owes');
  assert.equal(heavy.retryAfterUs, 2_000_000);
});

test('trade-off: when debts collide in a fold slot the larger one is kept', () => {
  const clock = frozenClock();
  const store = new MemoryStore({ capacity: 1 });
  const big = limitOf(5, 10); // burst 5 → a debt of 10 s
  const small = limitOf(100, 10); // one request → a debt of 0.1 s
  for (let i = 0; i < 5; i++) store.take('heavy', big, clock.now());
  // every other key folds a small debt; whichever shares the heavy hitter's slot cannot displace it
  for (let i = 0; i < 64; i++) store.take(`small-${i}`, small, clock.now());
  assert.equal(store.take('heavy', big, clock.now()).allowed, false);
  // a debt that is paid is worth nothing: after it, the heavy hitter is a normal client again
  clock.advance(2000);
  assert.equal(store.take('heavy', big, clock.now()).allowed, true);
  assert.equal(store.take('heavy', big, clock.now()).allowed, false);
});

test('concurrency: slots are taken by allowed requests and given back on release', () => {
  const store = new MemoryStore({ capacity: 100 });
  const limit = limitOf(1000, 1, 1000, 2);
  const a = store.take('c', limit, 0);
  assert.equal(a.allowed, true);
  assert.equal(a.lease, 'memory');
  assert.equal(store.take('c', limit, 0).allowed, true);
  const third = store.take('c', limit, 0);
  assert.equal(third.allowed, false);
  assert.equal(third.limitedBy, 'concurrency');
  assert.equal(third.lease, undefined);
  assert.equal(third.remaining, 998, 'a concurrency refusal spends no rate');
  assert.equal(store.inflight('c'), 2);
  store.release('c');
  assert.equal(store.take('c', limit, 0).allowed, true);
  store.release('c');
  store.release('c');
  store.release('c');
  store.release('c'); // one too many is harmless
  assert.equal(store.inflight('c'), 0);
  assert.equal(store.take('c', limit, 0).allowed, true);
});

test('a rate refusal takes no concurrency slot', () => {
  const store = new MemoryStore({ capacity: 100 });
  const limit = limitOf(1, 60, 1, 5);
  assert.equal(store.take('r', limit, 0).allowed, true);
  const refused = store.take('r', limit, 0);
  assert.equal(refused.limitedBy, 'rate');
  assert.equal(refused.lease, undefined);
  assert.equal(store.inflight('r'), 1);
});
