// Monitor: security events ingested per second by the control plane (PEPs
// posting batches of 500 over mTLS, stored in SQLite, seen by the detectors),
// detection latency (a scanner's fifth distinct 404 → its source refused at
// every gateway, through events, the detector, a publish and the long-poll),
// what emitting an event costs a gateway request (emit is a buffer append),
// and how long a client quarantine takes to reach the zone authority (the
// decision → the client's next token request refused).
//   sh scripts/node.sh bench/monitor.ts [--gateways 3] [--rounds 10] [--seconds 5]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import https from 'node:https';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { request, Agent } from 'undici';
import { initCa, issueWorkloadIdentity, serviceSpiffeId } from '../src/pki/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startControlServer, createEventShipper } from '../src/control/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { startAuthority } from '../src/authority/index.ts';
import { createLogger } from '../src/shared/logger.ts';
import { table } from './lib.ts';

const { values } = parseArgs({ options: { gateways: { type: 'string', default: '3' }, rounds: { type: 'string', default: '10' }, seconds: { type: 'string', default: '5' } }, strict: false });
const GATEWAYS = Number(values.gateways);
const ROUNDS = Number(values.rounds);
const SECONDS = Number(values.seconds);
const TD = 'bench.local';
const quiet = createLogger({ name: 'bench', level: 'silent' });
const dir = mkdtempSync(path.join(tmpdir(), 'gh-bench-monitor-'));
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(
  file,
  `version: 1
trustDomain: ${TD}
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 } }
    authority: { listen: 127.0.0.1:0, scopes: [orders:read] }
    routes:
      - { name: open, path: /open, service: app, auth: anonymous }
services:
  app: { zone: edge, upstream: 'http://127.0.0.1:9' }
  p1: { zone: edge, upstream: 'http://127.0.0.1:9' }
  p2: { zone: edge, upstream: 'http://127.0.0.1:9' }
  p3: { zone: edge, upstream: 'http://127.0.0.1:9' }
  p4: { zone: edge, upstream: 'http://127.0.0.1:9' }
monitor:
  detectors:
    scan: { threshold: 5, windowSeconds: 10, quarantineFor: 1m }
`,
);
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
const gateways: RunningGateway[] = [];
for (let i = 0; i < GATEWAYS; i++)
  gateways.push(await startGateway({ config: file, zone: 'edge', stateDir: dir, logger: quiet, accessLog: false, listen: '127.0.0.1:0', adminListen: false, bundles: { control: control.bundlesUrl } }));

// 1. ingestion: 4 PEPs, each posting batches of 500 events as fast as the control plane takes them
// four PEPs of their own (each has its own rate at the control plane: 2000 events/s, bursts of 10 000)
const peps = await Promise.all([1, 2, 3, 4].map((i) => issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', `p${i}`))));
const agent = (id: (typeof peps)[number]) => new https.Agent({ keepAlive: true, cert: id.certPem, key: id.keyPem, ca: id.bundlePem, checkServerIdentity: () => undefined });
const post = (a: https.Agent, body: string) =>
  new Promise<number>((resolve, reject) => {
    const req = https.request(`${control.url}/v1/events`, { method: 'POST', agent: a, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
const batch = () =>
  JSON.stringify(
    Array.from({ length: 500 }, (_, i) => ({
      schema: 'gatehouse.event/v1',
      id: randomUUID(),
      time: new Date().toISOString(),
      // refusals no detector counts (403): the cost of taking events in, not of quarantining
      type: 'request_refused',
      code: 'forbidden',
      status: 403,
      source: `10.${i % 250}.0.1`,
      route: 'open',
      method: 'GET',
      path: `/open/${i}`,
    })),
  );
let stored = 0;
let throttled = 0;
const end = Date.now() + SECONDS * 1000;
const t0 = performance.now();
const cpu0 = process.cpuUsage();
await Promise.all(
  peps.map(async (id) => {
    const a = agent(id);
    while (Date.now() < end) {
      const s = await post(a, batch());
      if (s === 202) stored += 500;
      else if (s === 429) throttled += 500;
    }
    a.destroy();
  }),
);
const elapsed = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);

// 2. detection latency: a scanner from its own address, refused at every gateway
const latencies: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const source = `127.0.${10 + Math.floor(r / 200)}.${(r % 200) + 2}`;
  const from = new Agent({ connect: { rejectUnauthorized: false }, localAddress: source });
  const hit = async (gw: RunningGateway, p: string) => {
    const res = await request(`${gw.url}${p}`, { dispatcher: from });
    await res.body.dump();
    return res.statusCode;
  };
  for (let i = 1; i <= 5; i++) await hit(gateways[i % GATEWAYS], `/scan-${r}-${i}`);
  const start = performance.now();
  for (;;) {
    const codes = await Promise.all(gateways.map((g) => hit(g, '/open')));
    if (codes.every((c) => c === 403)) break;
    if (performance.now() - start > 15_000) throw new Error(`round ${r}: not enforced within 15 s (${codes.join(',')})`);
    await new Promise((res) => setTimeout(res, 5));
  }
  latencies.push(performance.now() - start);
  await from.close();
}
latencies.sort((a, b) => a - b);
const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)];

// 3. the cost of emitting: a shipper's emit() (what a refusal adds to a request), per call
const shipper = createEventShipper({ url: control.url, identity: () => peps[0], trustDomain: TD, caBundle: peps[0].bundlePem, flushMs: 60_000, maxBuffer: 1_000_000 });
const N = 200_000;
const e0 = performance.now();
for (let i = 0; i < N; i++) shipper.emit({ type: 'request_refused', code: 'not_found', status: 404, source: '10.0.0.1', method: 'GET', path: `/x/${i}` });
const emitUs = ((performance.now() - e0) * 1000) / N;
await shipper.close();

// 4. a client quarantine reaching the authority: the decision (admin API) → the client's token request refused
const auth = await startAuthority({ topology: loadTopology(file), zone: 'edge', stateDir: dir, logger: quiet });
const client = await auth.admin.clients.add({ clientId: 'bench-client', grantTypes: ['client_credentials'], scope: 'orders:read', authMethod: 'client_secret_basic' });
const tls = new Agent({ connect: { rejectUnauthorized: false } });
const tokenStatus = async () => {
  const r = await request(`${auth.issuer}/token`, {
    method: 'POST',
    dispatcher: tls,
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`bench-client:${client.client_secret}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=orders%3Aread',
  });
  await r.body.dump();
  return r.statusCode;
};
const toAuthority: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const add = await request(`${control.adminUrl}/quarantines`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scope: 'client', value: 'bench-client', for: '1m', reason: 'bench' }) });
  await add.body.dump();
  const start = performance.now();
  while ((await tokenStatus()) !== 400) {
    if (performance.now() - start > 15_000) throw new Error(`round ${r}: the authority did not refuse within 15 s`);
    await new Promise((res) => setTimeout(res, 5));
  }
  toAuthority.push(performance.now() - start);
  await (await request(`${control.adminUrl}/quarantines?scope=client&value=bench-client`, { method: 'DELETE' })).body.dump();
  while ((await tokenStatus()) !== 200) await new Promise((res) => setTimeout(res, 20));
}
toAuthority.sort((a, b) => a - b);
const qa = (p: number) => toAuthority[Math.min(toAuthority.length - 1, Math.ceil(p * toAuthority.length) - 1)];
await auth.close();
await tls.close();

process.stdout.write(
  table(['measure', 'value'], [
    ['events stored per second (4 PEPs, batches of 500, one process with the control plane)', Math.round(stored / elapsed)],
    ['events refused as a flood (429)', throttled],
    ['CPU per 1000 events stored (ms, this process)', (((cpu.user + cpu.system) / 1000) / Math.max(1, stored / 1000)).toFixed(2)],
    [`detection → enforcement at all ${GATEWAYS} gateways, p50 (ms)`, q(0.5).toFixed(0)],
    ['… p99 (ms)', q(0.99).toFixed(0)],
    ['… max (ms)', latencies.at(-1)!.toFixed(0)],
    ['emit() per refused request (µs)', emitUs.toFixed(2)],
    ['client quarantine → refused at the authority, p50 (ms)', qa(0.5).toFixed(0)],
    ['… p99 (ms)', qa(0.99).toFixed(0)],
  ]) + '\n',
);
process.stdout.write('target: detection → enforcement p99 < 2000 ms (gateways and the authority); a successful request emits nothing\n');
for (const g of gateways) await g.close(100);
await control.close();
rmSync(dir, { recursive: true, force: true });
