// A lab of machines for firewall tests: one network namespace per host, each
// with one veth into a bridge that lives in a switch namespace of its own (the
// test machine's own network is never touched), an agent per host that
// listens and connects on command (netns-agent.ts). Names are unique per run;
// dispose() removes every namespace it made, whatever happened before.
import { execFile, spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const AGENT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'netns-agent.ts');

/** Why the lab cannot run here, or undefined when it can (root, `ip`, `nft`, namespaces allowed). */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'network namespaces and nft need root';
  for (const [tool, args] of [['ip', ['-V']], ['nft', ['--version']]] as const) {
    try {
      await run(tool, [...args]);
    } catch {
      return `${tool} is not installed (apt-get install -y ${tool === 'ip' ? 'iproute2' : 'nftables'})`;
    }
  }
  const probe = `ghprobe-${randomBytes(4).toString('hex')}`;
  try {
    await run('ip', ['netns', 'add', probe]);
  } catch (error) {
    return `cannot create a network namespace: ${(error as { stderr?: string }).stderr?.trim() || String(error)}`;
  }
  await run('ip', ['netns', 'del', probe]).catch(() => {});
  return undefined;
}

export interface LabHost {
  name: string;
  address: string;
  /** The namespace's name (for `ip netns exec`). */
  netns: string;
}

export interface ConnectResult {
  ok: boolean;
  peer?: string;
  error?: string;
}

export interface Lab {
  hosts: Map<string, LabHost>;
  /** Runs a command inside a host's namespace. */
  exec(host: string, file: string, args: string[], input?: string): Promise<{ stdout: string; stderr: string }>;
  listen(host: string, port: number): Promise<void>;
  connect(from: string, address: string, port: number, timeoutMs: number): Promise<ConnectResult>;
  dispose(): Promise<void>;
}

interface Agent {
  child: ChildProcessWithoutNullStreams;
  pending: Map<number, (result: Record<string, unknown>) => void>;
  next: number;
}

/** Builds the lab: hosts on one /24 (each `address` is in it), bridged. */
export async function createLab(hosts: { name: string; address: string }[], prefixLength = 24): Promise<Lab> {
  const id = randomBytes(3).toString('hex');
  const swns = `gh-${id}-sw`;
  const made: string[] = [];
  const agents = new Map<string, Agent>();
  const lab: Lab = {
    hosts: new Map(hosts.map((h) => [h.name, { ...h, netns: `gh-${id}-${h.name}` }])),
    async exec(host, file, args, input) {
      const ns = lab.hosts.get(host)!.netns;
      return new Promise((resolve, reject) => {
        const child = execFile('ip', ['netns', 'exec', ns, file, ...args], (error, stdout, stderr) =>
          error ? reject(Object.assign(error, { stdout, stderr })) : resolve({ stdout, stderr }),
        );
        // a command that reads no input (nft -f FILE, nft list) may have exited before its stdin is closed:
        // that EPIPE is no error of the command, whose exit status and stderr say how it went
        child.stdin?.on('error', () => {});
        child.stdin?.end(input ?? '');
      });
    },
    async listen(host, port) {
      const result = await ask(agents.get(host)!, { listen: { address: '0.0.0.0', port } });
      if (!result.ok) throw new Error(`${host} cannot listen on ${port}: ${String(result.error)}`);
    },
    async connect(from, address, port, timeoutMs) {
      return (await ask(agents.get(from)!, { connect: { host: address, port, timeoutMs } })) as unknown as ConnectResult;
    },
    async dispose() {
      for (const agent of agents.values()) {
        agent.child.stdin.end();
        agent.child.kill('SIGKILL');
      }
      for (const ns of [...made].reverse()) await run('ip', ['netns', 'del', ns]).catch(() => {});
      made.length = 0;
    },
  };
  // a run cut short (test timeout, Ctrl-C) still leaves no namespace behind
  const onExit = () => {
    for (const ns of made) spawnSync('ip', ['netns', 'del', ns]);
  };
  process.once('exit', onExit);
  const dispose = lab.dispose;
  lab.dispose = async () => {
    await dispose();
    process.removeListener('exit', onExit);
  };
  try {
    await run('ip', ['netns', 'add', swns]);
    made.push(swns);
    await run('ip', ['-n', swns, 'link', 'add', 'br0', 'type', 'bridge']);
    await run('ip', ['-n', swns, 'link', 'set', 'br0', 'up']);
    let i = 0;
    for (const host of lab.hosts.values()) {
      await run('ip', ['netns', 'add', host.netns]);
      made.push(host.netns);
      const port = `p${i++}`;
      await run('ip', ['-n', swns, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.netns]);
      await run('ip', ['-n', swns, 'link', 'set', port, 'master', 'br0', 'up']);
      await run('ip', ['-n', host.netns, 'addr', 'add', `${host.address}/${prefixLength}`, 'dev', 'eth0']);
      await run('ip', ['-n', host.netns, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', host.netns, 'link', 'set', 'lo', 'up']);
      agents.set(host.name, await startAgent(host));
    }
    return lab;
  } catch (error) {
    await lab.dispose();
    throw error;
  }
}

async function startAgent(host: LabHost): Promise<Agent> {
  const child = spawn('ip', ['netns', 'exec', host.netns, process.execPath, AGENT, host.name], { stdio: ['pipe', 'pipe', 'pipe'] });
  const agent: Agent = { child, pending: new Map(), next: 1 };
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    agent.pending.set(0, () => resolve());
    child.once('exit', (code) => reject(new Error(`agent of ${host.name} exited (${code}): ${stderr}`)));
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as { id: number } & Record<string, unknown>;
    const resolve = agent.pending.get(message.id);
    agent.pending.delete(message.id);
    resolve?.(message);
  });
  await ready;
  return agent;
}

function ask(agent: Agent, command: Record<string, unknown>): Promise<Record<string, unknown>> {
  const id = agent.next++;
  return new Promise((resolve) => {
    agent.pending.set(id, resolve);
    agent.child.stdin.write(`${JSON.stringify({ id, ...command })}\n`);
  });
}
