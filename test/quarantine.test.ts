// Quarantines end to end: `gatehouse quarantine add` at the control plane
// reaches every gateway and mesh service through their bundles (measured:
// target well under 2 s), is enforced on anonymous and protected routes (a
// source network, an API-key consumer) and on mesh edges (a service loses
// every edge), ends by itself, and is released in one command. Hostile
// requests to the admin API are refused with a precise 4xx and change nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import tls from 'node:tls';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { request, Agent } from 'undici';
import { initCa, issueWorkloadIdentity, serviceSpiffeId } from '../src/pki/index.ts';
import { startControlServer, createBundleClient } from '../src/control/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { addApiKey } from '../src/gateway/policies/authentication/api-keys.ts';
import { createService, createClient, meshPolicyFromBundles } from '../src/mesh/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { startUpstream, tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll } from './support/closers.ts';

const TD = 'quarantine.test';
const main = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
const quiet = createLogger({ name: 'test', level: 'silent' });
const upstream = await startUpstream();
const closer = closeAfterAll();
closer(() => upstream.close());

const dir = tempDir('gh-quarantine-');
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  `
version: 1
trustDomain: ${TD}
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 } }
    routes:
      - { name: open, path: /open, service: app, auth: anonymous }
      - { name: partner, path: /partner, service: app, auth: { accept: [api_key] } }
services:
  app: { zone: edge, upstream: ${upstream.url}, egress: [orders] }
  orders:
    zone: edge
    upstream: ${upstream.url}
    allow: [{ caller: app, methods: [GET], paths: [{ path: /orders, match: prefix }] }]
`,
);
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
// the key exists before the gateways start (they re-read the key table every 2 s)
const { key } = addApiKey(dir, 'edge', { consumer: 'acme', scopes: [] });
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
closer(() => control.close());
const gateways: RunningGateway[] = [];
for (let i = 0; i < 2; i++) {
  const gw = await startGateway({ config: file, zone: 'edge', stateDir: dir, logger: quiet, accessLog: false, listen: '127.0.0.1:0', adminListen: false, bundles: { control: control.bundlesUrl } });
  closer(() => gw.close(100));
  gateways.push(gw);
}
const edge = new Agent({ connect: { rejectUnauthorized: false } });
closer(() => edge.close());

async function status(gw: RunningGateway, p: string, headers: Record<string, string> = {}): Promise<number> {
  const r = await request(`${gw.url}${p}`, { dispatcher: edge, headers });
  await r.body.dump();
  return r.statusCode;
}

/** The same over HTTP/2. */
function h2Status(gw: RunningGateway, p: string, headers: Record<string, string>): Promise<number | string> {
  return new Promise((resolve) => {
    const session = http2.connect(gw.url, { rejectUnauthorized: false });
    session.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    const req = session.request({ ':path': p, ...headers });
    req.on('response', (h) => resolve(Number(h[':status'])));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    req.on('close', () => session.close());
    req.resume();
    req.end();
  });
}

/** The status line a WebSocket upgrade of `p` is answered with. */
function upgradeAnswer(gw: RunningGateway, p: string, apiKey: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const { port } = new URL(gw.url);
    const socket = tls.connect({ host: '127.0.0.1', port: Number(port), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () =>
      socket.write(
        `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-api-key: ${apiKey}\r\n\r\n`,
      ),
    );
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) {
        resolve(got.slice(0, got.indexOf('\r\n')));
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

/** The CLI as an operator runs it (asynchronously: the control plane answers from this process). */
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [main, 'quarantine', ...args, '--state-dir', dir], { encoding: 'utf8' }, (_error, stdout, stderr) =>
      resolve({ status: child.exitCode, stdout, stderr }),
    );
  });
}

/** Milliseconds until every gateway answers `want` for `p`. */
async function untilAll(p: string, want: number, headers: Record<string, string> = {}): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const got = await Promise.all(gateways.map((g) => status(g, p, headers)));
    if (got.every((s) => s === want)) return performance.now() - t0;
    if (performance.now() - t0 > 10_000) throw new Error(`${p}: still ${got.join(', ')}`);
    await delay(5);
  }
}

test('gatehouse quarantine add --source reaches every gateway within a second and refuses anonymous and protected routes; remove releases it', async (t) => {
  assert.equal(await status(gateways[0], '/open'), 200);
  const before = control.revision();
  const added = await cli('add', '--source', '127.0.0.0/8', '--for', '15m', '--reason', 'scanner seen by the test');
  assert.equal(added.status, 0, added.stderr);
  assert.match(added.stdout, /^quarantined source 127\.0\.0\.0\/8 until \S+ \(revision \d+\)\n$/);
  const ms = await untilAll('/open', 403);
  t.diagnostic(`quarantine enforced at both gateways ${ms.toFixed(0)} ms after the CLI returned`);
  assert.ok(ms < 2000);
  assert.ok(control.revision() > before);
  // a protected route too, with a valid key: refused before authorization
  assert.equal(await status(gateways[1], '/partner', { 'x-api-key': key }), 403);
  // every entry path of the protected route is refused: HTTP/2, a WebSocket upgrade, and many requests racing
  assert.equal(await h2Status(gateways[0], '/partner', { 'x-api-key': key }), 403);
  assert.match(await upgradeAnswer(gateways[0], '/partner', key), /^HTTP\/1\.1 403 /);
  const seen = upstream.seen.length;
  const raced = await Promise.all(Array.from({ length: 20 }, (_, i) => status(gateways[i % 2], i % 2 ? '/open' : '/partner', { 'x-api-key': key })));
  assert.deepEqual([...new Set(raced)], [403]);
  assert.equal(upstream.seen.length, seen, 'nothing reached the upstream');
  const body = await (await request(`${gateways[0].url}/open`, { dispatcher: edge })).body.json();
  assert.equal((body as { code: string }).code, 'quarantined');
  // listed in the documented shape; kept in a 0600 file
  const list = await cli('list', '--json');
  assert.equal(list.status, 0, list.stderr);
  const entries = JSON.parse(list.stdout) as Record<string, string>[];
  assert.equal(entries.length, 1);
  assert.deepEqual(Object.keys(entries[0]).sort(), ['origin', 'reason', 'scope', 'until', 'value']);
  assert.deepEqual({ scope: entries[0].scope, value: entries[0].value, origin: entries[0].origin }, { scope: 'source', value: '127.0.0.0/8', origin: 'operator' });
  assert.equal(statSync(path.join(dir, 'control', 'quarantines.json')).mode & 0o777, 0o600);
  // released in one command
  const removed = await cli('remove', '--source', '127.0.0.0/8');
  assert.equal(removed.status, 0, removed.stderr);
  await untilAll('/open', 200);
  assert.equal((await cli('remove', '--source', '127.0.0.0/8')).status, 1, 'nothing left to remove');
});

test('a subject (API-key consumer) is refused with a valid key; a quarantine ends by itself', async () => {
  assert.equal(await status(gateways[0], '/partner', { 'x-api-key': key }), 200);
  assert.equal((await cli('add', '--subject', 'acme', '--for', '2s', '--reason', 'key seen from a new network')).status, 0);
  await untilAll('/partner', 403, { 'x-api-key': key });
  assert.equal(await status(gateways[0], '/open'), 200, 'others are untouched');
  await untilAll('/partner', 200, { 'x-api-key': key });
  assert.deepEqual(JSON.parse((await cli('list', '--json')).stdout), []);
});

test('a quarantined service loses its edges: it is refused where it calls and calls nobody', async () => {
  const appId = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'app'));
  const ordersId = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'orders'));
  const follow = (id: typeof appId, name: string) => {
    const c = createBundleClient({ url: control.bundlesUrl, identity: id, trustDomain: TD, caBundle: id.bundlePem, stateDir: path.join(dir, 'mesh', name), waitSeconds: 5, retryMs: 50 });
    closer(() => c.close());
    return meshPolicyFromBundles(c, name);
  };
  const ordersPolicy = follow(ordersId, 'orders');
  const appPolicy = follow(appId, 'app');
  const t = loadTopology(file).topology;
  const orders = await createService({ name: 'orders', topology: t, identity: ordersId, revocations: 'none', policy: ordersPolicy, handler: (_q, r) => r.end('ok'), logger: quiet });
  closer(() => orders.close());
  const client = createClient({ name: 'app', topology: t, identity: appId, revocations: 'none', resolve: () => orders.url, policy: appPolicy, logger: quiet });
  closer(async () => client.close());
  for (let i = 0; i < 100 && (ordersPolicy.revision() === 0 || appPolicy.revision() === 0); i++) await delay(20);
  assert.equal((await client.request('orders', { path: '/orders/1' })).status, 200);
  assert.equal((await cli('add', '--service', 'app', '--for', '15m', '--reason', 'probing peers it has no edge to')).status, 0);
  for (let i = 0; i < 200 && client.mayCall('orders'); i++) await delay(10);
  assert.equal(client.mayCall('orders'), false, 'the quarantined service calls nobody');
  // and a peer refuses it even over a direct connection with its certificate
  const direct = await request(`${orders.url}/orders/1`, {
    dispatcher: new Agent({ connect: { cert: appId.certPem, key: appId.keyPem, ca: appId.bundlePem, checkServerIdentity: () => undefined } as never }),
  });
  assert.equal(direct.statusCode, 403);
  assert.equal(((await direct.body.json()) as { code: string }).code, 'quarantined');
  assert.equal((await cli('remove', '--service', 'app')).status, 0);
  for (let i = 0; i < 200 && !client.mayCall('orders'); i++) await delay(10);
  assert.equal((await client.request('orders', { path: '/orders/1' })).status, 200);
});

test('hostile quarantine requests: a precise 4xx each, nothing stored', async () => {
  const before = readFileSync(path.join(dir, 'control', 'quarantines.json'), 'utf8');
  // through the CLI (usage and value errors exit 2 with the reason)
  const cases: [string[], RegExp][] = [
    [['add', '--source', '0.0.0.0/0', '--for', '1h', '--reason', 'x'], /wider than \/8/],
    [['add', '--client', 'c', '--for', 'soon', '--reason', 'x'], /duration/],
    [['add', '--client', 'c', '--subject', 's', '--for', '1h', '--reason', 'x'], /exactly one/],
  ];
  for (const [args, expected] of cases) {
    const r = await cli(...args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, expected, args.join(' '));
  }
  // and straight at the admin API: each value error a 422 naming the field
  const adminUrl = JSON.parse(readFileSync(path.join(dir, 'control', 'control.json'), 'utf8')).admin as string;
  const values: [Record<string, string>, RegExp][] = [
    [{ scope: 'source', value: '10.0.0.1/8' }, /host bits/],
    [{ scope: 'source', value: 'example.com' }, /not an IP address/],
    [{ scope: 'service', value: 'nobody' }, /no service "nobody"/],
    [{ scope: 'client', value: 'c', for: '31d' }, /from 1s to 30d/],
    [{ scope: 'client', value: 'c', reason: 'a\u0007b' }, /control characters/],
    [{ scope: 'client', value: 'c', reason: ' ' }, /reason must be/],
    [{ scope: 'client', value: 'c'.repeat(300) }, /1 to 256/],
    [{ scope: 'client', value: 'caf\u00e9' }, /printable ASCII/],
    [{ scope: 'client', value: 'c', origin: 'Detector!' }, /origin/],
  ];
  for (const [fields, expected] of values) {
    const r = await request(`${adminUrl}/quarantines`, { method: 'POST', body: JSON.stringify({ for: '1h', reason: 'x', ...fields }), headers: { 'content-type': 'application/json' } });
    assert.equal(r.statusCode, 422, JSON.stringify(fields));
    assert.match(((await r.body.json()) as { detail: string }).detail, expected);
  }
  const admin = JSON.parse(readFileSync(path.join(dir, 'control', 'control.json'), 'utf8')).admin as string;
  for (const [body, code] of [
    ['{', 400],
    ['[]', 422],
    ['{"scope":"source","value":"10.0.0.0/8","for":"1h","reason":"x","extra":1}', 422],
    ['{"scope":"everything","value":"x","for":"1h","reason":"x"}', 422],
    ['x'.repeat(20_000), 413],
  ] as const) {
    const r = await request(`${admin}/quarantines`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    assert.equal(r.statusCode, code, body.slice(0, 40));
    assert.match(String(r.headers['content-type']), /application\/problem\+json/);
    await r.body.dump();
  }
  assert.equal(readFileSync(path.join(dir, 'control', 'quarantines.json'), 'utf8'), before, 'nothing changed');
  // concurrent adds of the same value: one decision, the file stays valid JSON
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      request(`${admin}/quarantines`, { method: 'POST', body: JSON.stringify({ scope: 'client', value: 'racer', for: '1h', reason: `try ${i}` }), headers: { 'content-type': 'application/json' } }).then((r) => r.body.dump()),
    ),
  );
  const list = JSON.parse((await cli('list', '--json')).stdout) as { value: string }[];
  assert.equal(list.filter((q) => q.value === 'racer').length, 1);
  assert.equal((await cli('remove', '--client', 'racer')).status, 0);
});
