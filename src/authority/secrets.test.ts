import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, statSync, chmodSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadKeyEncryptionKey } from './keys/key-encryption.ts';
import { openDatabase } from './db/open-database.ts';
import { hashPassword, verifyPassword } from './password-hash.ts';
import { compareClientSecret, hashClientSecret } from './client-registry.ts';

test('the key-encryption key: opened from the zone database under the master key, seals and detects tampering or another purpose', async () => {
  const state = mkdtempSync(path.join(tmpdir(), 'gh-kek-'));
  const dir = path.join(state, 'authority', 'z');
  mkdirSync(dir, { recursive: true });
  const storage = await openDatabase('sqlite', dir);
  try {
    const kek = loadKeyEncryptionKey(dir, {});
    assert.throws(() => kek.seal('x', 'purpose:a'), /not open yet/);
    await kek.attach(storage.db);
    assert.equal(statSync(path.join(state, 'vault', 'master.key')).mode & 0o777, 0o600);
    const sealed = kek.seal('secret-value', 'purpose:a');
    assert.match(sealed, /^v2\./);
    assert.ok(!sealed.includes('secret-value'));
    assert.equal(kek.open(sealed, 'purpose:a').toString(), 'secret-value');
    assert.throws(() => kek.open(sealed, 'purpose:b'), /cannot decrypt/);
    const parts = sealed.split('.');
    parts[2] = Buffer.from('x' + Buffer.from(parts[2], 'base64url').toString('latin1').slice(1), 'latin1').toString('base64url');
    assert.throws(() => kek.open(parts.join('.'), 'purpose:a'), /cannot decrypt/);
    writeFileSync(path.join(dir, 'master.key'), 'x', { mode: 0o644 });
    chmodSync(path.join(dir, 'master.key'), 0o644);
    assert.throws(() => loadKeyEncryptionKey(dir, {}), /readable by others/);
    assert.throws(() => loadKeyEncryptionKey(dir, { GATEHOUSE_MASTER_KEY: 'short' }), /32 bytes/);
    assert.throws(() => loadKeyEncryptionKey(state, {}), /not a zone folder/);
  } finally {
    await storage.close();
    rmSync(state, { recursive: true, force: true });
  }
});

test('argon2id password hashes verify only the right password', async () => {
  const phc = await hashPassword('correct horse battery staple');
  assert.match(phc, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  assert.equal(await verifyPassword('correct horse battery staple', phc), true);
  assert.equal(await verifyPassword('correct horse battery stapler', phc), false);
  assert.equal(await verifyPassword('x', 'not-a-hash'), false);
});

test('client secrets are compared through a keyed hash', () => {
  const key = Buffer.alloc(32, 1);
  const stored = hashClientSecret(key, 's3cret');
  assert.notEqual(stored, 's3cret');
  assert.equal(compareClientSecret(key, stored, 's3cret'), true);
  assert.equal(compareClientSecret(key, stored, 's3cret2'), false);
  assert.equal(compareClientSecret(Buffer.alloc(32, 2), stored, 's3cret'), false, 'another server key');
  assert.equal(compareClientSecret(key, stored, undefined), false);
});
