// Hardening item 6: the application behind a sidecar is reachable only through
// it. By default it listens on a Unix socket (0600) in its run folder (0700)
// under the state dir; a loopback port only when configured explicitly. Either
// way it believes x-gatehouse-* headers only from a request that carries the
// sidecar's shared secret (createSidecarGuard: constant time, rotated). A
// local process that connects straight to the application — forging
// x-gatehouse-user or the caller — is refused; through the sidecar it works.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { makeCaDir, captureLogger, tempDir, TD } from './support/pki-fixtures.ts';
import { rawHttps, get } from './support/pki-tls.ts';
import { issueWorkloadIdentity, localRevocations, type WorkloadIdentity } from '../src/pki/index.ts';
import { startSidecar, createSidecarGuard, listenForSidecar, sidecarPaths, SIDECAR_SECRET_HEADER, type Sidecar } from '../src/mesh/index.ts';

const id = (zone: string, svc: string) => `spiffe://${TD}/zone/${zone}/svc/${svc}`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
const ids: Record<string, WorkloadIdentity> = {};
const logger = captureLogger('sidecar').logger;

before(async () => {
  env = await makeCaDir();
  for (const [n, z] of [['orders', 'private'], ['checkout', 'public'], ['reporting', 'private']]) ids[n] = await issueWorkloadIdentity(env.stateDir, id(z, n));
});
after(() => env.cleanup());

/** An application as the example's echo is written: the guard first, then it tells what it saw. */
function guardedApp(secretFile: string) {
  const guard = createSidecarGuard({ secretFile });
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    if (!guard.admit(req, res)) return;
    seen.push(req.headers);
    const raw = req.rawHeaders.join('\n');
    req.resume();
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ caller: req.headers['x-gatehouse-caller'] ?? null, user: req.headers['x-gatehouse-user'] ?? null, raw }));
    });
  });
  return { server, seen };
}

interface Answer {
  status: number;
  type: string;
  body: string;
}
/** A local process: plain HTTP straight to the application, over its socket or its port. */
function direct(to: { socketPath: string } | { port: number }, headers: Record<string, string>, method = 'GET', body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ ...to, ...('port' in to ? { host: '127.0.0.1' } : {}), path: '/orders/7', method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
const forged = {
  'x-gatehouse-user': 'admin',
  'x-gatehouse-caller': id('private', 'reporting'),
  // an identity token header too: without the sidecar's secret nothing is believed
  'x-gatehouse-identity': 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZG1pbiJ9.c2ln',
};
const viaSidecar = (car: Sidecar, who = 'checkout', headers: Record<string, string> = {}, method = 'GET') =>
  rawHttps(car.url, { cert: ids[who].certPem, key: ids[who].keyPem, ca: ids.orders.bundlePem, requests: get('/orders/7', headers, method) }).then((a) => a[0]);
const assertRefused = (a: Answer) => {
  assert.equal(a.status, 403, a.body);
  assert.equal(a.type, 'application/problem+json');
  assert.equal(JSON.parse(a.body).code, 'forbidden');
};

test('Unix socket (the default): owner-only socket and folder; a local process forging headers is refused; the sidecar gets through', async (t) => {
  const paths = sidecarPaths(env.stateDir, 'orders');
  const app = guardedApp(paths.secretFile);
  assert.equal(await listenForSidecar(app.server, { socketPath: paths.socket }), `unix:${paths.socket}`);
  t.after(() => app.server.close());
  const car = await startSidecar({ service: 'orders', topology: env.topology, identity: ids.orders, upstream: `unix:${paths.socket}`, revocations: localRevocations(env.stateDir), resolve: () => undefined, logger });
  t.after(() => car.close());

  assert.equal(lstatSync(paths.dir).mode & 0o777, 0o700);
  assert.ok(lstatSync(paths.socket).isSocket());
  assert.equal(lstatSync(paths.socket).mode & 0o777, 0o600);
  assert.equal(lstatSync(paths.secretFile).mode & 0o777, 0o600);

  // straight to the socket: no secret, a guessed one, a forged user — refused, the application never runs
  assertRefused(await direct({ socketPath: paths.socket }, forged));
  assertRefused(await direct({ socketPath: paths.socket }, { ...forged, [SIDECAR_SECRET_HEADER]: 'A'.repeat(43) }));
  assertRefused(await direct({ socketPath: paths.socket }, { ...forged, [SIDECAR_SECRET_HEADER]: '' }));
  assertRefused(await direct({ socketPath: paths.socket }, { ...forged, [SIDECAR_SECRET_HEADER]: 'x'.repeat(10_000) }));
  assertRefused(await direct({ socketPath: paths.socket }, forged, 'POST', JSON.stringify({ big: 'y'.repeat(100_000) })));
  assert.equal(app.seen.length, 0, 'a request without the sidecar secret reached the application');

  // through the sidecar: the verified caller, no user (no identity token), and the secret never shown to the application
  const ok = await viaSidecar(car);
  assert.equal(ok.status, 200, ok.head);
  const seen = JSON.parse(ok.body);
  assert.equal(seen.caller, id('public', 'checkout'));
  assert.equal(seen.user, null);
  assert.ok(!seen.raw.toLowerCase().includes(SIDECAR_SECRET_HEADER), 'the guard removes the secret before the application sees it');
  const secret = readFileSync(paths.secretFile, 'utf8').split('\n')[0];
  assert.ok(!seen.raw.includes(secret));

  // a caller of the sidecar cannot smuggle its own secret header or a user in
  const smuggled = await viaSidecar(car, 'checkout', { [SIDECAR_SECRET_HEADER]: secret });
  assert.equal(smuggled.status, 403);
  assert.equal((await viaSidecar(car, 'checkout', { 'x-gatehouse-user': 'admin' })).status, 403);
  assert.equal(app.seen.length, 1);
});

test('a loopback port, configured explicitly: a local process on that port is refused, the sidecar gets through', async (t) => {
  const paths = sidecarPaths(env.stateDir, 'orders-loopback');
  const app = guardedApp(paths.secretFile);
  const url = await listenForSidecar(app.server, { host: '127.0.0.1', port: 0 });
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  t.after(() => app.server.close());
  const port = (app.server.address() as AddressInfo).port;
  const common = { service: 'orders', topology: env.topology, identity: ids.orders, revocations: localRevocations(env.stateDir), resolve: () => undefined, logger };
  // without a place to publish the secret, a loopback upstream is refused: every local process could reach it
  await assert.rejects(startSidecar({ ...common, upstream: url }), (e: Error & { code?: string }) => e.code === 'invalid_config' && /secretFile/.test(e.message));
  const car = await startSidecar({ ...common, upstream: url, secretFile: paths.secretFile });
  t.after(() => car.close());

  assertRefused(await direct({ port }, forged));
  assert.equal(app.seen.length, 0);
  const ok = await viaSidecar(car);
  assert.equal(ok.status, 200, ok.head);
  assert.equal(JSON.parse(ok.body).caller, id('public', 'checkout'));
  assert.equal(app.seen.length, 1);
});

test('the secret rotates; the application follows without refusing the sidecar, and an old secret stops working', async (t) => {
  const paths = sidecarPaths(env.stateDir, 'orders-rotating');
  const app = guardedApp(paths.secretFile);
  await listenForSidecar(app.server, { socketPath: paths.socket });
  t.after(() => app.server.close());
  const car = await startSidecar({
    service: 'orders',
    topology: env.topology,
    identity: ids.orders,
    upstream: `unix:${paths.socket}`,
    secretRotateMs: 300,
    revocations: localRevocations(env.stateDir),
    resolve: () => undefined,
    logger,
  });
  t.after(() => car.close());
  const first = readFileSync(paths.secretFile, 'utf8').split('\n')[0];
  const statuses: number[] = [];
  const until = Date.now() + 1500;
  while (Date.now() < until) statuses.push((await viaSidecar(car)).status ?? 0);
  assert.ok(statuses.length > 5);
  assert.deepEqual([...new Set(statuses)], [200]);
  const now = readFileSync(paths.secretFile, 'utf8').split('\n').filter(Boolean);
  assert.ok(!now.includes(first), 'the first secret should be gone after several rotations');
  assertRefused(await direct({ socketPath: paths.socket }, { [SIDECAR_SECRET_HEADER]: first }));
  // the current one, as the sidecar sends it, is accepted (a process that can read the 0600 file is this service's own user)
  const direct200 = await direct({ socketPath: paths.socket }, { [SIDECAR_SECRET_HEADER]: now[0] });
  assert.equal(direct200.status, 200);
});

test('bad upstreams, socket paths and service names are refused with the field named', async () => {
  const common = { service: 'orders', topology: env.topology, identity: ids.orders, revocations: localRevocations(env.stateDir), resolve: () => undefined, logger };
  const refuses = (upstream: string, field: RegExp) =>
    assert.rejects(startSidecar({ ...common, upstream, secretFile: path.join(env.stateDir, 'run', 'x.secret') }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'invalid_config', e.message);
      assert.match(e.message, field);
      return true;
    });
  await refuses('unix:relative/app.sock', /^upstream: .*absolute/);
  await refuses(`unix:/${'a'.repeat(120)}.sock`, /^upstream: .* bytes; at most 107/);
  await refuses('http://10.0.0.1:8080', /^upstream: .*loopback/);
  await refuses('https://127.0.0.1:8443', /^upstream: .*loopback/);
  await refuses('http://user:pw@127.0.0.1:1', /^upstream: /);
  await refuses('http://127.0.0.1:1/base', /^upstream: /);
  await refuses('127.0.0.1:8080', /^upstream: /);
  await refuses('', /^upstream: /);
  await assert.rejects(
    startSidecar({ ...common, upstream: 'unix:/tmp/x.sock', outboundListen: '0.0.0.0:0' }),
    (e: Error & { code?: string }) => e.code === 'invalid_config' && /^outboundListen: /.test(e.message),
  );
  for (const name of ['../etc', 'Orders', '', 'a/b', 'x'.repeat(80)])
    assert.throws(() => sidecarPaths(env.stateDir, name), (e: Error & { code?: string }) => e.code === 'invalid_config' && /^service: /.test(e.message));
  assert.throws(() => sidecarPaths(`/tmp/${'d'.repeat(100)}`, 'orders'), (e: Error & { code?: string }) => e.code === 'invalid_config' && /at most 107/.test(e.message));
  assert.throws(() => createSidecarGuard({ secretFile: '' }), TypeError);
});

test('the application will not listen where someone else could have prepared the place', async (t) => {
  const tmp = tempDir('gh-sock-');
  t.after(tmp.cleanup);
  // a regular file where the socket goes is left alone
  mkdirSync(path.join(tmp.dir, 'run'), { mode: 0o700 });
  const file = path.join(tmp.dir, 'run', 'app.sock');
  writeFileSync(file, 'precious');
  const s1 = http.createServer();
  await assert.rejects(listenForSidecar(s1, { socketPath: file }), (e: Error & { code?: string }) => e.code === 'invalid_config' && /not a socket/.test(e.message));
  assert.equal(readFileSync(file, 'utf8'), 'precious');
  // a symlinked folder is refused
  mkdirSync(path.join(tmp.dir, 'elsewhere'), { mode: 0o777 });
  symlinkSync(path.join(tmp.dir, 'elsewhere'), path.join(tmp.dir, 'linked'));
  await assert.rejects(listenForSidecar(http.createServer(), { socketPath: path.join(tmp.dir, 'linked', 'app.sock') }), /not a folder/);
  assert.equal(existsSync(path.join(tmp.dir, 'elsewhere', 'app.sock')), false);
  // a relative path, or a host that is not loopback
  await assert.rejects(listenForSidecar(http.createServer(), { socketPath: 'app.sock' }), /absolute/);
  await assert.rejects(listenForSidecar(http.createServer(), { host: '0.0.0.0', port: 0 }), /loopback only/);
  // a stale socket left by a crash is replaced, and the folder is made owner-only again
  const dir = path.join(tmp.dir, 'open');
  mkdirSync(dir, { mode: 0o755 });
  const sock = path.join(dir, 'app.sock');
  // an application killed with SIGKILL leaves its socket file behind
  const crashed = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(sock)}, () => process.stdout.write('up'))`]);
  await new Promise<void>((r) => crashed.stdout.once('data', () => r()));
  crashed.kill('SIGKILL');
  await new Promise((r) => crashed.once('exit', r));
  assert.ok(lstatSync(sock).isSocket());
  const fresh = http.createServer((_q, s) => s.end('ok'));
  t.after(() => fresh.close());
  await listenForSidecar(fresh, { socketPath: sock });
  assert.equal(lstatSync(dir).mode & 0o777, 0o700);
  assert.equal((await direct({ socketPath: sock }, {})).body, 'ok');
});
