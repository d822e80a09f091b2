import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, parseCanonical } from './canonical.ts';

const enc = (s: string) => new TextEncoder().encode(s);

test('canonical JSON sorts keys, drops undefined, has no whitespace', () => {
  assert.equal(canonicalJson({ b: 1, a: [true, null, 'é'], c: undefined, d: { z: 0, y: -1.5 } }), '{"a":[true,null,"é"],"b":1,"d":{"y":-1.5,"z":0}}');
  assert.throws(() => canonicalJson({ a: NaN }));
  assert.throws(() => canonicalJson([undefined]));
});

test('only the exact canonical bytes parse', () => {
  assert.equal(parseCanonical(enc('{"a":1,"b":"é"}')).ok, true);
  for (const bad of ['{"b":1,"a":1}', '{"a": 1}', '{"a":1,"a":1}', '{"a":"\\u00e9"}', '{"a":1.0}', '{"a":1}\n'])
    assert.deepEqual(parseCanonical(enc(bad)), { ok: false, reason: 'not_canonical' }, bad);
  assert.deepEqual(parseCanonical(enc('{"a":')), { ok: false, reason: 'json' });
  assert.equal(parseCanonical(enc('\ufeff{"a":1}')).ok, false); // a BOM is never canonical
  assert.deepEqual(parseCanonical(new Uint8Array([0x7b, 0xff, 0x7d])), { ok: false, reason: 'utf8' });
});
