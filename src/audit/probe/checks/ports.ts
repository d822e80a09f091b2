// Ports the deployment opens but does not declare.
//
// On a loopback deployment (every declared host is 127.0.0.0/8 or ::1) the
// host is usually shared with other programs, so the probe sends them nothing:
// it reads the kernel's table of listening sockets (/proc/net/tcp, tcp6) and
// which processes own them, and reports a listening port owned by a process
// that also owns a declared port. On other hosts: a bounded TCP connect scan
// (no payload) of the ports either side of each declared port and a few
// common service ports; an open undeclared port is a finding.
import net from 'node:net';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { result, pass, fail, skip, error, type ProbeContext } from '../context.ts';
import type { CheckResult } from '../types.ts';

const COMMON = [22, 80, 443, 2379, 3000, 5432, 6379, 8000, 8080, 8443, 9090, 9443];
const MOST_PORTS_PER_HOST = 600;
const PARALLEL = 16;
const MOST_PROCESSES = 5_000;

function declaredPorts(ctx: ProbeContext): Map<string, Set<number>> {
  const p = ctx.plan;
  const urls = [...p.zones.flatMap((z) => [z.gateway, z.authority]), ...p.services.map((s) => s.url), ...p.declared.map((d) => d.url)].filter((u): u is string => !!u);
  const byHost = new Map<string, Set<number>>();
  for (const u of urls) {
    const url = new URL(u);
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (!byHost.has(host)) byHost.set(host, new Set());
    byHost.get(host)!.add(Number(url.port || (url.protocol === 'https:' ? 443 : 80)));
  }
  return byHost;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || (net.isIPv4(host) && host.startsWith('127.'));

/** Listening TCP sockets on loopback or any address: port → socket inodes. */
export function listeningSockets(read = (f: string) => readFileSync(f, 'utf8')): Map<number, Set<string>> {
  const out = new Map<number, Set<string>>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = read(file);
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A') continue; // 0A: LISTEN
      const [addr, portHex] = f[1].split(':');
      const reachable =
        /^0+$/.test(addr) || // 0.0.0.0 or ::
        (addr.length === 8 && addr.endsWith('7F')) || // 127.x.x.x, little-endian
        addr === '00000000000000000000000001000000' || // ::1
        /^0000000000000000FFFF00000[0-9A-F]{6}7F$/i.test(addr); // ::ffff:127.x
      if (!reachable) continue;
      const port = parseInt(portHex, 16);
      if (!out.has(port)) out.set(port, new Set());
      out.get(port)!.add(f[9]);
    }
  }
  return out;
}

/** socket inode → owning pid, for the processes this user may look into. */
function socketOwners(): Map<string, number> {
  const owners = new Map<string, number>();
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).slice(0, MOST_PROCESSES);
  } catch {
    return owners;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) owners.set(m[1], Number(pid));
      } catch {
        // the fd closed meanwhile
      }
    }
  }
  return owners;
}

function loopbackCheck(host: string, declared: Set<number>): CheckResult {
  const title = `undeclared listening ports of this deployment's processes on ${host} (from the kernel's socket table: nothing is sent)`;
  const expected = "the deployment's processes listen only on declared ports";
  const listening = listeningSockets();
  if (listening.size === 0) return result('ports.undeclared', title, 'medium', host, expected, skip('no /proc/net/tcp to read (not Linux?)'));
  const owners = socketOwners();
  const pids = new Set<number>();
  for (const p of declared) for (const inode of listening.get(p) ?? []) if (owners.has(inode)) pids.add(owners.get(inode)!);
  if (pids.size === 0) return result('ports.undeclared', title, 'medium', host, expected, skip('the declared ports belong to processes this user cannot see'));
  const stray: string[] = [];
  for (const [port, inodes] of listening) {
    if (declared.has(port)) continue;
    const pid = [...inodes].map((i) => owners.get(i)).find((o) => o !== undefined && pids.has(o));
    if (pid !== undefined) stray.push(`${port} (pid ${pid})`);
  }
  return result(
    'ports.undeclared',
    title,
    'medium',
    host,
    expected,
    stray.length > 0 ? fail(`undeclared: ${stray.join(', ')}`) : pass(`${pids.size} process(es) own the ${declared.size} declared ports and listen on no other`),
  );
}

function open(ctx: ProbeContext, host: string, port: number): Promise<boolean> {
  ctx.take(host);
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), Math.min(1_000, ctx.limits.timeoutMs));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function connectScan(ctx: ProbeContext, host: string, declared: Set<number>): Promise<CheckResult> {
  const candidates = new Set<number>(COMMON);
  for (const p of declared) for (let d = -ctx.limits.scanWindow; d <= ctx.limits.scanWindow; d++) if (p + d > 0 && p + d < 65536) candidates.add(p + d);
  for (const p of declared) candidates.delete(p);
  const ports = [...candidates].sort((a, b) => a - b).slice(0, MOST_PORTS_PER_HOST);
  const found: number[] = [];
  let stopped = '';
  for (let i = 0; i < ports.length; i += PARALLEL) {
    try {
      const batch = ports.slice(i, i + PARALLEL);
      const flags = await Promise.all(batch.map((p) => open(ctx, host, p)));
      batch.forEach((p, j) => flags[j] && found.push(p));
    } catch (e) {
      stopped = (e as Error).message;
      break;
    }
  }
  return result(
    'ports.undeclared',
    `undeclared open ports on ${host} (${ports.length} tried by TCP connect: ±${ctx.limits.scanWindow} around ${declared.size} declared, and common ports)`,
    'medium',
    host,
    'only the declared ports are open',
    found.length > 0 ? fail(`open and undeclared: ${found.join(', ')}`) : stopped ? error(`stopped: ${stopped}`) : pass(`none open${stopped}`),
  );
}

export async function portChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  if (ctx.plan.partial)
    return [result('ports.undeclared', 'undeclared open ports', 'medium', 'plan', 'only the declared ports are open', skip('one URL was given (--target): what else is declared is unknown; give --endpoints'))];
  for (const [host, declared] of declaredPorts(ctx)) out.push(isLoopback(host) ? loopbackCheck(host, declared) : await connectScan(ctx, host, declared));
  return out;
}
