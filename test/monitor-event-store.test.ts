// The control plane's event store, SQLite (the default) and PostgreSQL
// (monitor.storage: postgres://…), through the same cases: a known id is
// stored once, queries answer newest last by receive time (one type, a
// limit keeping the newest), retention prunes what is older (never the
// future). Then end to end: a control plane keeping its events in PostgreSQL
// answers `gatehouse events --since 10m --type auth_failure --json`.
// PostgreSQL at 127.0.0.1:5432 (db test, $GATEHOUSE_TEST_PG): skipped with
// the reason when unreachable, required under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openEventStore, type EventStore } from '../src/monitor/event-store.ts';
import type { SecurityEvent } from '../src/monitor/event.ts';
import { initCa, gatewaySpiffeId } from '../src/pki/index.ts';
import { authoritySpiffeId } from '../src/pki/spiffe-id.ts';
import { startControlServer } from '../src/control/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { postgresForTests } from './support/authority-harness.ts';
import { sendEvents } from './support/monitor-events.ts';

const NOW = Date.parse('2026-11-27T12:00:00.000Z');
const clock = { now: () => NOW };
const pg = await postgresForTests();
const skipPg = 'skip' in pg ? pg.skip : false;
if (skipPg) console.log(`# postgres event store tests skipped: ${skipPg}`);

function ev(type: SecurityEvent['type'], receivedMsAgo: number, over: Partial<SecurityEvent> = {}): SecurityEvent {
  const t = new Date(NOW - receivedMsAgo).toISOString();
  return { schema: 'gatehouse.event/v1', id: randomUUID(), time: t, received: t, pep: 'spiffe://s.test/zone/a/gateway', type, code: 'x', ...over } as SecurityEvent;
}

async function sameQueries(store: EventStore): Promise<void> {
  const old = ev('auth_failure', 3 * 3600_000, { source: '10.0.0.1' });
  const a = ev('auth_failure', 5 * 60_000, { source: '10.0.0.2', account: 'alice' });
  const b = ev('request_refused', 4 * 60_000, { status: 404, path: '/x' });
  const c = ev('auth_failure', 3 * 60_000, { source: '10.0.0.3' });
  assert.equal(await store.add([old, a, b]), 3);
  assert.equal(await store.add([a, c]), 1, 'a known id is stored once');
  assert.equal(await store.add([]), 0);
  const since10m = NOW - 10 * 60_000;
  assert.deepEqual((await store.query({ since: since10m })).map((e) => e.id), [a.id, b.id, c.id], 'newest last');
  assert.deepEqual((await store.query({ since: since10m, type: 'auth_failure' })).map((e) => e.id), [a.id, c.id]);
  assert.deepEqual(await store.query({ since: since10m, type: 'auth_failure', limit: 1 }), [c], 'the limit keeps the newest; the event comes back whole');
  assert.deepEqual((await store.query({ since: 0, type: 'auth_failure' })).map((e) => e.id), [old.id, a.id, c.id]);
  // retention: older than 1 h goes; a cut-off in the future never empties the store
  assert.equal(await store.prune(NOW - 3600_000), 1);
  assert.deepEqual((await store.query({ since: 0 })).map((e) => e.id), [a.id, b.id, c.id]);
  assert.equal(await store.prune(NOW + 3600_000), 3, 'clamped to now: everything received before now');
  assert.deepEqual(await store.query({ since: 0 }), []);
}

test('sqlite: the same queries', async () => {
  const store = await openEventStore({ stateDir: tempDir('gh-events-sqlite-'), clock });
  try {
    assert.equal(store.kind, 'sqlite');
    await sameQueries(store);
  } finally {
    await store.close();
  }
});

test('postgres: the same queries', { skip: skipPg }, async () => {
  const url = (pg as { url: string }).url;
  const store = await openEventStore({ stateDir: tempDir('gh-events-pg-'), clock, storage: url });
  try {
    assert.equal(store.kind, 'postgres');
    await sameQueries(store);
  } finally {
    await store.close();
  }
  // opened again: the table is there, nothing is lost or duplicated
  const again = await openEventStore({ stateDir: tempDir('gh-events-pg-'), clock, storage: url });
  try {
    const e = ev('lockout', 1000);
    assert.equal(await again.add([e]), 1);
    assert.deepEqual(await again.query({ since: 0 }), [e]);
  } finally {
    await again.close();
  }
});

test('end to end: a control plane keeping its events in PostgreSQL answers gatehouse events --since 10m --type auth_failure --json', { skip: skipPg }, async () => {
  const dir = tempDir('gh-events-pg-e2e-');
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, `version: 1\ntrustDomain: events.test\nzones:\n  public:\n    gateway: { listen: 127.0.0.1:0, tls: dev }\n    authority: { listen: 127.0.0.1:0 }\nmonitor:\n  storage: ${JSON.stringify((pg as { url: string }).url)}\n`);
  await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
  const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: createLogger({ name: 'test', level: 'silent' }) });
  try {
    const authority = authoritySpiffeId('events.test', 'public');
    assert.equal(await sendEvents(dir, control.url, authority, [{ type: 'auth_failure', code: 'login', source: '198.51.100.9', account: 'mallory', detail: 'bad credentials' }]), 202);
    assert.equal(await sendEvents(dir, control.url, gatewaySpiffeId('events.test', 'public'), [{ type: 'request_refused', code: 'not_found', status: 404, path: '/admin', source: '198.51.100.9' }]), 202);
    const main = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [main, 'events', '--since', '10m', '--type', 'auth_failure', '--json', '--state-dir', dir], { encoding: 'utf8' }, (e, stdout, stderr) => (e ? reject(new Error(stderr)) : resolve(stdout))),
    );
    const list = JSON.parse(out) as SecurityEvent[];
    assert.equal(list.length, 1);
    assert.deepEqual([list[0].type, list[0].account, list[0].pep], ['auth_failure', 'mallory', authority]);
  } finally {
    await control.close();
    await (pg as { drop(): Promise<void> }).drop();
  }
});
