// Config changes are security events: the control plane's start, and every
// new revision of the bundles with what changed and who changed it (an
// operator's quarantine, a detector's, an edit of the topology file, a
// release, a quarantine ending); a periodic re-sign is no change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { initCa } from '../src/pki/index.ts';
import { startControlServer } from '../src/control/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';

const closer = closeAfterAll();
const dir = tempDir('gh-config-events-');
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(file, `version: 1\ntrustDomain: config-events.test\nzones:\n  public:\n    authority: { listen: 127.0.0.1:0 }\n`);
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: createLogger({ name: 'test', level: 'silent' }) });
closer(() => control.close());
const changes = async () =>
  (await (await request(`${control.adminUrl}/events?type=config_change&since=1h`)).body.json()) as { code: string; count?: number; detail: string; pep: string }[];

test('the start and each new revision are config_change events naming what changed and who changed it; a re-sign is none', async () => {
  const [started] = await until('started', changes, (l) => l.length >= 1);
  assert.equal(started.code, 'started');
  assert.equal(started.pep, 'spiffe://config-events.test/control');
  assert.match(started.detail, /started at revision \d+/);

  const add = await request(`${control.adminUrl}/quarantines`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scope: 'client', value: 'leaky', for: '2s', reason: 'test' }) });
  assert.equal(add.statusCode, 201);
  const { revision } = (await add.body.json()) as { revision: number };
  const published = await until('published', changes, (l) => l.some((e) => e.count === revision));
  assert.equal(published.find((e) => e.count === revision)!.detail, `revision ${revision}: quarantine of client leaky added by operator`);
  // it ends by itself: a new revision says so
  await until('ended', changes, (l) => l.some((e) => e.detail.endsWith('a quarantine ended')), 6000);

  writeFileSync(file, readFileSync(file, 'utf8') + '  private:\n    authority: { listen: 127.0.0.1:0 }\n');
  const edited = await until('edit', changes, (l) => l.some((e) => e.detail.includes('the topology file')));
  assert.match(edited.at(-1)!.detail, new RegExp(`revision \\d+: the topology file ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} changed`));

  const before = (await changes()).length;
  await control.publish({ force: true }); // the periodic re-sign: same content, same revision
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await changes()).length, before);
});
