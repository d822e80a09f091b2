// Mesh benchmark: requests/s and p99 between two services over plain HTTP, TLS,
// mTLS with the SDK's policy check, and through the sidecar (to an application
// on its Unix socket, the default, and on an explicitly configured loopback
// port; the application checks the sidecar's secret); handshakes/s with
// and without session resumption. The servers run in a child process so the
// load generator does not share their core.
//   sh scripts/node.sh bench/mesh.ts [seconds per run, default 3] [concurrency, default 32] [rounds, default 3]
import { fork } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';

const TOPOLOGY = `
version: 1
trustDomain: bench.local
zones:
  z: {}
services:
  orders:
    zone: z
    upstream: http://127.0.0.1:1
    allow:
      - { caller: checkout, methods: [GET], paths: [{ path: /orders, match: prefix }] }
  checkout:
    zone: z
    upstream: http://127.0.0.1:1
    egress: [orders]
`;

interface Urls {
  plain: string;
  tls: string;
  mtls: string;
  sidecar: string;
  sidecarLoopback: string;
  bundle: string;
  serverCa: string;
  client: { cert: string; key: string };
  stateDir: string;
}

async function serve(): Promise<void> {
  const { parseTopology } = await import('../src/topology/load.ts');
  const { initCa, issueWorkloadIdentity, localRevocations } = await import('../src/pki/index.ts');
  const { createService, startSidecar, createSidecarGuard, listenForSidecar, sidecarPaths } = await import('../src/mesh/index.ts');
  const { openDevCa } = await import('../src/shared/dev-ca.ts');
  const { createLogger } = await import('../src/shared/logger.ts');
  const logger = createLogger({ name: 'bench', level: 'error' });
  const topology = parseTopology(TOPOLOGY);
  const stateDir = mkdtempSync(path.join(tmpdir(), 'gh-bench-'));
  await initCa({ stateDir, topology, passphrase: 'benchmark passphrase!' });
  const orders = await issueWorkloadIdentity(stateDir, 'spiffe://bench.local/zone/z/svc/orders', { ttlSeconds: 86400 });
  const checkout = await issueWorkloadIdentity(stateDir, 'spiffe://bench.local/zone/z/svc/checkout', { ttlSeconds: 86400 });
  const body = JSON.stringify({ id: 1, items: ['a', 'b'], total: 42 });
  const answer = (_req: http.IncomingMessage, res: http.ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const listen = async (s: http.Server | https.Server, scheme: string) => {
    s.keepAliveTimeout = 60_000;
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const plain = await listen(http.createServer(answer), 'http');
  const dev = await openDevCa(stateDir, 'bench.local');
  const serverPair = await dev.issueServer(['127.0.0.1']);
  const tlsUrl = await listen(https.createServer({ ...serverPair }, answer), 'https');
  const svc = await createService({
    name: 'orders',
    topology,
    identity: orders,
    revocations: localRevocations(stateDir),
    logger,
    keepAliveTimeoutMs: 60_000,
    handler: answer,
  });
  // The application behind the sidecar, as `gatehouse up` runs one: on the Unix
  // socket of its run folder, admitting only requests with the sidecar's secret.
  const run = sidecarPaths(stateDir, 'orders');
  const guard = createSidecarGuard({ secretFile: run.secretFile });
  const guarded = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (guard.admit(req, res)) answer(req, res);
  };
  const app = http.createServer(guarded);
  app.keepAliveTimeout = 60_000;
  await listenForSidecar(app, { socketPath: run.socket });
  const car = await startSidecar({
    service: 'orders',
    topology,
    identity: orders,
    upstream: `unix:${run.socket}`,
    revocations: localRevocations(stateDir),
    resolve: () => undefined,
    logger,
  });
  // The same, on an explicitly configured loopback port.
  const loopRun = sidecarPaths(stateDir, 'orders-loopback');
  const loopGuard = createSidecarGuard({ secretFile: loopRun.secretFile });
  const loopApp = http.createServer((req, res) => {
    if (loopGuard.admit(req, res)) answer(req, res);
  });
  const loopUrl = await listen(loopApp, 'http');
  const loopCar = await startSidecar({
    service: 'orders',
    topology,
    identity: orders,
    upstream: loopUrl,
    secretFile: loopRun.secretFile,
    revocations: localRevocations(stateDir),
    resolve: () => undefined,
    logger,
  });
  const urls: Urls = {
    plain,
    tls: tlsUrl,
    mtls: svc.url,
    sidecar: car.url,
    sidecarLoopback: loopCar.url,
    bundle: orders.bundlePem,
    serverCa: dev.caPem,
    client: { cert: checkout.certPem, key: checkout.keyPem },
    stateDir,
  };
  process.send!(urls);
  process.on('disconnect', () => {
    rmSync(stateDir, { recursive: true, force: true });
    process.exit(0);
  });
}

async function load(url: string, agentOptions: https.AgentOptions, seconds: number, concurrency: number) {
  const u = new URL(url);
  const isHttps = u.protocol === 'https:';
  const agent = isHttps ? new https.Agent({ keepAlive: true, maxSockets: concurrency, checkServerIdentity: () => undefined, ...agentOptions }) : new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const mod = isHttps ? https : http;
  const latencies: number[] = [];
  let errors = 0;
  let end = 0;
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = mod.request({ host: u.hostname, port: u.port, path: '/orders/1', agent }, (res) => {
        res.on('data', () => {});
        res.on('end', () => {
          if (res.statusCode === 200) latencies.push(performance.now() - t0);
          else errors++;
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end();
    });
  // warm-up: long enough for the JIT to settle on this path, so a row does not profit from the one before it
  const warmEnd = performance.now() + Math.min(1, seconds / 3) * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      do await one();
      while (performance.now() < warmEnd);
    }),
  );
  latencies.length = 0;
  errors = 0;
  const start = performance.now();
  end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) await one();
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / elapsed, p99: latencies[Math.floor(latencies.length * 0.99)] ?? NaN, errors };
}

async function handshakes(url: string, opts: tls.ConnectionOptions, seconds: number, resume: boolean) {
  const u = new URL(url);
  let session: Buffer | undefined;
  let n = 0;
  let resumed = 0;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  const worker = async () => {
    while (performance.now() < end) {
      await new Promise<void>((resolve, reject) => {
        const s = tls.connect({ host: u.hostname, port: Number(u.port), ...opts, session: resume ? session : undefined, checkServerIdentity: () => undefined });
        s.once('session', (sess: Buffer) => (session = sess));
        s.once('secureConnect', () => {
          n++;
          if (s.isSessionReused()) resumed++;
          // TLS 1.3 sends tickets after the handshake; give it a moment to arrive.
          setImmediate(() => {
            s.end();
            resolve();
          });
        });
        s.once('error', reject);
      });
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return { hps: n / ((performance.now() - start) / 1000), resumed: n ? resumed / n : 0 };
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 3);
  const concurrency = Number(process.argv[3] ?? 32);
  const rounds = Number(process.argv[4] ?? 3);
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const urls = await new Promise<Urls>((r) => child.once('message', (m) => r(m as Urls)));
  const mtlsOpts = { ca: urls.bundle, cert: urls.client.cert, key: urls.client.key };
  const paths: [string, string, https.AgentOptions][] = [
    ['plain HTTP', urls.plain, {}],
    ['TLS', urls.tls, { ca: urls.serverCa }],
    ['mTLS + policy (SDK)', urls.mtls, mtlsOpts],
    ['mTLS via sidecar', urls.sidecar, mtlsOpts],
    ['mTLS via sidecar (loopback app port)', urls.sidecarLoopback, mtlsOpts],
  ];
  // Rows run interleaved, `rounds` times, and each reports its median round: on a
  // shared machine the load drifts, and a row measured in one bad moment would
  // otherwise skew every ratio.
  const samples = paths.map(() => [] as { rps: number; p99: number; errors: number }[]);
  for (let round = 0; round < rounds; round++)
    for (const [i, [, url, opts]] of paths.entries()) samples[i].push(await load(url, opts, seconds, concurrency));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const rows: [string, { rps: number; p99: number; errors: number }][] = paths.map(([name], i) => [
    name,
    { rps: median(samples[i].map((r) => r.rps)), p99: median(samples[i].map((r) => r.p99)), errors: samples[i].reduce((n, r) => n + r.errors, 0) },
  ]);
  const tlsRps = rows[1][1].rps;
  const mtlsRps = rows[2][1].rps;
  console.log(`\nrequests between two services (keep-alive, ${concurrency} concurrent, ${seconds}s each, median of ${rounds} interleaved rounds)\n`);
  console.log('| path | req/s | p99 ms | errors | ratio |');
  console.log('|---|---:|---:|---:|---|');
  for (const [name, r] of rows) {
    const ratio =
      name === 'mTLS + policy (SDK)'
        ? `${(r.rps / tlsRps).toFixed(2)}× TLS (target ≥ 0.85)`
        : name.startsWith('mTLS via sidecar')
          ? `${(r.rps / mtlsRps).toFixed(2)}× mTLS (target ≥ 0.6)`
          : '';
    console.log(`| ${name} | ${r.rps.toFixed(0)} | ${r.p99.toFixed(2)} | ${r.errors} | ${ratio} |`);
  }
  const full = await handshakes(urls.mtls, mtlsOpts, seconds, false);
  const res = await handshakes(urls.mtls, mtlsOpts, seconds, true);
  console.log('\nmTLS handshakes (4 concurrent)\n');
  console.log('| mode | handshakes/s | resumed |');
  console.log('|---|---:|---:|');
  console.log(`| full | ${full.hps.toFixed(0)} | ${(full.resumed * 100).toFixed(0)}% |`);
  console.log(`| session resumption | ${res.hps.toFixed(0)} | ${(res.resumed * 100).toFixed(0)}% |`);
  child.disconnect();
}

if (process.argv.includes('--serve')) await serve();
else await main();
