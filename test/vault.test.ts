// The vault's key ring and token store in process (SQLite; PostgreSQL when
// reachable): ciphertext format, every refusal with its code, rotation,
// rewrap, data keys, min_decryption_version, deletion, master key handling,
// tokenization.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, chmodSync, statSync } from 'node:fs';
import path from 'node:path';
import { openVault, parseCiphertext, isCardToken, luhnValid, localKms, transitKms, MasterKeyError, type Vault } from '../src/vault/index.ts';
import { GatehouseError } from '../src/shared/errors.ts';
import { tempDir, postgresForTests } from './support/authority-harness.ts';

const code = (c: string) => (e: unknown) => e instanceof GatehouseError && e.code === c;
const CARD = '4111111111111111';

async function withVault(f: (v: Vault, dir: string) => Promise<void>, storage = 'sqlite'): Promise<void> {
  const tmp = tempDir('gh-vault-');
  const v = await openVault({ stateDir: tmp.dir, storage, env: {} });
  try {
    await f(v, tmp.dir);
  } finally {
    await v.close();
    tmp.remove();
  }
}

test('encrypt/decrypt: gh:v1: strings and raw bytes, self-describing, context bound', () =>
  withVault(async (v) => {
    await v.createKey('pii');
    const ct = await v.encrypt('pii', 'Rue de la Paix 1', 'orders/orders/address/42');
    assert.match(ct, /^gh:v1:[A-Za-z0-9_-]+$/);
    const parsed = parseCiphertext(ct);
    assert.equal(parsed.keyName, 'pii');
    assert.equal(parsed.version, 1);
    assert.equal((await v.decrypt('pii', ct, 'orders/orders/address/42')).toString(), 'Rue de la Paix 1');
    // two encryptions of the same value differ (random nonce)
    assert.notEqual(await v.encrypt('pii', 'x', 'c'), await v.encrypt('pii', 'x', 'c'));
    const raw = await v.encrypt('pii', Buffer.from([0, 1, 2, 255]), 'file:1', { raw: true });
    assert.deepEqual([...raw.subarray(0, 3)], [0x67, 0x68, 0x01]);
    assert.deepEqual([...(await v.decrypt('pii', raw, 'file:1'))], [0, 1, 2, 255]);
    // the empty plaintext is a value too
    assert.equal((await v.decrypt('pii', await v.encrypt('pii', '', 'c'), 'c')).length, 0);
  }));

test('refusals: tampered bytes, wrong context, other key, truncated, oversized, garbage — each with its code, nothing decrypted', () =>
  withVault(async (v) => {
    await v.createKey('pii');
    await v.createKey('other');
    const raw = await v.encrypt('pii', 'secret value', 'ctx', { raw: true });
    // every single byte flipped: refused (malformed header or failed authentication)
    for (let i = 0; i < raw.length; i++) {
      const t = Buffer.from(raw);
      t[i] ^= 0x01;
      await assert.rejects(v.decrypt('pii', t, 'ctx'), (e: unknown) =>
        e instanceof GatehouseError && ['vault_decrypt_failed', 'vault_ciphertext_malformed', 'vault_key_mismatch', 'vault_key_not_found'].includes(e.code),
      );
    }
    const ct = await v.encrypt('pii', 'secret value', 'orders/1');
    await assert.rejects(v.decrypt('pii', ct, 'orders/2'), code('vault_decrypt_failed'));
    await assert.rejects(v.decrypt('other', ct, 'orders/1'), code('vault_key_mismatch'));
    await assert.rejects(v.decrypt('missing', ct, 'orders/1'), code('vault_key_mismatch'));
    await assert.rejects(v.encrypt('missing', 'x', 'c'), code('vault_key_not_found'));
    await assert.rejects(v.encrypt('Bad Name', 'x', 'c'), code('vault_key_not_found'));
    await assert.rejects(v.decrypt('pii', ct.slice(0, 30), 'orders/1'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', ct.slice(0, -4), 'orders/1'), code('vault_decrypt_failed'));
    await assert.rejects(v.decrypt('pii', ct + 'A', 'orders/1'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', 'gh:v1:' + 'A'.repeat(3_000_000), 'orders/1'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', 'gh:v2:AAAA', 'c'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', 'gh:v1:!!!!', 'c'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', '', 'c'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', Buffer.alloc(0), 'c'), code('vault_ciphertext_malformed'));
    await assert.rejects(v.decrypt('pii', ct, ''), code('vault_context_invalid'));
    await assert.rejects(v.decrypt('pii', ct, 'x'.repeat(1025)), code('vault_context_invalid'));
    await assert.rejects(v.encrypt('pii', Buffer.alloc(1024 * 1024 + 1), 'c'), code('payload_too_large'));
    // a header rewritten to name version 2 (after a rotation) does not authenticate
    await v.rotateKey('pii');
    const moved = Buffer.from(raw);
    moved.writeUInt32BE(2, 3 + 1 + 3);
    await assert.rejects(v.decrypt('pii', moved, 'ctx'), code('vault_decrypt_failed'));
    // no refusal message carries the plaintext or the context
    const err = await v.decrypt('pii', ct, 'orders/2').catch((e: Error) => e);
    assert.doesNotMatch(String((err as Error).message), /secret value|orders\/2/);
  }));

test('rotation, rewrap, min_decryption_version, trim and delete', () =>
  withVault(async (v) => {
    await v.createKey('pii');
    const v1 = await v.encrypt('pii', 'hello', 'c');
    assert.equal((await v.rotateKey('pii')).latest, 2);
    const v2 = await v.encrypt('pii', 'hello', 'c');
    assert.equal(parseCiphertext(v2).version, 2);
    assert.equal((await v.decrypt('pii', v1, 'c')).toString(), 'hello');
    const re = await v.rewrap('pii', v1, 'c');
    assert.equal(parseCiphertext(re).version, 2);
    assert.equal(await v.rewrap('pii', re, 'c'), re, 'already at the newest version: unchanged');
    await assert.rejects(v.rewrap('pii', v1, 'wrong'), code('vault_decrypt_failed'));
    await assert.rejects(v.setMinDecryptionVersion('pii', 0), code('vault_version_invalid'));
    await assert.rejects(v.setMinDecryptionVersion('pii', 4), code('vault_version_invalid'));
    assert.equal((await v.setMinDecryptionVersion('pii', 2)).minDecryptionVersion, 2);
    await assert.rejects(v.decrypt('pii', v1, 'c'), code('vault_version_retired'));
    assert.equal((await v.decrypt('pii', re, 'c')).toString(), 'hello');
    await assert.rejects(v.deleteKey('pii'), code('vault_key_in_use'));
    assert.deepEqual(await v.trimKey('pii'), [1]);
    // lowering the minimum again cannot bring back trimmed material
    await v.setMinDecryptionVersion('pii', 1);
    await assert.rejects(v.decrypt('pii', v1, 'c'), code('vault_decrypt_failed'));
    await v.setMinDecryptionVersion('pii', 3);
    await assert.rejects(v.encrypt('pii', 'x', 'c'), code('vault_version_retired'));
    await v.deleteKey('pii');
    assert.deepEqual(await v.listKeys(), []);
    await assert.rejects(v.decrypt('pii', re, 'c'), code('vault_key_not_found'));
    await assert.rejects(v.createKey('dup').then(() => v.createKey('dup')), code('vault_key_exists'));
  }));

test('rotation while requests run: no encryption or decryption fails', () =>
  withVault(async (v) => {
    await v.createKey('pii');
    const work = Array.from({ length: 400 }, async (_, i) => {
      const ct = await v.encrypt('pii', `value ${i}`, `row/${i}`);
      assert.equal((await v.decrypt('pii', ct, `row/${i}`)).toString(), `value ${i}`);
    });
    const rotations = Array.from({ length: 5 }, () => v.rotateKey('pii'));
    await Promise.all([...work, ...rotations]);
    assert.equal((await v.keyInfo('pii')).latest, 6);
  }));

test('another process rotates in the same store: a running vault decrypts the new version at once', async () => {
  const tmp = tempDir('gh-vault-');
  const a = await openVault({ stateDir: tmp.dir, env: {}, refreshMs: 60_000 });
  const b = await openVault({ stateDir: tmp.dir, env: {} });
  try {
    await a.createKey('pii');
    await a.encrypt('pii', 'warm the cache', 'c');
    await b.rotateKey('pii');
    const ct = await b.encrypt('pii', 'from b', 'c');
    assert.equal((await a.decrypt('pii', ct, 'c')).toString(), 'from b');
  } finally {
    await a.close();
    await b.close();
    tmp.remove();
  }
});

test('datakey: envelope encryption; the wrapped key decrypts to the same key', () =>
  withVault(async (v) => {
    await v.createKey('files');
    const dk = await v.datakey('files', 'invoice/7');
    assert.equal(dk.plaintext.length, 32);
    assert.deepEqual(await v.decrypt('files', dk.ciphertext, 'invoice/7'), dk.plaintext);
    await assert.rejects(v.decrypt('files', dk.ciphertext, 'invoice/8'), code('vault_decrypt_failed'));
  }));

test('master key: a 0600 file created for an empty store; a wrong key refuses to start and changes nothing', async () => {
  const tmp = tempDir('gh-vault-');
  try {
    const v = await openVault({ stateDir: tmp.dir, env: {} });
    await v.createKey('pii');
    const ct = await v.encrypt('pii', 'x', 'c');
    await v.close();
    const keyFile = path.join(tmp.dir, 'vault', 'master.key');
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    const db = readFileSync(path.join(tmp.dir, 'vault', 'vault.sqlite'));
    const wrong = Buffer.alloc(32, 7).toString('base64');
    await assert.rejects(openVault({ stateDir: tmp.dir, env: { GATEHOUSE_MASTER_KEY: wrong } }), (e: unknown) => {
      assert.ok(e instanceof MasterKeyError);
      assert.match(e.message, /not the one this vault's keys are sealed under; refusing to start/);
      assert.doesNotMatch(e.message, new RegExp(wrong.slice(0, 10)));
      return true;
    });
    await assert.rejects(openVault({ stateDir: tmp.dir, env: { GATEHOUSE_MASTER_KEY: 'short' } }), /32 bytes/);
    await assert.rejects(openVault({ stateDir: tmp.dir, env: { GATEHOUSE_KMS: 'aws' } }), /local or transit/);
    chmodSync(keyFile, 0o644);
    await assert.rejects(openVault({ stateDir: tmp.dir, env: {} }), /readable by others/);
    chmodSync(keyFile, 0o600);
    const saved = readFileSync(keyFile);
    writeFileSync(keyFile, '', { mode: 0o600 });
    await assert.rejects(openVault({ stateDir: tmp.dir, env: {} }), /does not hold a 32-byte key/);
    writeFileSync(keyFile, saved);
    assert.deepEqual(readFileSync(path.join(tmp.dir, 'vault', 'vault.sqlite')), db, 'the store is unchanged');
    const again = await openVault({ stateDir: tmp.dir, env: {} });
    assert.equal((await again.decrypt('pii', ct, 'c')).toString(), 'x');
    await again.close();
    // the key file gone while the store holds sealed keys: refused, no new key written
    const { rmSync, existsSync } = await import('node:fs');
    rmSync(keyFile);
    await assert.rejects(openVault({ stateDir: tmp.dir, env: {} }), /is missing; refusing to start/);
    assert.equal(existsSync(keyFile), false);
    // GATEHOUSE_MASTER_KEY with the same key opens it
    const same = await openVault({ stateDir: tmp.dir, env: { GATEHOUSE_MASTER_KEY: saved.toString().trim() } });
    assert.equal((await same.decrypt('pii', ct, 'c')).toString(), 'x');
    await same.close();
  } finally {
    tmp.remove();
  }
});

test('transit KMS: the master key stays in a transit-compatible KMS (fake server), AAD passed as associated_data', async () => {
  const inner = localKms(Buffer.alloc(32, 9), 'fake');
  const calls: string[] = [];
  const fakeFetch = (async (url: string, init: RequestInit) => {
    const body = JSON.parse(String(init.body)) as Record<string, string>;
    calls.push(`${url} ${(init.headers as Record<string, string>)['x-vault-token']}`);
    const aad = Buffer.from(body.associated_data, 'base64').toString();
    if (url.endsWith('/encrypt/gatehouse')) {
      const c = await inner.wrap(Buffer.from(body.plaintext, 'base64'), aad);
      return Response.json({ data: { ciphertext: `vault:v1:${c.toString('base64')}` } });
    }
    const p = await inner.unwrap(Buffer.from(body.ciphertext.slice(9), 'base64'), aad);
    return p ? Response.json({ data: { plaintext: p.toString('base64') } }) : new Response('{"errors":["cipher: message authentication failed"]}', { status: 400 });
  }) as unknown as typeof fetch;
  const kms = transitKms({ addr: 'https://kms.invalid/', token: 's.token', key: 'gatehouse', fetch: fakeFetch });
  const tmp = tempDir('gh-vault-');
  try {
    const v = await openVault({ stateDir: tmp.dir, kms });
    await v.createKey('pii');
    const ct = await v.encrypt('pii', 'x', 'c');
    await v.close();
    const again = await openVault({ stateDir: tmp.dir, kms });
    assert.equal((await again.decrypt('pii', ct, 'c')).toString(), 'x');
    await again.close();
    assert.ok(calls.every((c) => c.startsWith('https://kms.invalid/v1/transit/') && c.endsWith(' s.token')));
    const other = transitKms({ addr: 'https://kms.invalid', token: 't', key: 'gatehouse', fetch: (async () => new Response('{}', { status: 400 })) as unknown as typeof fetch });
    await assert.rejects(openVault({ stateDir: tmp.dir, kms: other }), /refusing to start/);
  } finally {
    tmp.remove();
  }
});

test('tokenization: card tokens keep length and last four, pass Luhn, start with the reserved 0; random per call unless deterministic', () =>
  withVault(async (v) => {
    await v.createKey('cards', { tokens: 'card' });
    await v.createKey('cards-det', { tokens: 'card', deterministic: true });
    await v.createKey('emails', { deterministic: true });
    for (const card of [CARD, '5555555555554444', '378282246310005', '4222222222222', '6011111111111117123'.slice(0, 19)].filter(luhnValid)) {
      const t = await v.tokenize('cards', card);
      assert.equal(t.length, card.length);
      assert.equal(t.slice(-4), card.slice(-4));
      assert.ok(luhnValid(t) && isCardToken(t) && t.startsWith('0'), t);
      assert.equal(await v.detokenize('cards', t), card);
    }
    assert.notEqual(await v.tokenize('cards', CARD), await v.tokenize('cards', CARD));
    const d1 = await v.tokenize('cards-det', CARD);
    assert.equal(await v.tokenize('cards-det', CARD), d1);
    const e1 = await v.tokenize('emails', 'ann@example.com');
    assert.match(e1, /^tok_[A-Za-z0-9_-]{22}$/);
    assert.equal(await v.tokenize('emails', 'ann@example.com'), e1);
    assert.notEqual(await v.tokenize('emails', 'bob@example.com'), e1);
    // concurrent first tokenizations of one value agree
    const many = await Promise.all(Array.from({ length: 20 }, () => v.tokenize('emails', 'race@example.com')));
    assert.equal(new Set(many).size, 1);
    // refusals
    for (const bad of ['4111111111111112', '411111111111', '0111111111111111', '4111 1111 1111 1111', '', 'x'.repeat(20)])
      await assert.rejects(v.tokenize('cards', bad), code('vault_value_invalid'), bad);
    await assert.rejects(v.tokenize('emails', 'x'.repeat(5000)), code('vault_value_invalid'));
    await assert.rejects(v.detokenize('emails', d1), code('vault_token_wrong_key'));
    await assert.rejects(v.detokenize('cards', 'tok_AAAAAAAAAAAAAAAAAAAAAA'), code('vault_token_not_found'));
    await assert.rejects(v.detokenize('cards', "' or 1=1 --"), code('vault_token_not_found'));
    await assert.rejects(v.detokenize('cards', CARD), code('vault_token_not_found'));
    await v.revokeToken('cards-det', d1);
    await assert.rejects(v.detokenize('cards-det', d1), code('vault_token_revoked'));
    const d2 = await v.tokenize('cards-det', CARD);
    assert.notEqual(d2, d1, 'a revoked deterministic token is replaced');
    await assert.rejects(v.revokeToken('emails', d2), code('vault_token_wrong_key'));
  }));

test('tokens survive key rotation and are rewrapped under the newest version; a value stored under a retired version no longer detokenizes', () =>
  withVault(async (v) => {
    await v.createKey('cards', { tokens: 'card' });
    const t = await v.tokenize('cards', CARD);
    await v.rotateKey('cards');
    assert.equal(await v.detokenize('cards', t), CARD);
    const other = await v.tokenize('cards', '5555555555554444');
    assert.deepEqual(await v.rewrapTokens('cards'), { tokens: 2, rewrapped: 1 });
    assert.deepEqual(await v.rewrapTokens('cards'), { tokens: 2, rewrapped: 0 });
    await v.setMinDecryptionVersion('cards', 2);
    assert.equal(await v.detokenize('cards', t), CARD, 'rewrapped: still detokenizes');
    assert.equal(await v.detokenize('cards', other), '5555555555554444');
    await v.rotateKey('cards');
    const stale = await v.tokenize('cards', '378282246310005');
    await v.setMinDecryptionVersion('cards', 1);
    await v.rotateKey('cards');
    await v.rotateKey('cards');
    await v.setMinDecryptionVersion('cards', 5);
    await assert.rejects(v.detokenize('cards', stale), code('vault_version_retired'));
  }));

test('PostgreSQL store: the same operations; two vaults on one schema', async (t) => {
  const pg = await postgresForTests();
  if ('skip' in pg) return t.skip(pg.skip);
  const tmp = tempDir('gh-vault-');
  const key = Buffer.alloc(32, 3).toString('hex');
  try {
    const a = await openVault({ stateDir: tmp.dir, storage: pg.url, env: { GATEHOUSE_MASTER_KEY: key } });
    const b = await openVault({ stateDir: tmp.dir, storage: pg.url, env: { GATEHOUSE_MASTER_KEY: key } });
    assert.equal(a.kind, 'postgres');
    await a.createKey('pii');
    await a.createKey('cards', { tokens: 'card', deterministic: true });
    const ct = await a.encrypt('pii', 'hello', 'c');
    await b.rotateKey('pii');
    assert.equal((await b.decrypt('pii', ct, 'c')).toString(), 'hello');
    assert.equal(parseCiphertext(await b.rewrap('pii', ct, 'c')).version, 2);
    const tokens = await Promise.all([a.tokenize('cards', CARD), b.tokenize('cards', CARD), a.tokenize('cards', CARD)]);
    assert.equal(new Set(tokens).size, 1);
    assert.equal(await b.detokenize('cards', tokens[0]), CARD);
    assert.deepEqual((await b.listKeys()).map((k) => k.name), ['cards', 'pii']);
    await a.close();
    await b.close();
    await assert.rejects(openVault({ stateDir: tmp.dir, storage: pg.url, env: { GATEHOUSE_MASTER_KEY: Buffer.alloc(32, 4).toString('hex') } }), /refusing to start/);
  } finally {
    await pg.drop();
    tmp.remove();
  }
});

test('streams: envelope encryption with crypto_secretstream; tampered, truncated, extended or wrong-context streams refused', () =>
  withVault(async (v) => {
    const { encryptStream, decryptStream } = await import('../src/vault/index.ts');
    const { pipeline } = await import('node:stream/promises');
    const { Readable, Writable } = await import('node:stream');
    const { randomBytes } = await import('node:crypto');
    await v.createKey('files');
    const run = async (input: Buffer, t: import('node:stream').Transform) => {
      const out: Buffer[] = [];
      await pipeline(Readable.from([input.subarray(0, 1000), input.subarray(1000)]), t, new Writable({ write: (c, _e, cb) => (out.push(c), cb()) }));
      return Buffer.concat(out);
    };
    for (const size of [0, 1, 65536, 300_000]) {
      const data = randomBytes(size);
      const sealed = await run(data, encryptStream(v, 'files', 'invoice/1'));
      if (size >= 16) assert.ok(!sealed.includes(data.subarray(0, 16)), 'no plaintext in the stream');
      assert.deepEqual(await run(sealed, decryptStream(v, 'files', 'invoice/1')), data);
    }
    const data = randomBytes(200_000);
    const sealed = await run(data, encryptStream(v, 'files', 'invoice/1'));
    const refusedWith = async (bytes: Buffer, context = 'invoice/1') => {
      try {
        await run(bytes, decryptStream(v, 'files', context));
        return 'accepted';
      } catch (e) {
        return (e as GatehouseError).code;
      }
    };
    assert.equal(await refusedWith(sealed.subarray(0, sealed.length - 10)), 'vault_ciphertext_malformed');
    assert.equal(await refusedWith(sealed.subarray(0, sealed.length - 65536 - 17 - 4)), 'vault_ciphertext_malformed');
    const flipped = Buffer.from(sealed);
    flipped[sealed.length - 100] ^= 1;
    assert.equal(await refusedWith(flipped), 'vault_decrypt_failed');
    assert.equal(await refusedWith(Buffer.concat([sealed, sealed.subarray(sealed.length - 30)])), 'vault_ciphertext_malformed');
    assert.equal(await refusedWith(sealed, 'invoice/2'), 'vault_decrypt_failed');
    assert.equal(await refusedWith(Buffer.from('not a stream at all')), 'vault_ciphertext_malformed');
  }));
