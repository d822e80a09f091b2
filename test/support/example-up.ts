// `gatehouse up` on the example as a child process, the way a new user runs
// it, plus what a test needs to talk to it: the endpoints, the dev
// credentials, TLS agents that trust the dev CA (gateways, authorities) or
// the trust domain's CA with a workload certificate (services).
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { Agent } from 'undici';
import type { Endpoints } from '../../src/cli/up.ts';
import { issueWorkloadIdentity, trustBundlePath, type WorkloadIdentity } from '../../src/pki/index.ts';
import { keepLogs } from './suite-logs.ts';

const root = path.join(import.meta.dirname, '..', '..');
const main = path.join(root, 'src/cli/main.ts');

export interface DevCredentials {
  zones: Record<
    string,
    {
      clients: { client_id: string; client_secret?: string; grant_types: string[]; redirect_uris?: string[]; scope: string; tls_client_auth_san_uri?: string }[];
      users: { username: string; password: string; totp_secret: string }[];
    }
  >;
}

export interface RunningExample {
  stateDir: string;
  endpoints: Endpoints;
  credentials: DevCredentials;
  /** Everything `gatehouse up` printed so far. */
  output(): string;
  /** An agent trusting the dev CA (gateways, authorities). */
  edge: Agent;
  /**
   * The same, presenting a workload certificate for `spiffeId` (issued from the
   * CA in the state dir): what a locked ingress (the private gateway) admits
   * when the topology lets that workload call the gateway.
   */
  edgeAs(spiffeId: string): Promise<Agent>;
  /** Stops with SIGINT; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** The same example seen from another loopback address (`sharedExample`). */
  from(address: string): ExamplePart;
}

/** A part's view of a shared example: its agents call from the part's own address; the run's owner stops it. */
export type ExamplePart = Omit<RunningExample, 'stop' | 'from'>;

let shared: { run: Promise<RunningExample>; args: string[] } | undefined;
const sharedLeftovers: string[] = [];

/**
 * One `gatehouse up` of the example for every part a test file imports
 * (test/example/*.ts): twenty processes are the suite's costliest set-up, so
 * the parts that only use the example share one run. The first call starts
 * it with `args` (every part of a file passes the same); after the file's
 * last test it stops on SIGINT, and must exit 0.
 *
 * Each part calls the gateways and authorities from a loopback address of its
 * own: a gateway slows down, then blocks, a source whose credentials keep
 * failing, and the catalog allows 120 requests a minute per address, so the
 * refusals one part provokes on purpose never reach another.
 */
export async function sharedExample(address: string, args: string[] = []): Promise<ExamplePart> {
  if (shared === undefined) {
    const run = upExample(120_000, args);
    shared = { run, args };
    after(async () => {
      assert.equal(await (await run).stop(), 0, 'gatehouse up stops cleanly on SIGINT');
      for (const dir of sharedLeftovers) rmSync(dir, { recursive: true, force: true });
    });
  }
  assert.deepEqual(args, shared.args, 'every part of a shared example run passes the same arguments');
  return (await shared.run).from(address);
}

/**
 * The topology file of the operated example: a copy of the example whose
 * monitor names a console sign-in zone (public, alice its operator). The
 * parts that edit the file while it runs, or use the console, share it.
 */
export function operatedExample(): string {
  if (operated === undefined) {
    const dir = mkdtempSync(path.join(tmpdir(), 'gh-operated-'));
    sharedLeftovers.push(dir);
    operated = copyExample(dir);
    appendFileSync(operated, '\nmonitor:\n  console: { zone: public, operators: [alice] }\n');
  }
  return operated;
}
let operated: string | undefined;

/** `args`: more flags for `gatehouse up` (e.g. `--config` of a copy of the example). */
export async function upExample(timeoutMs = 90_000, args: string[] = []): Promise<RunningExample> {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'gh-example-'));
  const child: ChildProcess = spawn(process.execPath, [main, 'up', '--ephemeral-ports', '--state-dir', stateDir, ...args], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      // never leave it running: its components follow it (they watch their IPC channel)
      child.kill('SIGKILL');
      rmSync(stateDir, { recursive: true, force: true });
      reject(new Error(`gatehouse up not ready after ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const on = (d: Buffer) => {
      output += d;
      if (/gatehouse: ready/.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`gatehouse up exited with ${code} before it was ready:\n${output}`));
    });
  });
  const endpoints = JSON.parse(readFileSync(path.join(stateDir, 'endpoints.json'), 'utf8')) as Endpoints;
  const credentials = JSON.parse(readFileSync(path.join(stateDir, 'dev-credentials.json'), 'utf8')) as DevCredentials;
  const ca = readFileSync(endpoints.caBundle, 'utf8');
  const agents: Agent[] = [];
  const seenFrom = (localAddress?: string): ExamplePart => {
    const edge = new Agent({ connect: { ca }, ...(localAddress ? { localAddress } : {}) });
    agents.push(edge);
    return {
      stateDir,
      endpoints,
      credentials,
      output: () => output,
      edge,
      async edgeAs(spiffeId) {
        const id = await certificateFor(stateDir, spiffeId);
        const agent = new Agent({ connect: { ca, cert: id.certPem, key: id.keyPem }, ...(localAddress ? { localAddress } : {}) });
        agents.push(agent);
        return agent;
      },
    };
  };
  return {
    ...seenFrom(),
    from: seenFrom,
    async stop() {
      for (const a of agents) await a.close();
      const code = await new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (c) => resolve(c));
        child.kill('SIGINT');
      });
      keepLogs(stateDir, 'example');
      rmSync(stateDir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A gatehouse verb against the running example's state (`--config` the example's, `--state-dir` its own); the JSON it printed. */
export function exampleCli(stateDir: string, args: string[]): Record<string, any> {
  const r = spawnSync(process.execPath, [main, ...args, '--config', 'examples/shop/gatehouse.yaml', '--state-dir', stateDir], { cwd: root, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('}') + 1));
}

/**
 * An agent for calling a service directly: trusts only the trust domain's CA,
 * requires the server to be exactly `expectedSpiffeId`, and presents
 * `identity` (a workload certificate) when given.
 */
export function meshAgent(stateDir: string, expectedSpiffeId: string, identity?: WorkloadIdentity): Agent {
  return new Agent({
    connect: {
      ca: readFileSync(trustBundlePath(stateDir), 'utf8'),
      ...(identity ? { cert: identity.certPem, key: identity.keyPem } : {}),
      checkServerIdentity: (_host: string, cert: PeerCertificate) => {
        const uri = /URI:([^,\s]+)/.exec(new X509Certificate(cert.raw).subjectAltName ?? '')?.[1];
        return uri === expectedSpiffeId ? undefined : new Error(`server is ${uri}, expected ${expectedSpiffeId}`);
      },
    },
    pipelining: 0,
  });
}

/** A certificate for `spiffeId` straight from the CA in the state dir (what `gatehouse ca issue` does). */
export function certificateFor(stateDir: string, spiffeId: string): Promise<WorkloadIdentity> {
  return issueWorkloadIdentity(stateDir, spiffeId, { ttlSeconds: 600 });
}

/**
 * A copy of the example topology in `dir` (the services and contracts stay
 * where they are: paths become absolute), for a test that edits it.
 */
export function copyExample(dir: string): string {
  const example = path.join(root, 'examples', 'shop');
  const yaml = readFileSync(path.join(example, 'gatehouse.yaml'), 'utf8')
    .replaceAll('run: services/', `run: ${example}/services/`)
    .replaceAll('openapi: openapi/', `openapi: ${example}/openapi/`);
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml);
  return file;
}

/**
 * An agent for the example's private gateway, whose ingress is locked: it
 * trusts the dev CA and presents a certificate of the BFF (the one workload
 * whose egress names gateway:private), issued from the CA in the state dir.
 */
export async function privateGatewayAgent(stateDir: string, caBundle: string): Promise<Agent> {
  const bff = await certificateFor(stateDir, 'spiffe://shop.local/zone/public/svc/bff');
  return new Agent({ connect: { ca: readFileSync(caBundle, 'utf8'), cert: bff.certPem, key: bff.keyPem } });
}
