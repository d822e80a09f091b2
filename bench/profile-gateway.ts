// Where a proxy's CPU goes, per request: runs one target under load with
// --cpu-prof (the same upstream, pinning and wrk as bench/gateway.ts), then
// prints the self time of its functions and of coarse areas (TLS, HTTP
// parsing and writing, undici, the gateway's own code, the access log, GC) in
// CPU µs per request. Run it for Gatehouse and the bare Node proxy and compare
// side by side. Not a test.
//
//   sh scripts/node.sh bench/profile-gateway.ts [--seconds 8] [--only gatehouse-https+log,bare-node-https] [--top 40] [--interval 250]
//
// --interval: V8's sampling interval in µs (default 1000: at ~10k req/s a
// function costing 0.1 µs/request is one sample in ten requests' worth of
// milliseconds; 250 resolves the small entries at a few percent more overhead).
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openDevCa } from '../src/shared/dev-ca.ts';
import { benchTopology, ensureTools, freePort, startBenchGateway, startNginx, startProc, table, upstreamServerBlock, wrk, type Proc } from './lib.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '8' }, only: { type: 'string', default: 'gatehouse-https+log,bare-node-https' }, top: { type: 'string', default: '30' }, interval: { type: 'string', default: '1000' } },
});
const seconds = Number(values.seconds);
const top = Number(values.top);
const profArgs = (out: string) => ['--cpu-prof', `--cpu-prof-dir=${out}`, `--cpu-prof-interval=${Number(values.interval)}`];
const root = path.join(import.meta.dirname, '..');
const node = process.execPath;
const dir = mkdtempSync(path.join(tmpdir(), 'gh-prof-'));
const tools = ensureTools({ wrk: 'wrk', nginx: 'nginx-light', taskset: 'util-linux' });
const pin = tools.has('taskset');
const pair = await (await openDevCa(dir, 'bench.local')).issueServer(['127.0.0.1', 'localhost']);
const certFile = path.join(dir, 'server.pem');
const keyFile = path.join(dir, 'server-key.pem');
writeFileSync(certFile, pair.cert);
writeFileSync(keyFile, pair.key, { mode: 0o600 });
// a profile is written at a normal exit only: the bare peer has no SIGTERM handler of its own
const EXIT_ON_TERM = `data:text/javascript,process.on('SIGTERM',()=>process.exit(0))`;

const targets: Record<string, (port: number, upstream: string, profDir: string) => Promise<Proc>> = {
  'gatehouse-https+log': (p, u, out) => gatehouse(p, u, true, out),
  'gatehouse-https': (p, u, out) => gatehouse(p, u, false, out),
  'bare-node-https': (p, u, out) => bare(p, u, out, ''),
  'bare-node-https+headers': (p, u, out) => bare(p, u, out, 'gatehouse'),
};

function bare(port: number, upstream: string, out: string, headers: string): Promise<Proc> {
  return startProc([node, ...profArgs(out), '--import', EXIT_ON_TERM, path.join(root, 'bench/peers/bare-proxy.ts')], {
    cpus: pin ? '1' : undefined,
    ready: /ready/,
    env: { PORT: String(port), UPSTREAM: upstream, CERT: certFile, KEY: keyFile, HEADERS: headers },
  });
}

function gatehouse(port: number, upstream: string, accessLog: boolean, out: string): Promise<Proc> {
  return startBenchGateway(root, dir, port, benchTopology(port, upstream, { accessLog }), { cpus: pin ? '1' : undefined, nodeArgs: profArgs(out) });
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** The coarse area a frame belongs to, from its script. */
function area(url: string, fn: string): string {
  if (fn === '(garbage collector)') return 'gc';
  if (fn === '(program)' || fn === '(idle)') return fn;
  if (url.includes('/src/gateway/')) return 'gatehouse: gateway';
  if (url.includes('/src/shared/')) return 'gatehouse: shared';
  if (url.includes('/src/')) return 'gatehouse: other';
  if (url.includes('sonic-boom') || url.includes('/pino')) return 'access log (pino)';
  if (url.includes('prom-client')) return 'metrics (prom-client)';
  if (url.includes('undici')) return 'undici';
  if (/_tls_|tls_wrap|node:tls|internal\/tls/.test(url)) return 'node: tls';
  if (/_http_|internal\/http/.test(url)) return 'node: http';
  if (/internal\/streams|node:stream/.test(url)) return 'node: streams';
  if (/net\.js|node:net|stream_base/.test(url)) return 'node: net';
  if (url === '') return 'native';
  if (url.startsWith('node:')) return 'node: other';
  return 'other js';
}

/** Self time per function and area, counting only samples taken in [from, to] (µs of the monotonic clock V8 stamps them with). */
function analyse(profile: Profile, requests: number, from: number, to: number): { areas: [string, number][]; functions: [string, number][] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, us] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    const a = area(url, functionName);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${lineNumber + 1}`;
    functions.set(key, (functions.get(key) ?? 0) + us);
  }
  const per = (m: Map<string, number>) => [...m].map(([k, v]) => [k, v / requests] as [string, number]).sort((a, b) => b[1] - a[1]);
  return { areas: per(areas), functions: per(functions) };
}

const upstreamPort = await freePort();
const upstream = await startNginx(dir, pin, upstreamPort, 1, upstreamServerBlock(upstreamPort), '0');
const results: { name: string; rps: number; areas: [string, number][]; functions: [string, number][] }[] = [];
try {
  for (const name of values.only.split(',')) {
    const start = targets[name];
    if (!start) throw new Error(`unknown target ${name}: ${Object.keys(targets).join(', ')}`);
    const out = mkdtempSync(path.join(dir, 'prof-'));
    const port = await freePort();
    const proc = await start(port, `http://127.0.0.1:${upstreamPort}`, out);
    wrk(`https://127.0.0.1:${port}/`, { seconds: 2, connections: 64, cpus: pin ? '0' : undefined }); // warm-up
    // V8 stamps samples with the monotonic clock, the same one hrtime reads: only the measured window counts
    const from = Number(process.hrtime.bigint() / 1000n);
    const r = wrk(`https://127.0.0.1:${port}/`, { seconds, connections: 64, cpus: pin ? '0' : undefined });
    const to = Number(process.hrtime.bigint() / 1000n);
    await proc.stop();
    const file = readdirSync(out).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error(`${name}: no profile written`);
    const profile = JSON.parse(readFileSync(path.join(out, file), 'utf8')) as Profile;
    results.push({ name, rps: r.rps, ...analyse(profile, r.rps * ((to - from) / 1e6), from, to) });
    process.stderr.write(`profile: ${name}: ${Math.round(r.rps)} req/s, ${path.join(out, file)}\n`);
  }
} finally {
  await upstream.stop();
}

const names = [...new Set(results.flatMap((r) => r.areas.map(([a]) => a)))];
console.log(`\nCPU µs per request by area (self time, profile of the ${seconds} s under wrk -t1 -c64)\n`);
console.log(
  table(
    ['area', ...results.map((r) => r.name)],
    [
      ...names.map((a) => [a, ...results.map((r) => (r.areas.find(([x]) => x === a)?.[1] ?? 0).toFixed(1))]),
      ['total', ...results.map((r) => r.areas.reduce((s, [, v]) => s + v, 0).toFixed(1))],
    ],
  ),
);
for (const r of results) {
  console.log(`\n${r.name}: top ${top} functions (self µs/request)\n`);
  console.log(table(['function', 'µs'], r.functions.slice(0, top).map(([f, v]) => [f, v.toFixed(2)])));
}
