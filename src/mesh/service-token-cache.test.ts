import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frozenClock } from '../shared/clock.ts';
import { createServiceTokenCache } from './service-token-cache.ts';

test('a service token is reused until 80% of its lifetime, then fetched again', async () => {
  const clock = frozenClock();
  let n = 0;
  const cache = createServiceTokenCache({ clock, fetch: async () => ({ accessToken: `t${++n}`, expiresIn: 100 }) });
  assert.equal(await cache.get(), 't1');
  clock.advance(79_999);
  assert.equal(await cache.get(), 't1');
  clock.advance(1);
  assert.equal(await cache.get(), 't2');
  cache.invalidate();
  assert.equal(await cache.get(), 't3');
});

test('concurrent callers share one fetch; failures are not cached', async () => {
  let n = 0;
  let fail = true;
  const cache = createServiceTokenCache({
    fetch: async () => {
      n++;
      await new Promise((r) => setTimeout(r, 10));
      if (fail) throw new Error('authority down');
      return { accessToken: 'ok', expiresIn: 60 };
    },
  });
  await assert.rejects(Promise.all([cache.get(), cache.get()]), /authority down/);
  assert.equal(n, 1);
  fail = false;
  assert.deepEqual(await Promise.all([cache.get(), cache.get(), cache.get()]), ['ok', 'ok', 'ok']);
  assert.equal(n, 2);
});

test('an answer without a usable token is refused', async () => {
  const cache = createServiceTokenCache({ fetch: async () => ({ accessToken: '', expiresIn: 60 }) });
  await assert.rejects(cache.get(), /usable token/);
});
