// The vault as a source of security events: a caller it refuses (no grant for
// the key and operation) is a vault_denied event at the control plane, sent
// over mTLS with the vault's own certificate and attributed to
// spiffe://<td>/vault; the vault's certificate is good for sending events and
// nothing else there (no bundle); a workload refused by the vault and by mesh
// peers adds up to lateral movement.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { initCa, issueWorkloadIdentity, serviceSpiffeId, vaultSpiffeId, type WorkloadIdentity } from '../src/pki/index.ts';
import { startControlServer } from '../src/control/index.ts';
import { startVaultServer, createVaultClient } from '../src/vault/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';
import { sendEvents } from './support/monitor-events.ts';

const TD = 'vault-events.test';
const quiet = createLogger({ name: 'test', level: 'silent' });
const closer = closeAfterAll();
const dir = tempDir('gh-vault-events-');
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  `version: 1
trustDomain: ${TD}
zones:
  private:
    gateway: { listen: 127.0.0.1:0, tls: dev }
services:
  orders: { zone: private, upstream: http://127.0.0.1:1 }
  reports: { zone: private, upstream: http://127.0.0.1:1 }
  payments: { zone: private, upstream: http://127.0.0.1:1 }
vault:
  listen: 127.0.0.1:0
  keys:
    orders-pii: { encrypt: [orders], decrypt: [orders] }
monitor:
  detectors:
    lateral: { threshold: 3, windowSeconds: 60, quarantineFor: 5m }
`,
);
const { topology } = loadTopology(file);
await initCa({ stateDir: dir, topology, passphrase: 'correct horse battery staple' });
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
closer(() => control.close());
const vault = await startVaultServer({ config: file, stateDir: dir, logger: quiet, env: {}, control: control.bundlesUrl });
closer(() => vault.close());
const ids: Record<string, WorkloadIdentity> = {};
for (const s of ['orders', 'reports']) ids[s] = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'private', s), { topology });
const events = async (type: string) => (await (await request(`${control.adminUrl}/events?type=${type}&since=1h`)).body.json()) as Record<string, unknown>[];

test('a refused caller is a vault_denied event attributed to the vault; a granted one is none', async () => {
  const ok = await createVaultClient({ url: vault.url, identity: ids.orders }).encrypt('orders-pii', Buffer.from('x'), 'ctx');
  assert.match(ok, /^gh:v1:/);
  await assert.rejects(createVaultClient({ url: vault.url, identity: ids.reports }).decrypt('orders-pii', ok, 'ctx'), /not/);
  const [e] = await until('vault_denied', () => events('vault_denied'), (l) => l.length >= 1);
  assert.equal(e.pep, vaultSpiffeId(TD));
  assert.equal(e.code, 'vault_not_allowed');
  assert.equal(e.peer, serviceSpiffeId(TD, 'private', 'reports'));
  assert.equal(e.detail, 'decrypt orders-pii');
  assert.equal((await events('vault_denied')).length, 1, 'the granted call sent nothing');
});

test("the vault's certificate sends events and nothing else: no bundle for it", async () => {
  const v = (await import('../src/vault/lib/server-identity.ts')).issueVaultIdentity;
  const id = await v({ stateDir: dir, names: ['127.0.0.1'], clock: { now: () => Date.now() }, env: {} });
  const status = await new Promise<number>((resolve, reject) => {
    const req = https.request(`${control.bundlesUrl}/vault.bundle`, { cert: id.certPem, key: id.keyPem, ca: undefined, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(status, 403);
});

test('refused by the vault and by two mesh peers: lateral movement, the workload quarantined', async () => {
  await sendEvents(dir, control.url, serviceSpiffeId(TD, 'private', 'orders'), [{ type: 'edge_denied', code: 'no_edge', peer: serviceSpiffeId(TD, 'private', 'reports'), path: '/a' }]);
  await sendEvents(dir, control.url, serviceSpiffeId(TD, 'private', 'payments'), [{ type: 'edge_denied', code: 'no_edge', peer: serviceSpiffeId(TD, 'private', 'reports'), path: '/b' }]);
  const list = await until(
    'reports quarantined',
    async () => (await (await request(`${control.adminUrl}/quarantines`)).body.json()) as { scope: string; value: string; origin: string }[],
    (l) => l.some((q) => q.scope === 'service' && q.value === 'reports'),
  );
  assert.equal(list.find((q) => q.value === 'reports')!.origin, 'detector:lateral');
});
