import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from '../../../test/support/pki-fixtures.ts';
import { lineageDirs, recordIssued, descendantsOf, ancestorsOf, lineageOf, pruneLineages } from './lineage.ts';

const ID = 'spiffe://test.local/zone/private/svc/orders';
const HOUR = 3600_000;

function ledger() {
  const t = tempDir('gh-lineage-');
  return { dirs: lineageDirs(t.dir), cleanup: t.cleanup };
}
const put = (dirs: ReturnType<typeof lineageDirs>, serial: string, parent: string | undefined, notAfter: number) =>
  recordIssued(dirs, { serial, parent, spiffeId: ID, issuedAt: new Date(notAfter - HOUR), notAfter: new Date(notAfter) });

test('a renewal inherits its lineage; descendants and ancestors follow the parents', (t) => {
  const { dirs, cleanup } = ledger();
  t.after(cleanup);
  const now = Date.now();
  put(dirs, 'a1', undefined, now + HOUR);
  put(dirs, 'b1', 'a1', now + HOUR);
  put(dirs, 'c1', 'b1', now + HOUR);
  put(dirs, 'a2', 'a1', now + HOUR);
  put(dirs, 'f0', undefined, now + HOUR);
  assert.equal(lineageOf(dirs, 'C1'), 'a1');
  assert.deepEqual(new Set(descendantsOf(dirs, 'a1')), new Set(['b1', 'c1', 'a2']));
  assert.deepEqual(descendantsOf(dirs, 'b1'), ['c1']);
  assert.deepEqual(descendantsOf(dirs, 'f0'), []);
  assert.deepEqual(ancestorsOf(dirs, 'c1'), ['b1', 'a1']);
  // a parent the ledger never saw begins a lineage, recorded on the spot
  put(dirs, 'e2', 'e1', now + HOUR);
  assert.equal(lineageOf(dirs, 'e2'), 'e1');
  assert.deepEqual(descendantsOf(dirs, 'e1'), ['e2']);
  // a serial is recorded once
  assert.throws(() => put(dirs, 'b1', 'a1', now + HOUR), /EEXIST/);
  // hostile names never become paths
  assert.equal(lineageOf(dirs, '../../etc/passwd'), undefined);
  assert.deepEqual(descendantsOf(dirs, '../x'), []);
  assert.throws(() => put(dirs, '../x', undefined, now), /hexadecimal/);
});

test('a damaged record that makes a cycle does not loop', (t) => {
  const { dirs, cleanup } = ledger();
  t.after(cleanup);
  const now = Date.now();
  put(dirs, 'a1', undefined, now + HOUR);
  put(dirs, 'b1', 'a1', now + HOUR);
  writeFileSync(
    path.join(dirs.lineages, 'a1', 'a1.json'),
    JSON.stringify({ serial: 'a1', parent: 'b1', lineage: 'a1', spiffeId: ID, issuedAt: '', notAfter: new Date(now + HOUR).toISOString() }),
  );
  assert.deepEqual(ancestorsOf(dirs, 'b1'), ['a1']);
  assert.deepEqual(descendantsOf(dirs, 'a1'), ['b1']);
});

test('a lineage is pruned only when every certificate in it has expired', (t) => {
  const { dirs, cleanup } = ledger();
  t.after(cleanup);
  const now = Date.now();
  put(dirs, 'a1', undefined, now - 2 * HOUR);
  put(dirs, 'b1', 'a1', now - HOUR);
  put(dirs, 'd1', undefined, now - 2 * HOUR);
  put(dirs, 'd2', 'd1', now + HOUR); // still alive: its ancestors must stay to link it
  assert.equal(pruneLineages(dirs, now), 1);
  assert.equal(existsSync(path.join(dirs.lineages, 'a1')), false);
  assert.equal(lineageOf(dirs, 'b1'), undefined);
  assert.deepEqual(descendantsOf(dirs, 'd1'), ['d2']);
});
