// `gatehouse up --ephemeral-ports` as a child process for the storage fault
// tests (test/faults-storage.test.ts): started on a given topology and state
// dir, with up's own admin listener (GET /readyz lists every component with
// its pid), the dev credentials, and an agent trusting the dev CA.
import { keepLogs } from './suite-logs.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import type { Endpoints } from '../../src/cli/up.ts';
import { privateGatewayAgent, type DevCredentials } from './example-up.ts';

const root = path.join(import.meta.dirname, '..', '..');
export const MAIN = path.join(root, 'src/cli/main.ts');
export const ROOT = root;

export interface Component {
  name: string;
  state: string;
  healthy: boolean;
  pid?: number;
  restarts: number;
  reason?: string;
}

export interface RunningUp {
  child: ChildProcess;
  stateDir: string;
  endpoints: Endpoints;
  credentials: DevCredentials;
  /** An agent trusting the dev CA (gateways, authorities). */
  edge: Agent;
  /** For the private gateway (locked ingress): presents the BFF's certificate. */
  privateEdge: Agent;
  output(): string;
  components(): Promise<Component[]>;
  component(name: string): Promise<Component | undefined>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export async function startUp(config: string, stateDir: string, timeoutMs = 60_000): Promise<RunningUp> {
  const child = spawn(process.execPath, [MAIN, 'up', '--ephemeral-ports', '--config', config, '--state-dir', stateDir], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`gatehouse up not ready after ${timeoutMs} ms:\n${output}`)), timeoutMs);
      const poll = setInterval(() => {
        if (/gatehouse: ready\n/.test(output)) {
          clearTimeout(timer);
          clearInterval(poll);
          resolve();
        }
      }, 50);
      void exited.then((code) => {
        clearTimeout(timer);
        clearInterval(poll);
        reject(new Error(`gatehouse up exited with ${code} before it was ready:\n${output}`));
      });
    });
  } catch (error) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    throw error;
  }
  const endpoints = JSON.parse(readFileSync(path.join(stateDir, 'endpoints.json'), 'utf8')) as Endpoints;
  const credentials = JSON.parse(readFileSync(path.join(stateDir, 'dev-credentials.json'), 'utf8')) as DevCredentials;
  const edge = new Agent({ connect: { ca: readFileSync(endpoints.caBundle, 'utf8') } });
  const privateEdge = await privateGatewayAgent(stateDir, endpoints.caBundle);
  const components = async () => {
    const r = await undiciFetch(endpoints.up!.admin + '/readyz');
    return ((await r.json()) as { components: Component[] }).components;
  };
  return {
    child,
    stateDir,
    endpoints,
    credentials,
    edge,
    privateEdge,
    output: () => output,
    components,
    component: async (name) => (await components()).find((c) => c.name === name),
    async stop(graceMs = 15_000) {
      await edge.close().catch(() => {});
      await privateEdge.close().catch(() => {});
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      keepLogs(stateDir, 'faults-storage');
      return code;
    },
  };
}

/** Polls `fn` every 100 ms until it returns something truthy; throws after `ms`. */
export async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
