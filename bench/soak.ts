// Soak: N minutes of mixed traffic against `gatehouse up` on the example —
// anonymous (the rate-limited catalog), authenticated (a public and a private
// route with client-credentials JWTs) and refused (no token, a forged token) —
// sampling the public gateway process's RSS (/proc) and V8 heap (its admin
// /metrics; no forced GC: the gateway does not expose one, so the heap is the
// plain used heap) with p50/p99 and error counts per interval. Prints tables.
//   sh scripts/node.sh bench/soak.ts [--minutes 1] [--connections 8] [--interval 10]
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { table } from './lib.ts';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    connections: { type: 'string', default: '8' },
    interval: { type: 'string', default: '10' },
  },
});
const minutes = Number(values.minutes);
const connections = Number(values.connections);
const intervalMs = Number(values.interval) * 1000;
if (!(minutes > 0) || !(connections >= 1) || !(intervalMs >= 1000)) throw new Error('--minutes > 0, --connections ≥ 1, --interval ≥ 1 (seconds)');

const root = path.join(import.meta.dirname, '..');
const stateDir = mkdtempSync(path.join(tmpdir(), 'gh-soak-'));
const up = spawn(process.execPath, [path.join(root, 'src/cli/main.ts'), 'up', '--ephemeral-ports', '--state-dir', stateDir], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
up.stdout.on('data', (d) => (output += d));
up.stderr.on('data', (d) => (output += d));
const upExit = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
const startedAt = Date.now();
while (!/gatehouse: ready\n/.test(output)) {
  if (up.exitCode !== null || Date.now() - startedAt > 90_000) throw new Error(`gatehouse up did not become ready:\n${output}`);
  await new Promise((r) => setTimeout(r, 100));
}
const endpoints = JSON.parse(readFileSync(path.join(stateDir, 'endpoints.json'), 'utf8'));
const creds = JSON.parse(readFileSync(path.join(stateDir, 'dev-credentials.json'), 'utf8'));
const agent = new Agent({ connect: { ca: readFileSync(endpoints.caBundle, 'utf8') }, connections: connections * 2 });
// refused traffic from another loopback address: the gateway slows down, then blocks (429) a source
// that keeps failing authentication, and that must not be the source of the good traffic
const refusedAgent = new Agent({ connect: { ca: readFileSync(endpoints.caBundle, 'utf8') }, localAddress: '127.0.0.3', connections });
process.stderr.write(`soak: up ready in ${Date.now() - startedAt} ms; ${minutes} min, ${connections} connections\n`);

async function token(zone: string): Promise<string> {
  const c = creds.zones[zone].clients.find((x: { grant_types: string[]; client_secret?: string }) => x.grant_types.includes('client_credentials') && x.client_secret);
  const r = await request(endpoints.zones[zone].authority + '/token', {
    dispatcher: agent,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64') },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read' }).toString(),
  });
  return ((await r.body.json()) as { access_token: string }).access_token;
}
const tokens = { public: await token('public'), private: await token('private') };
// access tokens live 5 minutes: take fresh ones every 2
const refresh = setInterval(async () => {
  tokens.public = await token('public');
  tokens.private = await token('private');
}, 120_000);

const gateway = (await (await fetch(endpoints.up.admin + '/readyz')).json()) as { components: { name: string; pid?: number }[] };
const gatewayPid = gateway.components.find((c) => c.name === 'gateway-public')!.pid!;

interface Kind {
  name: string;
  weight: number;
  url: string;
  headers(): Record<string, string>;
  /** the right answers (a 429 of the rate-limited catalog, or to a source that keeps failing authentication, is the limiter doing its job) */
  ok: number[];
  via?: Agent;
}
const forged = 'eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJtYWxsb3J5In0.' + 'A'.repeat(86);
const kinds: Kind[] = [
  { name: 'anonymous catalog', weight: 1, url: endpoints.zones.public.gateway + '/api/catalog', headers: () => ({}), ok: [200, 429] },
  { name: 'jwt public echo', weight: 5, url: endpoints.zones.public.gateway + '/api/echo/soak', headers: () => ({ authorization: `Bearer ${tokens.public}` }), ok: [200] },
  { name: 'jwt private orders', weight: 2, url: endpoints.zones.private.gateway + '/api/orders', headers: () => ({ authorization: `Bearer ${tokens.private}` }), ok: [200] },
  { name: 'refused: no token', weight: 1, url: endpoints.zones.public.gateway + '/api/echo/soak', headers: () => ({}), ok: [401, 429], via: refusedAgent },
  { name: 'refused: forged token', weight: 1, url: endpoints.zones.public.gateway + '/api/echo/soak', headers: () => ({ authorization: `Bearer ${forged}` }), ok: [401, 429], via: refusedAgent },
];
const wheel = kinds.flatMap((k) => Array<Kind>(k.weight).fill(k));

interface Result {
  kind: string;
  ms: number;
  status: number | string;
  good: boolean;
}
let window: Result[] = [];
const all: Result[] = [];
let on = true;
const workers = Array.from({ length: connections }, async (_, w) => {
  for (let i = w; on; i++) {
    const k = wheel[i % wheel.length];
    const t0 = performance.now();
    let status: number | string;
    try {
      const r = await request(k.url, { dispatcher: k.via ?? agent, headers: k.headers(), headersTimeout: 10_000, bodyTimeout: 10_000 });
      status = r.statusCode;
      await r.body.dump();
    } catch (error) {
      status = (error as { code?: string }).code ?? 'error';
    }
    const r: Result = { kind: k.name, ms: performance.now() - t0, status, good: typeof status === 'number' && k.ok.includes(status) };
    window.push(r);
    all.push(r);
  }
});

const pct = (v: number[], p: number) => {
  if (v.length === 0) return NaN;
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
async function heapMb(): Promise<number> {
  const text = await (await fetch(endpoints.zones.public.admin + '/metrics')).text();
  const m = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\d+(?:\.\d+)?)/m.exec(text);
  return m ? Number(m[1]) / 1024 / 1024 : NaN;
}

const rows: (string | number)[][] = [];
const first = { rss: rssMb(gatewayPid), heap: await heapMb() };
rows.push(['0 s', 0, 0, NaN, NaN, 0, first.rss, first.heap]);
const end = Date.now() + minutes * 60_000;
const t0 = Date.now();
while (Date.now() < end) {
  await new Promise((r) => setTimeout(r, Math.min(intervalMs, end - Date.now())));
  const w = window;
  window = [];
  const lat = w.filter((r) => typeof r.status === 'number').map((r) => r.ms);
  const secs = ((Date.now() - t0) / 1000).toFixed(0);
  rows.push([`${secs} s`, w.length, w.length / (intervalMs / 1000), pct(lat, 50), pct(lat, 99), w.filter((r) => !r.good).length, rssMb(gatewayPid), await heapMb()]);
}
on = false;
await Promise.all(workers);
clearInterval(refresh);

process.stdout.write(`\nsoak: ${minutes} min of mixed traffic against gatehouse up (${connections} connections); gateway-public pid ${gatewayPid}, heap = V8 used heap without forced GC\n`);
process.stdout.write(table(['t', 'requests', 'req/s', 'p50 ms', 'p99 ms', 'errors', 'gw RSS MB', 'gw heap MB'], rows) + '\n\n');
const byKind = kinds.map((k) => {
  const r = all.filter((x) => x.kind === k.name);
  const statuses = Object.entries(
    r.reduce<Record<string, number>>((acc, x) => ((acc[x.status] = (acc[x.status] ?? 0) + 1), acc), {}),
  )
    .map(([s, n]) => `${s}×${n}`)
    .join(' ');
  const lat = r.filter((x) => typeof x.status === 'number').map((x) => x.ms);
  return [k.name, r.length, pct(lat, 50), pct(lat, 99), r.filter((x) => !x.good).length, statuses];
});
process.stdout.write(table(['traffic', 'requests', 'p50 ms', 'p99 ms', 'errors', 'answers'], byKind) + '\n');

await agent.close();
await refusedAgent.close();
const stopAt = Date.now();
up.kill('SIGTERM');
const code = await upExit;
process.stdout.write(`\ngatehouse up stopped with exit code ${code} in ${Date.now() - stopAt} ms\n`);
rmSync(stateDir, { recursive: true, force: true });
const errors = all.filter((r) => !r.good).length;
process.exitCode = code === 0 && errors === 0 ? 0 : 1;
