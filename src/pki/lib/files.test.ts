import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { tempDir } from '../../../test/support/pki-fixtures.ts';
import { createOnce, StateWriteError, writeAtomic } from './files.ts';
import { RevocationStore } from './revocations.ts';
import { lineageDirs, lineageOf, recordIssued } from './lineage.ts';
import { newTokenSecret, storeToken } from './join-tokens.ts';

const ID = 'spiffe://test.local/zone/private/svc/orders';

/** Every file under `dir`, relative, sorted. */
function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)) + (e.isDirectory() ? '/' : ''))
    .sort();
}

test('writeAtomic replaces a file whole; a failure names the file and leaves no temporary', (t) => {
  const tmp = tempDir('gh-files-');
  t.after(tmp.cleanup);
  const file = path.join(tmp.dir, 'ca.json');
  writeAtomic(file, 'one\n', 0o644);
  writeAtomic(file, 'two\n', 0o644);
  assert.equal(readFileSync(file, 'utf8'), 'two\n');
  assert.deepEqual(files(tmp.dir), ['ca.json']);

  const missing = path.join(tmp.dir, 'absent', 'key.pem');
  assert.throws(
    () => writeAtomic(missing, 'secret key bytes'),
    (e: unknown) => {
      assert.ok(e instanceof StateWriteError);
      assert.equal(e.message, `cannot write ${missing}: no such file or directory (ENOENT)`);
      assert.equal(e.code, 'ENOENT');
      assert.equal(e.path, missing);
      return true;
    },
  );
  assert.deepEqual(files(tmp.dir), ['ca.json']);
});

test('createOnce creates a file exactly once, and leaves no temporary either way', (t) => {
  const tmp = tempDir('gh-files-');
  t.after(tmp.cleanup);
  const file = path.join(tmp.dir, 'abc.json');
  assert.equal(createOnce(file, '{"first":true}\n', 0o644), true);
  assert.equal(createOnce(file, '{"second":true}\n', 0o644), false);
  assert.equal(readFileSync(file, 'utf8'), '{"first":true}\n');
  assert.deepEqual(files(tmp.dir), ['abc.json']);
  assert.throws(() => createOnce(path.join(tmp.dir, 'no', 'x.json'), '{}'), { name: 'StateWriteError', code: 'ENOENT' });
});

test('a revocation record left empty by an older version is completed by the next revoke', (t) => {
  const tmp = tempDir('gh-files-');
  t.after(tmp.cleanup);
  const store = new RevocationStore(tmp.dir, 0);
  writeFileSync(path.join(tmp.dir, 'ab12.json'), '');
  assert.equal(store.add('AB:12', new Date('2030-01-01T00:00:00Z'), 'retry'), false, 'already revoked (by name)');
  assert.deepEqual(JSON.parse(readFileSync(path.join(tmp.dir, 'ab12.json'), 'utf8')), { serial: 'ab12', revokedAt: '2030-01-01T00:00:00.000Z', reason: 'retry' });
  // a whole record is kept as it is
  assert.equal(store.add('ab12', new Date('2031-01-01T00:00:00Z'), 'again'), false);
  assert.equal(JSON.parse(readFileSync(path.join(tmp.dir, 'ab12.json'), 'utf8')).reason, 'retry');
});

test('a lineage record whose index entry cannot be written is removed again (with the folder it made)', (t) => {
  const tmp = tempDir('gh-files-');
  t.after(tmp.cleanup);
  const dirs = lineageDirs(tmp.dir);
  mkdirSync(dirs.issued, { recursive: true });
  writeFileSync(path.join(dirs.issued, 'c0ffee'), 'someone\n'); // the index entry exists already
  assert.throws(() => recordIssued(dirs, { serial: 'c0ffee', spiffeId: ID, issuedAt: new Date(), notAfter: new Date(Date.now() + 3600_000) }), {
    name: 'StateWriteError',
    code: 'EEXIST',
    message: `cannot write ${path.join(dirs.issued, 'c0ffee')}: file already exists (EEXIST)`,
  });
  assert.deepEqual(files(tmp.dir), ['issued/', 'issued/c0ffee', 'lineages/']);
});

/** A 64 KiB tmpfs, filled to the last byte; or why it cannot be made (not root, no mount). */
function fullDisk(): { dir: string; free(): void; close(): void } | { skip: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-files-disk-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `cannot mount a tmpfs (${(r.stderr || r.error?.message || `exit ${r.status}`).trim()})` };
  }
  const filler = path.join(dir, 'filler');
  const fd = openSync(filler, 'a');
  try {
    for (;;) writeSync(fd, Buffer.alloc(4096, 1));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  return {
    dir,
    free: () => rmSync(filler, { force: true }),
    close() {
      spawnSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

test('on a full disk every pki writer fails naming where, and stores nothing; once space is freed it stores whole records', (t) => {
  const disk = fullDisk();
  if ('skip' in disk) return void t.skip(disk.skip);
  t.after(() => disk.close());
  const pki = path.join(disk.dir, 'pki');
  const revoked = path.join(pki, 'revoked');
  const tokens = path.join(pki, 'tokens');
  for (const d of [revoked, tokens]) mkdirSync(d, { recursive: true }); // folders take no space on tmpfs
  const dirs = lineageDirs(pki);
  const before = files(disk.dir);
  const enospc = (file: string) => ({ name: 'StateWriteError', code: 'ENOSPC', message: `cannot write ${file}: no space left on device (ENOSPC)` });

  // writeAtomic over an existing file: the old bytes stay (written while there was room: an empty file)
  const meta = path.join(disk.dir, 'filler');
  assert.throws(() => writeAtomic(meta, 'x'.repeat(8192)), enospc(meta));

  const store = new RevocationStore(revoked, 0);
  assert.throws(() => store.add('abc1', new Date(), 'full'), enospc(path.join(revoked, 'abc1.json')));
  assert.equal(store.hasNow('abc1'), false, 'a failed revocation revokes nothing');

  assert.throws(
    () => recordIssued(dirs, { serial: 'beef', spiffeId: ID, issuedAt: new Date(), notAfter: new Date(Date.now() + 3600_000) }),
    enospc(path.join(dirs.lineages, 'beef', 'beef.json')),
  );
  assert.equal(lineageOf(dirs, 'beef'), undefined);

  const token = newTokenSecret();
  assert.throws(
    () => storeToken(tokens, token, { service: 'orders', spiffeId: ID, createdAt: '', expiresAt: '' }),
    (e: unknown) => {
      assert.ok(e instanceof StateWriteError);
      assert.equal(e.message, `cannot write a join token record in ${tokens}: no space left on device (ENOSPC)`);
      assert.ok(!e.message.includes(token.slice(5, 20)), 'never the token');
      return true;
    },
  );
  assert.deepEqual(files(disk.dir), [...before, 'pki/issued/', 'pki/lineages/'].sort(), 'no record, no temporary, no lineage folder');

  disk.free();
  assert.equal(store.add('abc1', new Date('2030-01-01T00:00:00Z'), 'full'), true, 'the retry revokes');
  assert.equal(JSON.parse(readFileSync(path.join(revoked, 'abc1.json'), 'utf8')).reason, 'full');
  recordIssued(dirs, { serial: 'beef', spiffeId: ID, issuedAt: new Date(), notAfter: new Date(Date.now() + 3600_000) });
  assert.equal(lineageOf(dirs, 'beef'), 'beef');
  storeToken(tokens, token, { service: 'orders', spiffeId: ID, createdAt: '', expiresAt: '' });
  assert.equal(readdirSync(tokens).filter((f) => f.endsWith('.json')).length, 1);
  assert.ok(!files(disk.dir).some((f) => f.endsWith('.tmp')), 'no temporary left');
  assert.ok(existsSync(path.join(dirs.lineages, 'beef', 'beef.json')));
});
