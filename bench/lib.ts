// Shared bench helpers: tool checks, pinned processes, wrk runs and tables.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { writeFileSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Install Debian packages for missing commands (the bench machines run as root). */
export function ensureTools(tools: Record<string, string>): Set<string> {
  const missing = Object.entries(tools).filter(([cmd]) => !have(cmd));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
    process.stderr.write(`bench: installing ${pkgs.join(' ')} from Debian\n`);
    spawnSync('sh', ['-c', `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${pkgs.join(' ')}`], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  return new Set(Object.keys(tools).filter(have));
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.once('error', reject);
  });
}

export interface Proc {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Start a command (optionally pinned to CPUs) and wait until `ready` matches its output, or `port` accepts. */
export async function startProc(
  cmd: string[],
  o: { cpus?: string; env?: NodeJS.ProcessEnv; ready?: RegExp; port?: number; timeoutMs?: number; discardStdout?: boolean },
): Promise<Proc> {
  const argv = o.cpus !== undefined ? ['taskset', '-c', o.cpus, ...cmd] : cmd;
  // discardStdout: access logs go to /dev/null rather than into a pipe nobody drains while wrk runs
  const child = spawn(argv[0], argv.slice(1), {
    env: { ...process.env, ...o.env },
    stdio: ['ignore', o.discardStdout ? 'ignore' : 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => (out = (out + d).slice(-4000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-4000)));
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${cmd.join(' ')} exited: ${out}`);
    if (o.ready && o.ready.test(out)) break;
    if (o.port !== undefined && (await accepts(o.port))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (Date.now() >= deadline) {
    child.kill('SIGKILL');
    throw new Error(`${cmd.join(' ')} not ready: ${out}`);
  }
  return {
    child,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

async function accepts(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** CPU (user + system) the measured process tree spent per request, µs; NaN when no pid was given. */
  cpuUs: number;
}

const TICK_US = 1e6 / 100; // USER_HZ is 100 on Linux

/** CPU ticks (user + system) of `pid` and every process below it, from /proc. */
export function treeCpuTicks(pid: number): number {
  const parents = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // the command name is in parentheses and may hold spaces: fields start after the last ')'
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    parents.set(Number(name), Number(f[1]));
    ticks.set(Number(name), Number(f[11]) + Number(f[12]));
  }
  let total = 0;
  for (const [p] of ticks) {
    for (let q: number | undefined = p; q !== undefined && q > 0; q = parents.get(q))
      if (q === pid) {
        total += ticks.get(p)!;
        break;
      }
  }
  return total;
}

function ms(value: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

export function wrk(
  url: string,
  o: { seconds: number; connections: number; threads?: number; cpus?: string; headers?: string[]; pid?: number },
): WrkResult {
  const cpuBefore = o.pid === undefined ? NaN : treeCpuTicks(o.pid);
  const args = ['-t', String(o.threads ?? 1), '-c', String(o.connections), '-d', `${o.seconds}s`, '--latency'];
  for (const h of o.headers ?? []) args.push('-H', h);
  args.push(url);
  const argv = o.cpus !== undefined ? ['taskset', '-c', o.cpus, 'wrk', ...args] : ['wrk', ...args];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: (o.seconds + 30) * 1000 });
  if (process.env.BENCH_DEBUG) process.stderr.write(r.stdout + r.stderr);
  const text = r.stdout ?? '';
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN);
  const p50 = ms(/^\s+50%\s+(\S+)/m.exec(text)?.[1] ?? '');
  const p99 = ms(/^\s+99%\s+(\S+)/m.exec(text)?.[1] ?? '');
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = non2xx + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? NaN);
  const cpuUs = o.pid === undefined ? NaN : ((treeCpuTicks(o.pid) - cpuBefore) * TICK_US) / requests;
  return { rps, p50, p99, errors, cpuUs };
}

/** a/b within each round, then the median: a machine whose speed drifts between rounds moves both targets of a round alike. */
export function roundRatio(a: readonly WrkResult[] | undefined, b: readonly WrkResult[] | undefined): number {
  if (!a || !b || a.length !== b.length || a.length === 0) return NaN;
  return median(a.map((r, i) => r.rps / b[i].rps));
}

export function median(values: number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => String(r[i]).length)));
  const line = (r: (string | number)[]) => '| ' + r.map((c, i) => String(c).padEnd(widths[i])).join(' | ') + ' |';
  return [line(cells[0]), '|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|', ...cells.slice(1).map(line)].join('\n');
}

function fmt(n: number): string {
  if (Number.isNaN(n)) return 'n/a';
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(2);
}

function nginxConf(dir: string, port: number, workers: number, body: string): string {
  return `worker_processes ${workers};
daemon off;
pid ${dir}/nginx-${port}.pid;
error_log ${dir}/nginx-${port}.err warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path ${dir}/nginx-body; proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fcgi; uwsgi_temp_path ${dir}/nginx-uwsgi; scgi_temp_path ${dir}/nginx-scgi;
  ${body}
}
`;
}

/** nginx with `body` inside its http block, in `dir`, optionally pinned (when `pin`). */
export async function startNginx(dir: string, pin: boolean, port: number, workers: number, body: string, cpus?: string): Promise<Proc> {
  const file = path.join(dir, `nginx-${port}.conf`);
  writeFileSync(file, nginxConf(dir, port, workers, body));
  return startProc(['nginx', '-e', `${dir}/nginx-${port}.err`, '-c', file, '-p', dir], { cpus: pin ? cpus : undefined, port });
}

/** The fixed-answer upstream every gateway bench proxies to. */
export const UPSTREAM_BODY = JSON.stringify({ ok: true, items: [1, 2, 3], note: 'gatehouse bench upstream' });

export function upstreamServerBlock(port: number): string {
  return `server { listen 127.0.0.1:${port}; location / { default_type application/json; return 200 '${UPSTREAM_BODY}'; } }`;
}

/** The options every gateway bench takes: --seconds, --runs, --connections, --only a,b. */
export function benchArgs(): { seconds: number; runs: number; connections: number; only: string[] | undefined } {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      connections: { type: 'string', default: '64' },
      only: { type: 'string' },
    },
  });
  return {
    seconds: Number(values.seconds),
    runs: Number(values.runs),
    connections: Number(values.connections),
    only: values.only?.split(','),
  };
}

/** One table row from a target's wrk runs: medians, and errors summed (a run with error answers measures how fast errors are made: its req/s is not counted). */
export function summarise(name: string, note: string, results: WrkResult[]) {
  const row = {
    name,
    note,
    rps: median(results.map((r) => r.rps)),
    p50: median(results.map((r) => r.p50)),
    p99: median(results.map((r) => r.p99)),
    cpuUs: median(results.map((r) => r.cpuUs)),
    errors: results.reduce((a, r) => a + r.errors, 0),
  };
  if (row.errors > 0) Object.assign(row, { rps: NaN, note: `${row.note} (errors: not counted)` });
  return row;
}

/**
 * The topology every gateway bench runs: one zone `bench` whose gateway listens on
 * `port` and proxies `/` (prefix, any method) to the upstream as the service `up`.
 * `zone` adds lines to the zone (authentication), `route` to the route (auth, policies).
 */
export function benchTopology(port: number, upstream: string, o: { accessLog: boolean; plaintext?: boolean; zone?: string; route?: string }): string {
  return `version: 1
trustDomain: bench.local
zones:
  bench:
    gateway:
      listen: 127.0.0.1:${port}${o.plaintext ? '\n      plaintext: true' : ''}
      admin: { listen: 127.0.0.1:0 }
      accessLog: { enabled: ${o.accessLog} }
      limits: { maxConnections: 100000, keepAliveTimeoutMs: 60000 }${o.zone ?? ''}
    routes:
      - path: /
        match: prefix
        methods: '*'
        service: up
        ${o.route ?? 'auth: anonymous'}
services:
  up: { zone: bench, upstream: '${upstream}', connections: 128 }
`;
}

/** Start `gatehouse gateway` (one worker) on a bench topology, pinned to `cpus`. */
export function startBenchGateway(root: string, dir: string, port: number, yaml: string, o: { cpus?: string; nodeArgs?: string[] } = {}): Promise<Proc> {
  const file = path.join(dir, `gh-${port}.yaml`);
  writeFileSync(file, yaml);
  return startProc(
    [process.execPath, ...(o.nodeArgs ?? []), path.join(root, 'src/cli/main.ts'), 'gateway', '--config', file, '--zone', 'bench', '--state-dir', dir, '--workers', '1'],
    { cpus: o.cpus, ready: /ready: gateway/, env: { GATEHOUSE_LOG_LEVEL: 'warn' }, discardStdout: true },
  );
}
