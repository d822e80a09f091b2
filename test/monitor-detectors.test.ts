// The detectors beside scan and stuffing, each end to end through the control
// plane's intake (events over mTLS from the PEPs that would see them, the
// zone authority's with its own identity): enumeration, token replay, lateral
// movement and the volumetric baseline quarantine whom they should (per
// identity where there is one) and publish new bundles; shadow mode records
// only; an exempt source is never counted; a decision released as a false
// positive (`gatehouse quarantine remove --false-positive`) feeds back into
// the detector (threshold doubled, baseline raised) so the same level does
// not fire again. The volumetric detector runs on the control plane's clock,
// moved by the test from interval to interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { initCa, serviceSpiffeId, gatewaySpiffeId } from '../src/pki/index.ts';
import { startControlServer } from '../src/control/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { networkOf } from '../src/monitor/detectors.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';
import { sendEvents } from './support/monitor-events.ts';
import { authoritySpiffeId } from '../src/pki/spiffe-id.ts';

const TD = 'detectors.test';
const main = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
const quiet = createLogger({ name: 'test', level: 'silent' });
const closer = closeAfterAll();
const dir = tempDir('gh-detectors-');
const file = path.join(dir, 'gatehouse.yaml');
const topology = (o: { enumerationShadow?: boolean } = {}) => `
version: 1
trustDomain: ${TD}
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev }
    routes:
      - { name: orders, path: /orders, service: orders, auth: anonymous }
services: { ${['orders', 'payments', 'stock', 'shop'].map((n) => `${n}: { zone: edge, upstream: "http://127.0.0.1:9" }`).join(', ')} }
monitor:
  exempt: [192.0.2.0/24]
  detectors:
    enumeration: { threshold: 5, windowSeconds: 60, quarantineFor: 10m, shadow: ${o.enumerationShadow ?? false} }
    lateral: { threshold: 3, windowSeconds: 60, quarantineFor: 10m }
    replay: { shadow: false, threshold: 2, windowSeconds: 600, quarantineFor: 10m }
    volumetric: { shadow: false, intervalSeconds: 10, alpha: 0.5, factor: 5, minRequests: 50, warmupIntervals: 3, quarantineFor: 10m }
`;
writeFileSync(file, topology());
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
let offset = 0;
const clock = { now: () => Date.now() + offset };
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet, clock });
closer(() => control.close());
const GW = gatewaySpiffeId(TD, 'edge');
const AUTHORITY = authoritySpiffeId(TD, 'edge');
const svc = (name: string) => serviceSpiffeId(TD, 'edge', name);
const send = async (from: string, events: Record<string, unknown>[]) => assert.equal(await sendEvents(dir, control.url, from, events), 202);

interface Q {
  scope: string;
  value: string;
  origin: string;
  reason: string;
}
const quarantines = async () => (await (await request(`${control.adminUrl}/quarantines`)).body.json()) as Q[];
const events = async (type: string) => (await (await request(`${control.adminUrl}/events?type=${type}&since=1h`)).body.json()) as Record<string, unknown>[];
function cli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [main, ...args, '--state-dir', dir], { encoding: 'utf8' }, (_e, stdout, stderr) => resolve({ status: child.exitCode, stdout, stderr }));
  });
}
const quarantinedAs = (scope: string, value: string) => until(`${scope} ${value} quarantined`, quarantines, (l) => l.some((q) => q.scope === scope && q.value === value));

test('enumeration: one subject walking object ids on a route is quarantined (not its address); another route or identity counts apart', async () => {
  const before = control.revision();
  // 4 ids on /orders for mallory, 4 for alice, 4 for mallory on another route: nothing yet
  await send(GW, [
    ...[1, 2, 3, 4].map((i) => ({ type: 'upstream_status', code: 'not_found', status: 404, route: 'orders', path: `/orders/${i}`, subject: 'mallory', source: '198.51.100.1' })),
    ...[1, 2, 3, 4].map((i) => ({ type: 'upstream_status', code: 'not_found', status: 404, route: 'orders', path: `/orders/${i}`, subject: 'alice', source: '198.51.100.1' })),
    ...[1, 2, 3, 4].map((i) => ({ type: 'upstream_status', code: 'forbidden', status: 403, route: 'invoices', path: `/invoices/${i}`, subject: 'mallory', source: '198.51.100.1' })),
  ]);
  assert.deepEqual(await quarantines(), []);
  // the same id again is not a new one; the fifth distinct id is
  await send(GW, [{ type: 'upstream_status', code: 'not_found', status: 404, route: 'orders', path: '/orders/4', subject: 'mallory', source: '198.51.100.1' }]);
  assert.deepEqual(await quarantines(), []);
  await send(GW, [{ type: 'upstream_status', code: 'not_found', status: 404, route: 'orders', path: '/orders/5', subject: 'mallory', source: '198.51.100.1' }]);
  const [q] = await quarantinedAs('subject', 'mallory');
  assert.equal(q.origin, 'detector:enumeration');
  assert.match(q.reason, /5 distinct object paths refused on route orders within 60 s/);
  assert.equal((await quarantines()).length, 1, 'alice and the address are not quarantined');
  await until('the bundles carry it', () => control.revision(), (r) => r > before);
  assert.equal((await cli('quarantine', 'remove', '--subject', 'mallory')).status, 0);
});

test('enumeration in shadow mode records a detection and quarantines nothing; an anonymous walker is counted by its address', async () => {
  writeFileSync(file, topology({ enumerationShadow: true }));
  await new Promise((r) => setTimeout(r, 400));
  await send(GW, [1, 2, 3, 4, 5].map((i) => ({ type: 'request_refused', code: 'forbidden', status: 403, route: 'orders', path: `/orders/${i}`, source: '198.51.100.2' })));
  const d = await until('shadow detection', async () => (await events('detection')).filter((e) => e.source === '198.51.100.2'), (l) => l.length > 0);
  assert.match(String(d[0].detail), /^shadow: detector enumeration/);
  assert.deepEqual(await quarantines(), []);
  writeFileSync(file, topology());
  await new Promise((r) => setTimeout(r, 400));
});

test('lateral movement: a workload refused by three peers it has no edge to loses its edges; refusals by one peer never add up', async () => {
  await send(svc('orders'), Array.from({ length: 10 }, (_, i) => ({ type: 'edge_denied', code: 'no_edge', peer: svc('shop'), path: `/x/${i}` })));
  await send(svc('payments'), [{ type: 'edge_denied', code: 'no_edge', peer: svc('shop'), path: '/pay' }]);
  assert.deepEqual(await quarantines(), [], 'two distinct peers');
  // a forged peer name in another trust domain is no workload of ours
  await send(svc('stock'), [{ type: 'edge_denied', code: 'no_edge', peer: 'spiffe://other.test/zone/edge/svc/shop', path: '/s' }]);
  assert.deepEqual(await quarantines(), []);
  await send(svc('stock'), [{ type: 'edge_denied', code: 'no_edge', peer: svc('shop'), path: '/s' }]);
  const [q] = await quarantinedAs('service', 'shop');
  assert.equal(q.origin, 'detector:lateral');
  assert.equal((await cli('quarantine', 'remove', '--service', 'shop')).status, 0);
});

test('token replay: a token issued to one network and used from another is caught (its subject quarantined); moves within a /24 and exempt networks are not', async () => {
  assert.equal(networkOf('10.1.2.3'), '10.1.2.0/24');
  assert.equal(networkOf('::ffff:10.1.2.3'), '10.1.2.0/24');
  assert.equal(networkOf('2001:db8:1:2:3::4'), '2001:db8:1:2::/64');
  assert.equal(networkOf('2001:db8::1'), '2001:db8:0:0::/64');
  // the authority issued it to 10.1.2.3; the gateway sees it from 10.1.2.99 (same /24), then from the exempt network
  assert.equal(await sendEvents(dir, control.url, AUTHORITY, [{ type: 'token_issued', code: 'issued', jti: 'jti-bob-1', client: 'shop-web', subject: 'bob', source: '10.1.2.3' }]), 202);
  await send(GW, [
    { type: 'token_use', code: 'first_seen', jti: 'jti-bob-1', client: 'shop-web', subject: 'bob', source: '10.1.2.99', tls: 't13d1516h2_8daaf6152771_e5627efa2ab1' },
    { type: 'token_use', code: 'first_seen', jti: 'jti-bob-1', client: 'shop-web', subject: 'bob', source: '192.0.2.50', tls: 't13d1516h2_8daaf6152771_e5627efa2ab1' },
  ]);
  assert.deepEqual(await quarantines(), []);
  // then from elsewhere
  await send(GW, [{ type: 'token_use', code: 'first_seen', jti: 'jti-bob-1', client: 'shop-web', subject: 'bob', source: '203.0.113.80', tls: 't13d1516h2_8daaf6152771_e5627efa2ab1' }]);
  const [q] = await quarantinedAs('subject', 'bob');
  assert.equal(q.origin, 'detector:replay');
  assert.match(q.reason, /2 networks using token jti-bob-1/);
  // a client token (no subject) used with another TLS fingerprint from the same network: the client is quarantined
  await send(GW, [
    { type: 'token_use', code: 'first_seen', jti: 'jti-cc-1', client: 'batch', source: '10.9.9.1', tls: 'fp-a' },
    { type: 'token_use', code: 'first_seen', jti: 'jti-cc-1', client: 'batch', source: '10.9.9.2', tls: 'fp-b' },
  ]);
  await quarantinedAs('client', 'batch');
  assert.equal((await cli('quarantine', 'remove', '--subject', 'bob')).status, 0);
  assert.equal((await cli('quarantine', 'remove', '--client', 'batch')).status, 0);
});

test('volumetric: a client far above its own EWMA baseline on a route is quarantined; released as a false positive, the same level no longer fires', async () => {
  const interval = 10_000;
  // align to the start of an interval, then three quiet intervals of 20 requests (the baseline)
  offset += interval - ((Date.now() + offset) % interval) + 50;
  const traffic = (count: number) => send(GW, [{ type: 'traffic', code: 'interval', client: 'app', route: 'orders', count, source: '198.51.100.7' }]);
  for (let i = 0; i < 4; i++) {
    await traffic(20);
    offset += interval;
  }
  assert.deepEqual(await quarantines(), []);
  await traffic(40); // twice the baseline, below minRequests and factor × baseline
  assert.deepEqual(await quarantines(), []);
  await traffic(400);
  const [q] = await quarantinedAs('client', 'app');
  assert.equal(q.origin, 'detector:volumetric');
  assert.match(q.reason, /440 requests on route orders within 10 s, baseline 20\.0/);
  const released = await cli('quarantine', 'remove', '--client', 'app', '--false-positive');
  assert.equal(released.status, 0, released.stderr);
  assert.match(released.stdout, /as a false positive/);
  const fp = (await events('quarantine')).filter((e) => e.code === 'false_positive');
  assert.equal(fp.length, 1);
  // the next interval at the level that fired: learnt, not a spike any more
  offset += interval;
  await traffic(440);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await quarantines(), []);
  // the false positive of a window detector: its threshold doubles for that key (scan: 5 → 10 distinct paths)
  const scan = (from: number, n: number) => send(GW, Array.from({ length: n }, (_, i) => ({ type: 'request_refused', code: 'not_found', status: 404, source: '198.51.100.9', path: `/probe-${from + i}` })));
  await scan(0, 5);
  await quarantinedAs('source', '198.51.100.9');
  assert.equal((await cli('quarantine', 'remove', '--source', '198.51.100.9', '--false-positive')).status, 0);
  await scan(100, 9);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(await quarantines(), [], 'nine distinct paths: below the doubled threshold');
  await scan(200, 1);
  await quarantinedAs('source', '198.51.100.9');
  // a decision an operator made is not a detector's: --false-positive changes nothing else
  assert.equal((await cli('quarantine', 'remove', '--source', '198.51.100.9')).status, 0);
});

test('stuffing: failed sign-ins for five distinct usernames from one source quarantine it before ten failures; one account tried again and again does not', async () => {
  const fail = (source: string, account: string) => ({ type: 'auth_failure', code: 'login', source, account, detail: 'bad credentials' });
  // one account, four times (cracking is the authority's lockout): no quarantine
  assert.equal(await sendEvents(dir, control.url, AUTHORITY, [1, 2, 3, 4].map(() => fail('198.51.100.40', 'alice'))), 202);
  // four distinct accounts from another source: not yet
  assert.equal(await sendEvents(dir, control.url, AUTHORITY, ['ann', 'ben', 'cat', 'dan'].map((a) => fail('198.51.100.41', a))), 202);
  assert.deepEqual(await quarantines(), []);
  assert.equal(await sendEvents(dir, control.url, AUTHORITY, [fail('198.51.100.41', 'eve')]), 202);
  const [q] = await quarantinedAs('source', '198.51.100.41');
  assert.equal(q.origin, 'detector:stuffing');
  assert.match(q.reason, /5 distinct usernames refused within 60 s/);
  assert.equal((await quarantines()).length, 1);
  assert.equal((await cli('quarantine', 'remove', '--source', '198.51.100.41')).status, 0);
});

test('hostile input on the new fields: bounded, refused or attributed to the verified sender; the admin API takes no events', async () => {
  // a gateway claiming to be the authority: pep is its own SPIFFE ID
  await send(GW, [{ type: 'token_issued', code: 'issued', jti: 'x'.repeat(128), pep: 'local:authority:edge' }]);
  const forged = (await events('token_issued')).find((e) => e.jti === 'x'.repeat(128));
  assert.equal(forged, undefined, 'an event with a pep field is refused by the schema (strict)');
  // the loopback admin API takes no events: a process of this machine cannot speak for a workload there
  for (const [what, headers, status] of [
    ['the old local door', { 'content-type': 'application/json', 'gatehouse-component': 'authority:edge' }, 405],
    ['from a web page', { 'content-type': 'application/json', 'gatehouse-component': 'authority:edge', origin: 'https://evil.example' }, 403],
  ] as const) {
    const r = await request(`${control.adminUrl}/events`, { method: 'POST', headers, body: '[]' });
    assert.equal(r.statusCode, status, what);
    await r.body.dump();
  }
  const counts = { tooBig: { type: 'traffic', code: 'interval', count: 2e9, client: 'x', route: 'r' }, negative: { type: 'traffic', code: 'interval', count: -1, client: 'x', route: 'r' }, longJti: { type: 'token_use', code: 'x', jti: 'j'.repeat(129), source: '10.0.0.1' } };
  for (const [what, e] of Object.entries(counts)) {
    assert.equal(await sendEvents(dir, control.url, GW, [e]), 202, what);
  }
  const stored = (await events('traffic')).filter((e) => e.client === 'x');
  assert.deepEqual(stored, [], 'counts out of range are rejected event by event');
});
