// The control plane's list of revoked token ids (src/control/lib/revoked-tokens.ts)
// on a frozen clock: bounds (jti shape, exp missing or past, exp clamped to the
// zone's token lifetime), eviction of the soonest-ending entries when full,
// expiry, and the file it is kept in (a restart keeps it; a damaged file is
// checked entry by entry, never trusted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { frozenClock } from '../src/shared/clock.ts';
import { openRevokedTokens, REVOKED_GRACE_MS } from '../src/control/lib/revoked-tokens.ts';
import { tempDir } from './support/gateway-fixture.ts';

const LIFETIME = 300_000;

test('reports are refused precisely, clamped, and never shortened', () => {
  const clock = frozenClock();
  const list = openRevokedTokens(tempDir('gh-revoked-unit-'), clock);
  const exp = clock.now() / 1000 + 100;
  assert.equal(list.add('x'.repeat(65), exp, LIFETIME), 'jti_invalid');
  assert.equal(list.add('', exp, LIFETIME), 'jti_invalid');
  assert.equal(list.add('a b', exp, LIFETIME), 'jti_invalid');
  assert.equal(list.add('back\\slash', exp, LIFETIME), 'jti_invalid');
  assert.equal(list.add(42, exp, LIFETIME), 'jti_invalid');
  assert.equal(list.add('a', undefined, LIFETIME), 'exp_missing');
  assert.equal(list.add('a', 1.5, LIFETIME), 'exp_missing');
  assert.equal(list.add('a', clock.now() / 1000 - 61, LIFETIME), 'exp_past');
  assert.equal(list.add('a', exp, LIFETIME), true);
  assert.equal(list.add('a', exp - 50, LIFETIME), false, 'a second, earlier report never shortens the entry');
  assert.equal(list.until('a'), exp * 1000 + REVOKED_GRACE_MS);
  assert.equal(list.add('far', clock.now() / 1000 + 10 * 365 * 86_400, LIFETIME), true);
  assert.equal(list.until('far'), clock.now() + LIFETIME + REVOKED_GRACE_MS);
  assert.deepEqual(list.stats(), { size: 2, added: 2, refused: 8, clamped: 1, evicted: 0 });
});

test('a full list drops the entries that end soonest; ended entries leave by themselves', () => {
  const clock = frozenClock();
  const list = openRevokedTokens(tempDir('gh-revoked-unit-'), clock, 1000);
  const base = clock.now() / 1000;
  // 10 000 reports, each ending later than the one before, into a list of 1 000
  for (let i = 0; i < 10_000; i++) assert.notEqual(typeof list.add(`t${i}`, base + 10 + Math.floor(i / 50), LIFETIME), 'string');
  const s = list.stats();
  assert.ok(s.size <= 1000 && s.size >= 990, `bounded: ${s.size}`);
  assert.equal(s.evicted, 10_000 - s.size);
  const ids = new Set(list.list());
  assert.ok(ids.has('t9999') && !ids.has('t0'), 'the latest-ending are kept');
  assert.equal(list.nextExpiry(), Math.min(...[...ids].map((j) => list.until(j)!)));
  clock.advance(10_000 + 200 * 1000 + REVOKED_GRACE_MS + 1);
  assert.deepEqual(list.list(), []);
  assert.equal(list.sweep(), true);
  assert.equal(list.stats().size, 0);
  assert.equal(list.nextExpiry(), undefined);
});

test('the list is kept on disk (0600) and read back; a damaged file is checked entry by entry', () => {
  const clock = frozenClock();
  const dir = tempDir('gh-revoked-unit-');
  const list = openRevokedTokens(dir, clock);
  list.add('kept', clock.now() / 1000 + 100, LIFETIME);
  list.add('ends', clock.now() / 1000 + 1, LIFETIME);
  list.save();
  const file = path.join(dir, 'control', 'revoked-tokens.json');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  clock.advance(1000 + REVOKED_GRACE_MS + 1);
  const again = openRevokedTokens(dir, clock);
  assert.deepEqual(again.list(), ['kept'], 'an entry that ended while the control plane was down is gone');
  // tampered: wrong shapes, a jti too long, a year-long entry (read back at most a day)
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ tokens: [['ok', clock.now() + 5000], ['x'.repeat(100), clock.now() + 5000], [1, 2], 'junk', ['year', clock.now() + 365 * 86_400_000]] }));
  const damaged = openRevokedTokens(dir, clock);
  assert.deepEqual(damaged.list().sort(), ['ok', 'year']);
  assert.ok(damaged.until('year')! <= clock.now() + 86_400_000);
  writeFileSync(file, '{ not json');
  assert.deepEqual(openRevokedTokens(dir, clock).list(), []);
  assert.match(readFileSync(file, 'utf8'), /not json/, 'a file that does not parse is left for the operator, not overwritten on open');
});
