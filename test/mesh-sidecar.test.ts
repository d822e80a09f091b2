// The sidecar in front of a plain-HTTP application: the same inbound policy as
// the SDK, the verified caller passed on, and outbound egress enforcement.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { makeCaDir, captureLogger, TD } from './support/pki-fixtures.ts';
import { rawHttps, get } from './support/pki-tls.ts';
import { issueWorkloadIdentity, localRevocations, type WorkloadIdentity } from '../src/pki/index.ts';
import { startSidecar, type Sidecar } from '../src/mesh/index.ts';

const id = (zone: string, svc: string) => `spiffe://${TD}/zone/${zone}/svc/${svc}`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let app: http.Server;
let ordersCar: Sidecar;
let reportingCar: Sidecar;
const seen: http.IncomingHttpHeaders[] = [];
const ids: Record<string, WorkloadIdentity> = {};

before(async () => {
  env = await makeCaDir();
  app = http.createServer((req, res) => {
    seen.push(req.headers);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ path: req.url, caller: req.headers['x-gatehouse-caller'] ?? null }));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  for (const [n, z] of [['orders', 'private'], ['checkout', 'public'], ['payments', 'private'], ['reporting', 'private']])
    ids[n] = await issueWorkloadIdentity(env.stateDir, id(z, n));
  const logger = captureLogger('sidecar').logger;
  const common = { topology: env.topology, revocations: localRevocations(env.stateDir), logger, upstream: `http://127.0.0.1:${(app.address() as AddressInfo).port}` };
  // a loopback upstream (explicit) publishes its shared secret where the application reads it (mesh-sidecar-socket.test.ts)
  const secretFile = (s: string) => path.join(env.stateDir, 'run', s, 'sidecar.secret');
  ordersCar = await startSidecar({ ...common, service: 'orders', identity: ids.orders, secretFile: secretFile('orders'), resolve: () => undefined });
  reportingCar = await startSidecar({
    ...common,
    service: 'reporting',
    identity: ids.reporting,
    secretFile: secretFile('reporting'),
    resolve: (s) => (s === 'orders' ? ordersCar.url : undefined),
  });
});
after(async () => {
  await reportingCar.close();
  await ordersCar.close();
  app.close();
  env.cleanup();
});

const as = (n: string, req: string) => rawHttps(ordersCar.url, { cert: ids[n].certPem, key: ids[n].keyPem, ca: ids.orders.bundlePem, requests: req });

test('inbound: an allowed caller reaches the application, which learns who called', async () => {
  const [a] = await as('checkout', get('/orders/7'));
  assert.equal(a.status, 200, a.head);
  assert.deepEqual(JSON.parse(a.body), { path: '/orders/7', caller: id('public', 'checkout') });
});

test('inbound: no certificate, no edge, forged identity headers and overrides never reach the application', async () => {
  const before = seen.length;
  const [none] = await rawHttps(ordersCar.url, { ca: ids.orders.bundlePem, requests: get('/orders/7') });
  assert.equal(none.status, undefined);
  assert.equal((await as('payments', get('/orders/7')))[0].status, 403);
  assert.equal((await as('payments', get('/orders/7', { 'x-gatehouse-caller': id('public', 'checkout') })))[0].status, 403);
  assert.equal((await as('checkout', get('/orders/7', { 'x-gatehouse-caller': id('private', 'reporting') })))[0].status, 403);
  assert.equal((await as('checkout', get('/orders/7', { 'x-forwarded-client-cert': 'URI=x' })))[0].status, 403);
  assert.equal((await as('checkout', get('/orders/7', { 'x-http-method-override': 'DELETE' }, 'POST')))[0].status, 403);
  assert.equal((await as('checkout', get('/orders/7', {}, 'OPTIONS')))[0].status, 403);
  assert.equal(seen.length, before, 'a refused request reached the application');
});

test('inbound: header names with an underscore (X_Gatehouse_User: read as X-Gatehouse-User by CGI, WSGI, PHP and Rack) never reach the application', async () => {
  const before = seen.length;
  const [a] = await as('checkout', get('/orders/7', { X_Gatehouse_User: 'alice', X_Gatehouse_Caller: id('public', 'gateway'), X_Gatehouse_Sidecar: 'guess', 'X-Trace-Note': 'kept' }));
  assert.equal(a.status, 200, a.head);
  const got = seen[before];
  assert.deepEqual(Object.keys(got).filter((k) => k.includes('_')), []);
  assert.equal(got['x-gatehouse-user'], undefined);
  assert.equal(got['x-gatehouse-caller'], id('public', 'checkout'));
  assert.equal(got['x-trace-note'], 'kept');
});

test('outbound: the application calls only its egress allow-list, through mTLS', async () => {
  const call = (host: string, path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const u = new URL(reportingCar.outboundUrl);
      http
        .get({ host: u.hostname, port: u.port, path, headers: { host } }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        })
        .on('error', reject);
    });
  const ok = await call('orders', '/orders/summary');
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).caller, id('private', 'reporting'));
  const denied = await call('payments', '/payments');
  assert.equal(denied.status, 403);
  assert.equal(JSON.parse(denied.body).code, 'egress_denied');
  assert.equal((await call('orders', '/orders/1')).status, 403); // egress allowed, but orders' edge for reporting is /orders/summary only
});
