// Gateway benchmark (issue: gateway core). One run, the same upstream for
// every proxy; wrk pinned to CPU 0 with the upstream, each proxy pinned to
// CPU 1; rounds interleaved across targets, medians reported. Prints
// requests/s, p50, p99 and ratios. Not a test.
//
//   sh scripts/node.sh bench/gateway.ts [--seconds 10] [--runs 3] [--connections 64] [--only a,b]
import { mkdtempSync, writeFileSync } from 'node:fs';
import { openDevCa } from '../src/shared/dev-ca.ts';
import { tmpdir, availableParallelism } from 'node:os';
import path from 'node:path';
import { benchArgs, benchTopology, startBenchGateway, ensureTools, freePort, startProc, startNginx, upstreamServerBlock, UPSTREAM_BODY, wrk, table, summarise, type Proc, roundRatio } from './lib.ts';

const { seconds, runs, connections, only } = benchArgs();

const root = path.join(import.meta.dirname, '..');
const node = process.execPath;
const dir = mkdtempSync(path.join(tmpdir(), 'gh-bench-'));
const tools = ensureTools({ wrk: 'wrk', nginx: 'nginx-light', haproxy: 'haproxy', taskset: 'util-linux' });
if (!tools.has('wrk')) {
  process.stderr.write('bench: wrk is required and could not be installed\n');
  process.exit(1);
}
const cores = availableParallelism();
const LOAD_CPU = '0';
const PROXY_CPU = cores > 1 ? '1' : '0';
const pin = tools.has('taskset');

const BODY = UPSTREAM_BODY;

/** nginx as a keep-alive reverse proxy to the upstream (terminating TLS with the bench certificate when `tls`). */
const nginxProxyBlock = (p: number, u: string, tls = false) => `upstream up { server ${new URL(u).host}; keepalive 128; }
  server { listen 127.0.0.1:${p}${tls ? ` ssl; ssl_certificate ${certFile}; ssl_certificate_key ${keyFile}; ssl_protocols TLSv1.3; ssl_session_cache shared:S:1m` : ''}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }`;

// one server certificate for every TLS peer (Gatehouse makes its own from the same dev CA)
const serverPair = await (await openDevCa(dir, 'bench.local')).issueServer(['127.0.0.1', 'localhost']);
const certFile = path.join(dir, 'server.pem');
const keyFile = path.join(dir, 'server-key.pem');
writeFileSync(certFile, serverPair.cert);
writeFileSync(keyFile, serverPair.key, { mode: 0o600 });

interface Target {
  name: string;
  note: string;
  scheme: 'http' | 'https';
  /** undefined: direct to the upstream */
  start?: (port: number, upstream: string) => Promise<Proc>;
  cpus?: string;
  loadCpus?: string;
}

function gatehouse(port: number, upstream: string, plaintext: boolean, accessLog: boolean, workers: number, cpus?: string) {
  if (workers !== 1) throw new Error('the bench runs one worker');
  return startBenchGateway(root, dir, port, benchTopology(port, upstream, { plaintext, accessLog }), { cpus: pin ? cpus : undefined });
}

const peer = (file: string, env: NodeJS.ProcessEnv = {}) => (port: number, upstream: string) =>
  startProc([node, path.join(root, 'bench/peers', file)], {
    cpus: pin ? PROXY_CPU : undefined,
    ready: /ready/,
    env: { PORT: String(port), UPSTREAM: upstream, ...env },
  });

const targets: Target[] = [
  { name: 'direct', note: 'wrk → upstream', scheme: 'http' },
  { name: 'bare-node-proxy', note: 'node:http + undici, no features', scheme: 'http', start: peer('bare-proxy.ts') },
  { name: 'gatehouse-http', note: '1 worker, plaintext', scheme: 'http', start: (p, u) => gatehouse(p, u, true, false, 1, PROXY_CPU) },
  { name: 'gatehouse-https', note: '1 worker, TLS 1.3 (h1)', scheme: 'https', start: (p, u) => gatehouse(p, u, false, false, 1, PROXY_CPU) },
  { name: 'gatehouse-https+log', note: '1 worker, TLS, access log on', scheme: 'https', start: (p, u) => gatehouse(p, u, false, true, 1, PROXY_CPU) },
  { name: 'bare-node-https', note: 'node:https + undici Pool, no features', scheme: 'https', start: peer('bare-proxy.ts', { CERT: certFile, KEY: keyFile }) },
  {
    name: 'bare-node-https+headers',
    note: 'the same, adding the headers Gatehouse adds',
    scheme: 'https',
    start: peer('bare-proxy.ts', { CERT: certFile, KEY: keyFile, HEADERS: 'gatehouse' }),
  },
  ...(tools.has('nginx')
    ? [
        {
          name: 'nginx-https',
          note: '1 worker, TLS 1.3, keepalive upstream',
          scheme: 'https' as const,
          start: (p: number, u: string) => startNginx(dir, pin, p, 1, nginxProxyBlock(p, u, true), PROXY_CPU),
        },
      ]
    : []),
  ...(tools.has('nginx')
    ? [
        {
          name: 'nginx',
          note: '1 worker, keepalive upstream',
          scheme: 'http' as const,
          start: (p: number, u: string) =>
            startNginx(dir, pin,
              p,
              1,
              nginxProxyBlock(p, u),
              PROXY_CPU,
            ),
        },
      ]
    : []),
  ...(tools.has('haproxy')
    ? [
        {
          name: 'haproxy',
          note: '1 thread, http-reuse always',
          scheme: 'http' as const,
          start: (p: number, u: string) => {
            const file = path.join(dir, `haproxy-${p}.cfg`);
            writeFileSync(
              file,
              `global\n  nbthread 1\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:${p}\n  default_backend b\nbackend b\n  server s1 ${new URL(u).host}\n`,
            );
            return startProc(['haproxy', '-f', file, '-db'], { cpus: pin ? PROXY_CPU : undefined, port: p });
          },
        },
      ]
    : []),
  { name: 'fast-gateway', note: 'restana + fast-proxy-lite', scheme: 'http', start: peer('fast-gateway.ts') },
  { name: '@fastify/http-proxy', note: 'fastify + undici', scheme: 'http', start: peer('fastify-proxy.ts') },
  {
    name: 'gatehouse-http x2',
    note: '--workers 2, unpinned',
    scheme: 'http',
    start: (p, u) => gatehouse(p, u, true, false, 2, undefined),
    cpus: undefined,
    loadCpus: undefined,
  },
  ...(tools.has('nginx')
    ? [
        {
          name: 'nginx x2',
          note: '2 workers, unpinned',
          scheme: 'http' as const,
          start: (p: number, u: string) =>
            startNginx(dir, pin,
              p,
              2,
              nginxProxyBlock(p, u),
              undefined,
            ),
          loadCpus: undefined,
        },
      ]
    : []),
];

const upstreamPort = await freePort();
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
let upstream: Proc;
if (tools.has('nginx')) {
  upstream = await startNginx(dir, pin,
    upstreamPort,
    1,
    upstreamServerBlock(upstreamPort),
    LOAD_CPU,
  );
} else {
  // no nginx: a node:http upstream (slower; noted in the output)
  writeFileSync(
    path.join(dir, 'upstream.mjs'),
    `import http from 'node:http';http.createServer((q,s)=>{s.writeHead(200,{'content-type':'application/json'});s.end(${JSON.stringify(BODY)})}).listen(${upstreamPort},'127.0.0.1',()=>console.log('ready'));`,
  );
  upstream = await startProc([node, path.join(dir, 'upstream.mjs')], { cpus: pin ? LOAD_CPU : undefined, ready: /ready/ });
}

interface Row {
  name: string;
  note: string;
  rps: number;
  p50: number;
  p99: number;
  /** CPU per request of the proxy's processes (µs): what one core's throughput is the inverse of, steadier than req/s on a busy machine */
  cpuUs: number;
  errors: number;
}
const rows: Row[] = [];
process.stderr.write(`bench: ${runs} × ${seconds}s per target, wrk -t1 -c${connections}, ${cores} cores, ${pin ? `wrk+upstream on CPU ${LOAD_CPU}, proxy on CPU ${PROXY_CPU}` : 'unpinned'}\n`);
// Every target is started first (an idle proxy costs nothing), then the rounds
// run interleaved — target A, B, C, then A, B, C again — so a machine whose speed
// drifts during the run does not favour whichever target ran in its fast minutes.
interface Running {
  t: Target;
  url: string;
  loadCpus: string | undefined;
  proc: Proc | undefined;
  results: ReturnType<typeof wrk>[];
}
const running: Running[] = [];
for (const t of targets) {
  if (only && !only.includes(t.name)) continue;
  const port = t.start ? await freePort() : upstreamPort;
  try {
    const proc = t.start ? await t.start(port, upstreamUrl) : undefined;
    const url = `${t.scheme}://127.0.0.1:${port}/api/bench`;
    const loadCpus = 'loadCpus' in t ? t.loadCpus : pin ? LOAD_CPU : undefined;
    wrk(url, { seconds: 2, connections, cpus: loadCpus }); // warm-up
    running.push({ t, url, loadCpus, proc, results: [] });
  } catch (error) {
    process.stderr.write(`bench: ${t.name} failed: ${(error as Error).message.slice(0, 300)}\n`);
    rows.push({ name: t.name, note: `failed to run`, rps: NaN, p50: NaN, p99: NaN, cpuUs: NaN, errors: NaN });
  }
}
for (let round = 0; round < runs; round++)
  for (const r of running) r.results.push(wrk(r.url, { seconds, connections, cpus: r.loadCpus, pid: r.proc?.child.pid }));
for (const { t, proc, results } of running) {
  const row = summarise(t.name, t.note, results);
  rows.push(row);
  process.stderr.write(
    `bench: ${t.name}: ${Math.round(row.rps)} req/s, p99 ${row.p99.toFixed(2)} ms, ${row.cpuUs.toFixed(1)} µs CPU/req (rounds: ${results.map((r) => `${Math.round(r.rps)} @ ${r.cpuUs.toFixed(0)} µs`).join(', ')})\n`,
  );
  await proc?.stop();
}
await upstream.stop();

const by = (n: string) => rows.find((r) => r.name === n);
const direct = by('direct');
console.log(`\nGateway benchmark — ${new Date().toISOString()} — Node ${process.version}, ${runs}×${seconds}s medians, wrk -t1 -c${connections}`);
console.log(`upstream: ${tools.has('nginx') ? 'nginx (1 worker, fixed JSON)' : 'node:http (nginx unavailable)'}; ${pin ? 'wrk and upstream pinned to CPU 0, proxies to CPU 1 (x2 rows unpinned)' : 'no taskset: unpinned'}\n`);
console.log(
  table(
    ['target', 'setup', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'x direct', 'errors'],
    rows.map((r) => [r.name, r.note, r.rps, r.p50, r.p99, r.cpuUs, direct ? r.rps / direct.rps : NaN, r.errors]),
  ),
);
const ratio = (a?: Row, b?: Row) => (a && b ? a.rps / b.rps : NaN);
const rounds = (name: string) => running.find((r) => r.t.name === name)?.results;
/** The same ratio from CPU per request (one saturated core serves 1/CPU requests a second): b's CPU over a's. */
const cpuRatio = (a?: Row, b?: Row) => (a && b ? b.cpuUs / a.cpuUs : NaN);
const checks: [string, number, number][] = [
  ['gatehouse-https+log / bare-node-https (the Node ceiling over TLS)', ratio(by('gatehouse-https+log'), by('bare-node-https')), 0.9],
  ['the same, median of the rounds\' ratios (each round runs the two a few seconds apart)', roundRatio(rounds('gatehouse-https+log'), rounds('bare-node-https')), 0.9],
  ['the same, from CPU per request (bare µs / gatehouse µs)', cpuRatio(by('gatehouse-https+log'), by('bare-node-https')), 0.9],
  ['bare-node-https+headers / bare-node-https (what the headers alone cost)', roundRatio(rounds('bare-node-https+headers'), rounds('bare-node-https')), NaN],
  ['gatehouse-https+log / bare-node-https+headers (rounds\' ratios)', roundRatio(rounds('gatehouse-https+log'), rounds('bare-node-https+headers')), NaN],
  ['gatehouse-https+log / nginx-https', ratio(by('gatehouse-https+log'), by('nginx-https')), NaN],
  ['bare-node-https / nginx-https (Node\'s own ceiling)', ratio(by('bare-node-https'), by('nginx-https')), NaN],
  ['gatehouse-http / bare-node-proxy', ratio(by('gatehouse-http'), by('bare-node-proxy')), 0.95],
  ['gatehouse-http / fast-gateway', ratio(by('gatehouse-http'), by('fast-gateway')), 1.2],
  ['gatehouse-https / gatehouse-http', ratio(by('gatehouse-https'), by('gatehouse-http')), 0.85],
  ['nginx p99 x2 / gatehouse-http p99 (≥ 1 is on target)', (by('nginx')?.p99 ?? NaN) * 2 / (by('gatehouse-http')?.p99 ?? NaN), 1],
  ['gatehouse-http x2 / nginx x2', ratio(by('gatehouse-http x2'), by('nginx x2')), NaN],
];
console.log('\n' + table(['target check', 'measured', 'target', 'met'], checks.map(([n, v, t]) => [n, v, Number.isNaN(t) ? 'report' : `≥ ${t}`, Number.isNaN(t) || Number.isNaN(v) ? '-' : v >= t ? 'yes' : 'NO'])));
writeFileSync(path.join(dir, 'result.json'), JSON.stringify(rows, null, 2));
