// Enforcement points following the control plane: a gateway enforces the
// routes of its bundle (a change applies live, without dropping connections),
// refuses everything with no bundle in force (none yet, expired, tampered on
// disk) and says so on /readyz; a mesh service and client take their edges and
// egress from their bundle the same way.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { request, Agent } from 'undici';
import { initCa, issueWorkloadIdentity, serviceSpiffeId, createIdentityManager } from '../src/pki/index.ts';
import { startControlServer, exportBundles, createBundleClient, type ControlServer } from '../src/control/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { createService, createClient, meshPolicyFromBundles } from '../src/mesh/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { startUpstream, tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';

const TD = 'peps.test';
const quiet = createLogger({ name: 'test', level: 'silent' });
const upstream = await startUpstream();
const dir = tempDir('gh-peps-');
const file = path.join(dir, 'gatehouse.yaml');
const topology = (routes: string, ordersAllow = 'methods: [GET]') => `
version: 1
trustDomain: ${TD}
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 } }
    routes:
${routes}
services:
  app:
    zone: edge
    upstream: ${upstream.url}
    egress: [orders]
  orders:
    zone: edge
    upstream: ${upstream.url}
    allow:
      - caller: app
        ${ordersAllow}
        paths: [{ path: /orders, match: prefix }]
`;
const ROUTE_A = `      - { name: a, path: /a, service: app, auth: anonymous }`;
const ROUTE_B = `      - { name: b, path: /b, service: app, auth: anonymous }`;
writeFileSync(file, topology(ROUTE_A));
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });

const closer = closeAfterAll();
closer(() => upstream.close());

let control: ControlServer = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
closer(() => control.close());
const edge = new Agent({ connect: { rejectUnauthorized: false } }); // the dev CA is made by the first gateway; TLS itself is not under test here
closer(() => edge.close());

async function get(gw: RunningGateway, p: string): Promise<{ status: number; code?: string }> {
  const r = await request(`${gw.url}${p}`, { dispatcher: edge });
  const text = await r.body.text();
  return { status: r.statusCode, code: r.statusCode >= 400 ? (JSON.parse(text) as { code: string }).code : undefined };
}


async function gateway(bundles: { control?: string; bundles?: string }, stateDir = dir): Promise<RunningGateway> {
  const gw = await startGateway({ config: file, zone: 'edge', stateDir, logger: quiet, accessLog: false, listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', bundles: { ...bundles, firstWaitMs: 300, pollIntervalMs: 100 } });
  closer(() => gw.close(100));
  return gw;
}

test('a gateway enforces the routes of its bundle; a topology change applies live, on open connections; status shows its revision', async () => {
  const gw = await gateway({ control: control.bundlesUrl });
  assert.equal(gw.state().revision, control.revision());
  assert.equal((await get(gw, '/a')).status, 200);
  assert.equal((await get(gw, '/b')).status, 404);
  const before = upstream.seen.length;
  writeFileSync(file, topology(`${ROUTE_A}\n${ROUTE_B}`));
  const t0 = Date.now();
  await until('route b', () => get(gw, '/b'), (r) => r.status === 200);
  assert.ok(Date.now() - t0 < 3000, `applied in ${Date.now() - t0} ms`);
  assert.equal(gw.state().revision, control.revision());
  assert.ok(upstream.seen.length > before);
  // the gateway reports the revision it enforces on its next poll
  await until('status', () => control.status().peps.find((p) => p.kind === 'gateway'), (p) => p?.revision === control.revision() && !p.stale);
  const metrics = await (await request(`${gw.adminUrl}/metrics`)).body.text();
  assert.match(metrics, new RegExp(`gatehouse_gateway_bundle_revision\\{zone="edge"\\} ${control.revision()}`));
  // the file removes it again: refused at once (404), the other route untouched
  writeFileSync(file, topology(ROUTE_A));
  await until('route b gone', () => get(gw, '/b'), (r) => r.status === 404);
  assert.equal((await get(gw, '/a')).status, 200);
});

test('with no bundle in force a gateway refuses every request (503 bundle_unavailable) and /readyz says why; exported files bring it up; an expired bundle closes it again', async () => {
  const out = tempDir('gh-peps-out-');
  const own = tempDir('gh-peps-gw-');
  // a fresh gateway state (no disk copy) sharing the trust domain's CA (its keys open with the master key in vault/)
  mkdirSync(path.join(own, 'gateway'), { recursive: true });
  for (const f of readdirSync(dir)) if (f === 'pki' || f === 'tls' || f === 'vault') (await import('node:fs')).cpSync(path.join(dir, f), path.join(own, f), { recursive: true });
  const gw = await gateway({ bundles: out }, own);
  assert.deepEqual(await get(gw, '/a'), { status: 503, code: 'bundle_unavailable' });
  assert.deepEqual(await get(gw, '/nowhere'), { status: 503, code: 'bundle_unavailable' });
  const ready = await request(`${gw.adminUrl}/readyz`);
  assert.equal(ready.statusCode, 503);
  assert.deepEqual(await ready.body.json(), { status: 'refusing', reason: 'no valid policy bundle is in force' });
  // the bundle arrives as a plain file (gatehouse control export), valid for 2 s only
  await exportBundles({ config: file, stateDir: dir, out, ttlSeconds: 2 });
  await until('served', () => get(gw, '/a'), (r) => r.status === 200);
  assert.equal((await request(`${gw.adminUrl}/readyz`)).statusCode, 200);
  // nothing newer arrives: once it expires, everything is refused again (fail closed)
  // (a bound for a loaded machine: the point is that it closes, not how fast)
  await until('expired', () => get(gw, '/a'), (r) => r.status === 503, 15_000);
  assert.equal((await get(gw, '/a')).code, 'bundle_unavailable');
});

test('control plane down: the gateway keeps its bundle; restarted with a tampered disk copy and no control plane, it refuses everything', async () => {
  const gw = await gateway({ control: control.bundlesUrl });
  assert.equal((await get(gw, '/a')).status, 200);
  const port = new URL(control.url).port;
  await control.close();
  await delay(200);
  assert.equal((await get(gw, '/a')).status, 200, 'serves on with its last bundle');
  await gw.close(100);
  // the disk copy (0600) is tampered with while everything is down
  const kept = path.join(dir, 'gateway', 'edge', 'bundles');
  const f = path.join(kept, readdirSync(kept)[0]);
  assert.equal((await import('node:fs')).statSync(f).mode & 0o777, 0o600);
  const bytes = readFileSync(f);
  bytes[bytes.length - 5] ^= 1;
  writeFileSync(f, bytes);
  const again = await gateway({ control: control.bundlesUrl });
  assert.deepEqual(await get(again, '/a'), { status: 503, code: 'bundle_unavailable' });
  const metrics = await (await request(`${again.adminUrl}/metrics`)).body.text();
  assert.match(metrics, /gatehouse_gateway_bundles_refused_total\{code="bundle_signature_invalid",zone="edge"\} 1/);
  // the control plane comes back on its address: the gateway converges
  control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet, listen: `127.0.0.1:${port}` });
  closer(() => control.close());
  await until('converged', () => get(again, '/a'), (r) => r.status === 200, 8000);
});

test('a PEP that refuses what it is served says so on its polls: gatehouse status shows the refusal and the PEP as stale', async () => {
  const id = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'app'));
  // a PEP whose clock runs ten hours ahead finds every bundle expired
  const skewed = createBundleClient({
    url: control.bundlesUrl,
    identity: id,
    trustDomain: TD,
    caBundle: id.bundlePem,
    stateDir: tempDir('gh-peps-skew-'),
    clock: { now: () => Date.now() + 10 * 3600_000 },
    waitSeconds: 1,
    pollIntervalMs: 100,
    retryMs: 50,
  });
  closer(() => skewed.close());
  const seen = await until('reported', () => control.status().peps.find((p) => p.id === id.spiffeId), (p) => p?.lastRefusal !== undefined);
  assert.deepEqual({ revision: seen!.revision, stale: seen!.stale, lastRefusal: seen!.lastRefusal }, { revision: 0, stale: true, lastRefusal: 'bundle_expired' });
  assert.equal(skewed.current(), undefined);
});

test('a mesh service and client take edges and egress from their bundle, live; no bundle: nothing in or out', async () => {
  const ordersId = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'orders'));
  const appId = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'app'));
  const t = loadTopology(file).topology;
  const bundleClient = (id: typeof appId, name: string) => {
    const c = createBundleClient({ url: control.bundlesUrl, identity: id, trustDomain: TD, caBundle: id.bundlePem, stateDir: path.join(dir, 'mesh', name), waitSeconds: 5, retryMs: 100 });
    closer(() => c.close());
    return c;
  };
  const ordersBundles = bundleClient(ordersId, 'orders');
  const appBundles = bundleClient(appId, 'app');
  await Promise.all([ordersBundles.waitFor(1), appBundles.waitFor(1)]);
  const orders = await createService({
    name: 'orders',
    topology: t,
    identity: createIdentityManager({ initial: ordersId, renew: async () => ordersId }),
    revocations: 'none',
    policy: meshPolicyFromBundles(ordersBundles, 'orders'),
    handler: (_req, res) => res.end('ok'),
    logger: quiet,
  });
  closer(() => orders.close());
  const client = createClient({
    name: 'app',
    topology: t,
    identity: appId,
    revocations: 'none',
    resolve: (s) => (s === 'orders' ? orders.url : undefined),
    policy: meshPolicyFromBundles(appBundles, 'app'),
    logger: quiet,
  });
  closer(async () => client.close());
  assert.equal((await client.request('orders', { path: '/orders/1' })).status, 200);
  assert.equal((await client.request('orders', { path: '/orders/1', method: 'POST' })).status, 403);
  // the edge gains POST in the file: enforced within the long-poll round trip
  const t0 = Date.now();
  writeFileSync(file, topology(ROUTE_A, 'methods: [GET, POST]').replace('egress: [orders]', 'egress: [orders]'));
  await until('POST allowed', async () => (await client.request('orders', { path: '/orders/1', method: 'POST' })).status, (s) => s === 200);
  assert.ok(Date.now() - t0 < 3000);
  // egress withdrawn: the client refuses to call at all
  writeFileSync(file, topology(ROUTE_A, 'methods: [GET, POST]').replace('egress: [orders]', 'egress: []'));
  await until('egress gone', () => client.mayCall('orders'), (v) => v === false);
  await assert.rejects(client.request('orders', { path: '/orders/1' }), (e: { code?: string }) => e.code === 'egress_denied');
  // a service whose bundle source has nothing in force admits nobody
  const empty = createBundleClient({ dir: tempDir('gh-peps-none-'), identity: ordersId, trustDomain: TD, caBundle: ordersId.bundlePem, stateDir: tempDir('gh-peps-none-state-'), pollIntervalMs: 100 });
  closer(() => empty.close());
  await empty.started;
  const closed = await createService({
    name: 'orders',
    topology: t,
    identity: ordersId,
    revocations: 'none',
    policy: meshPolicyFromBundles(empty, 'orders'),
    handler: (_req, res) => res.end('ok'),
    logger: quiet,
  });
  closer(() => closed.close());
  const direct = await request(`${closed.url}/orders/1`, {
    dispatcher: new Agent({ connect: { cert: appId.certPem, key: appId.keyPem, ca: appId.bundlePem, checkServerIdentity: () => undefined } as never }),
  });
  assert.equal(direct.statusCode, 403);
  await direct.body.dump();
});
