// createClient: egress allow-list before any socket, the server's SPIFFE ID
// checked, and certificates renewed through the CA and swapped in without
// dropping connections; an identity that cannot renew raises an alert.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { makeCaDir, captureLogger, rogueCa, forge, uri, TD } from './support/pki-fixtures.ts';
import {
  issueWorkloadIdentity,
  localRevocations,
  startCaServer,
  createJoinToken,
  bootstrapIdentity,
  createIdentityManager,
  type CaServer,
  type WorkloadIdentity,
} from '../src/pki/index.ts';
import { createService, createClient, GatehouseError, type MeshService } from '../src/mesh/index.ts';
import { frozenClock } from '../src/shared/clock.ts';

const id = (zone: string, svc: string) => `spiffe://${TD}/zone/${zone}/svc/${svc}`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let ca: CaServer;
const services: Record<string, MeshService> = {};
const connections: Record<string, number> = {};
const ids: Record<string, WorkloadIdentity> = {};
const logs = captureLogger('client');

before(async () => {
  env = await makeCaDir();
  ca = await startCaServer({ topology: env.topology, stateDir: env.stateDir, logger: captureLogger('ca').logger });
  for (const [name, zone] of [['orders', 'private'], ['payments', 'private'], ['reporting', 'private'], ['checkout', 'public']]) {
    ids[name] = await issueWorkloadIdentity(env.stateDir, id(zone, name));
    if (name === 'checkout') continue;
    connections[name] = 0;
    services[name] = await createService({
      name,
      topology: env.topology,
      identity: ids[name],
      revocations: localRevocations(env.stateDir),
      logger: logs.logger,
      handler: (_req, res, ctx) => res.end(JSON.stringify({ service: name, caller: ctx.caller.name })),
    });
    services[name].server.on('connection', () => connections[name]++);
  }
});
after(async () => {
  for (const s of Object.values(services)) await s.close();
  await ca.close();
  env.cleanup();
});

const checkoutClient = (resolve: (s: string) => string | undefined = (s) => services[s]?.url) =>
  createClient({ name: 'checkout', topology: env.topology, identity: ids.checkout, resolve, revocations: localRevocations(env.stateDir), logger: logs.logger });

test('calls an allowed service with its own certificate', async () => {
  const client = checkoutClient();
  try {
    const r = await client.request('orders', { method: 'POST', path: '/orders', body: '{}' });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body.toString()), { service: 'orders', caller: 'checkout' });
  } finally {
    client.close();
  }
});

test('egress outside the allow-list is refused before any socket opens', async () => {
  const client = checkoutClient();
  try {
    const before = connections.reporting;
    await assert.rejects(client.request('reporting', { path: '/orders' }), (e: unknown) => e instanceof GatehouseError && e.code === 'egress_denied');
    await assert.rejects(client.request('api.example.com:443'), (e: unknown) => e instanceof GatehouseError && e.code === 'egress_denied');
    await assert.rejects(client.request(`127.0.0.1:${new URL(services.reporting.url).port}`), (e: unknown) => e instanceof GatehouseError && e.code === 'egress_denied');
    await assert.rejects(client.request('nonexistent'), (e: unknown) => e instanceof GatehouseError && e.code === 'egress_denied');
    assert.equal(connections.reporting, before, 'a socket was opened');
    assert.equal(client.mayCall('payments'), true);
    assert.equal(client.mayCall('reporting'), false);
    const m = await client.registry.getSingleMetric('gatehouse_mesh_client_requests_total')!.get();
    assert.equal(m.values.filter((v) => v.labels.outcome === 'egress_denied').reduce((n, v) => n + v.value, 0), 4);
  } finally {
    client.close();
  }
});

test("the server must be the service named, not just any workload of the trust domain", async () => {
  // `payments` is allowed egress, but its address answers with orders' certificate.
  const client = checkoutClient((s) => (s === 'payments' ? services.orders.url : services[s]?.url));
  try {
    await assert.rejects(client.request('payments', { path: '/payments' }), (e: unknown) => e instanceof GatehouseError && e.code === 'upstream_identity_mismatch');
  } finally {
    client.close();
  }
  // A server with a certificate from another CA, carrying orders' ID.
  const rogue = await rogueCa('private');
  const fake = await forge({ issuer: rogue.issuer, sans: [uri(id('private', 'orders'))] });
  const impostor = tls.createServer({ cert: fake.certPem, key: fake.keyPem }, (s) => s.end());
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
  const port = (impostor.address() as import('node:net').AddressInfo).port;
  const c2 = checkoutClient(() => `https://127.0.0.1:${port}`);
  try {
    await assert.rejects(c2.request('orders'), (e: unknown) => e instanceof GatehouseError && e.code === 'bad_gateway');
  } finally {
    c2.close();
    impostor.close();
  }
});

test('certificates renew through the CA and are swapped in without dropping connections', async () => {
  const token = createJoinToken({ stateDir: env.stateDir, topology: env.topology, service: 'payments' }).token;
  const first = await bootstrapIdentity({ caUrl: ca.url, joinToken: token, service: 'payments', trustDomain: TD, bundlePem: ca.bundlePem });
  const manager = createIdentityManager({ initial: first, caUrl: ca.url, trustDomain: TD });
  let secure = 0;
  const svc = await createService({
    name: 'payments',
    topology: env.topology,
    identity: manager,
    revocations: localRevocations(env.stateDir),
    logger: logs.logger,
    handler: (_req, res) => res.end('ok'),
  });
  svc.server.on('secureConnection', () => secure++);
  const client = checkoutClient((s) => (s === 'payments' ? svc.url : undefined));
  try {
    assert.equal((await client.request('payments', { path: '/x' })).status, 403); // no edge checkout→payments: denied, but connected
    const rotated = new Promise((r) => manager.once('rotated', r));
    const second = await manager.renewNow();
    await rotated;
    assert.notEqual(second.serial, first.serial);
    // The kept-alive connection survives the swap.
    assert.equal((await client.request('payments', { path: '/x' })).status, 403);
    assert.equal(secure, 1, 'the connection was dropped');
    // A new connection sees the new certificate.
    const serial = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: Number(new URL(svc.url).port), ca: ca.bundlePem, cert: ids.checkout.certPem, key: ids.checkout.keyPem, checkServerIdentity: () => undefined }, () => {
        resolve(s.getPeerX509Certificate()!.serialNumber.toLowerCase().replace(/^0+/, ''));
        s.destroy();
      });
      s.on('error', reject);
    });
    assert.equal(serial, second.serial);
  } finally {
    client.close();
    manager.close();
    await svc.close();
  }
});

test('an identity that cannot renew raises an alert well before it expires', async () => {
  const short = await issueWorkloadIdentity(env.stateDir, id('private', 'orders'), { ttlSeconds: 600 });
  const clock = frozenClock(short.notBefore.getTime() + 500_000); // 100 s (< 25%) left
  const manager = createIdentityManager({ initial: short, caUrl: 'https://127.0.0.1:1', trustDomain: TD, clock });
  try {
    const alert = new Promise<{ kind: string; remainingMs: number }>((r) => manager.once('alert', r));
    await assert.rejects(manager.renewNow());
    const a = await alert;
    assert.equal(a.kind, 'certificate_expiring');
    assert.ok(a.remainingMs > 0);
  } finally {
    manager.close();
  }
});
