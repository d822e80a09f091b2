import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sealKey, openKey } from './key-envelope.ts';

const PASS = 'a passphrase long enough';

test('the root key round-trips only with its passphrase', () => {
  const key = randomBytes(138);
  const env = sealKey(key, PASS);
  assert.ok(!JSON.stringify(env).includes(key.toString('base64')));
  assert.deepEqual(openKey(env, PASS), key);
  assert.throws(() => openKey(env, PASS + '!'));
});

test('an altered envelope is refused', () => {
  const env = sealKey(randomBytes(64), PASS);
  const ct = Buffer.from(env.ciphertext, 'base64');
  ct[0] ^= 1;
  assert.throws(() => openKey({ ...env, ciphertext: ct.toString('base64') }, PASS));
  assert.throws(() => openKey({ ...env, kdf: { ...env.kdf, N: 2 ** 30 } }, PASS), /parameters/);
});

test('short passphrases are refused', () => {
  assert.throws(() => sealKey(randomBytes(8), 'short'), /16 characters/);
});
