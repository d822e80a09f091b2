// Control plane: propagation of a publish to 100 bundle clients (one process,
// each with its own workload certificate, real mTLS, long-poll and full
// verification), p50/p99/max per round; control-plane memory per PEP; bundle
// size and verify time of a 500-route gateway bundle.
//   sh scripts/node.sh bench/control.ts [--peps 100] [--rounds 10]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { initCa, issueWorkloadIdentity, serviceSpiffeId, gatewaySpiffeId } from '../src/pki/index.ts';
import { parseTopology } from '../src/topology/load.ts';
import { startControlServer, createBundleClient, type BundleClient } from '../src/control/index.ts';
import { verifyBundle } from '../src/policy/index.ts';
import { table } from './lib.ts';

const { values } = parseArgs({ options: { peps: { type: 'string', default: '100' }, rounds: { type: 'string', default: '10' } }, strict: false });
const PEPS = Number(values.peps);
const ROUNDS = Number(values.rounds);
const ROUTES = 500;
const TD = 'bench.local';

function yaml(extra: number): string {
  let s = `version: 1\ntrustDomain: ${TD}\nzones:\n  edge:\n    gateway: { listen: 127.0.0.1:0 }\n    routes:\n`;
  for (let i = 0; i < ROUTES; i++)
    s += `      - { name: r${i}, path: '/api/r${i}/{id}', methods: [GET, POST], service: s${i % PEPS}, auth: { accept: [jwt], scopes: [read:${i}] } }\n`;
  s += 'services:\n';
  for (let i = 0; i < PEPS; i++)
    s += `  s${i}:\n    zone: edge\n    upstream: http://127.0.0.1:1\n    allow: [{ caller: gateway, methods: [GET, POST], paths: [{ path: /api/r${i}, match: prefix }, { path: /v${extra} }] }]\n    egress: [s${(i + 1) % PEPS}]\n`;
  return s;
}

const dir = mkdtempSync(path.join(tmpdir(), 'gh-bench-control-'));
const config = path.join(dir, 'gatehouse.yaml');
writeFileSync(config, yaml(0));
await initCa({ stateDir: dir, topology: parseTopology(yaml(0)), passphrase: 'correct horse battery staple' });
const rssBefore = process.memoryUsage().rss;
const server = await startControlServer({ config, stateDir: dir, watchMs: 3_600_000, logger: { info() {}, error() {}, warn() {}, debug() {}, child() { return this; } } as never });
const rssServer = process.memoryUsage().rss;

const clients: BundleClient[] = [];
for (let i = 0; i < PEPS; i++) {
  const id = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', `s${i}`), { ttlSeconds: 3600 });
  clients.push(createBundleClient({ url: server.bundlesUrl, identity: id, trustDomain: TD, caBundle: id.bundlePem, stateDir: path.join(dir, 'peps', `s${i}`), waitSeconds: 30 }));
}
await Promise.all(clients.map((c) => c.waitFor(server.revision(), 30_000)));
await new Promise((r) => setTimeout(r, 500));
const rssClients = process.memoryUsage().rss;

const rows: (string | number)[][] = [];
const all: number[] = [];
const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
let cpuPerRevision = 0;
for (let round = 1; round <= ROUNDS; round++) {
  writeFileSync(config, yaml(round));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const rev = await server.publish();
  const done = await Promise.all(clients.map((c) => c.waitFor(rev, 10_000).then(() => performance.now() - t0)));
  const cpu = process.cpuUsage(cpu0);
  cpuPerRevision += (cpu.user + cpu.system) / 1000;
  done.sort((a, b) => a - b);
  all.push(...done);
  rows.push([`round ${round} (r${rev})`, done[0].toFixed(1), pct(done, 50).toFixed(1), pct(done, 99).toFixed(1), done[done.length - 1].toFixed(1)]);
  await new Promise((r) => setTimeout(r, 200));
}
all.sort((a, b) => a - b);
rows.push([`all ${ROUNDS} rounds`, all[0].toFixed(1), pct(all, 50).toFixed(1), pct(all, 99).toFixed(1), all[all.length - 1].toFixed(1)]);
process.stdout.write(`\nPropagation: publish → ${PEPS} PEPs enforcing the new revision (ms; mTLS long-poll, full verification, one process)\n`);
process.stdout.write(table(['round', 'min', 'p50', 'p99', 'max'], rows) + '\n');

// a 500-route gateway bundle: size and verify time
const gw = server.status(); void gw;
const entryBytes = await (async () => {
  const id = await issueWorkloadIdentity(dir, gatewaySpiffeId(TD, 'edge'));
  const c = createBundleClient({ url: server.bundlesUrl, identity: id, trustDomain: TD, caBundle: id.bundlePem, stateDir: path.join(dir, 'gw') });
  const v = await c.waitFor(server.revision(), 10_000);
  await c.close();
  return { bytes: v.bytes, id };
})();
const N = 200;
const t = performance.now();
for (let i = 0; i < N; i++)
  await verifyBundle(entryBytes.bytes, { trustDomain: TD, audience: entryBytes.id.spiffeId, caBundle: entryBytes.id.bundlePem, now: Date.now(), minRevision: 0 });
const verifyMs = (performance.now() - t) / N;
const svc = clients[0].current()!.bytes.length;
process.stdout.write('\nBundles and control-plane cost\n');
process.stdout.write(
  table(['measure', 'value'], [
    [`gateway bundle, ${ROUTES} routes (bytes)`, entryBytes.bytes.length],
    [`verify time, ${ROUTES}-route bundle (ms, mean of ${N})`, verifyMs.toFixed(2)],
    ['service bundle (bytes)', svc],
    [`control CPU per revision, ${PEPS + 1} bundles signed + served (ms, incl. the clients in this process)`, (cpuPerRevision / ROUNDS).toFixed(1)],
    ['control plane RSS after start (MiB)', ((rssServer - rssBefore) / 2 ** 20).toFixed(1)],
    [`RSS per PEP, client + its server connection (KiB)`, ((rssClients - rssServer) / PEPS / 1024).toFixed(0)],
  ]) + '\n',
);
for (const c of clients) await c.close();
await server.close();
rmSync(dir, { recursive: true, force: true });
process.exit(0);
