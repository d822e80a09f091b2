// Zone authority throughput on one core (the authority process is pinned to
// CPU 0 with taskset; the load generator runs on the other CPUs), with SQLite
// and again with PostgreSQL:
//   - client-credentials grants per second (p50/p99), autocannon
//   - introspections per second, autocannon
//   - full sign-ins per second: authorize → login form → TOTP form → code
//     exchange with openid-client, a few at a time
// Then a CPU profile of the client-credentials run says where the time goes.
// Runnable alone: sh scripts/node.sh bench/authority.ts [--duration 8]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import { Agent, fetch as undiciFetch } from 'undici';
import pg from 'pg';
import { loadTopology } from '../src/topology/load.ts';
import { openZoneStores } from '../src/authority/index.ts';
import { Browser } from '../test/support/authority-browser.ts';

const root = path.resolve(import.meta.dirname, '..');
const durationArg = process.argv.indexOf('--duration');
const DURATION = durationArg > 0 ? Number(process.argv[durationArg + 1]) : 8;
const REDIRECT = 'http://127.0.0.1:8765/callback';
const pinned = spawnSync('sh', ['-c', 'command -v taskset'], { stdio: 'ignore' }).status === 0;

// autocannon ships no type declarations: the little used here, typed locally.
interface CannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}
type Cannon = (opts: Record<string, unknown>, cb: (error: Error | null, result: CannonResult) => void) => void;
const cannonModule = 'autocannon';
const autocannon = ((await import(cannonModule)) as { default: Cannon }).default;

interface Row {
  storage: string;
  what: string;
  perSec: number;
  p50: number;
  p99: number;
  errors: number;
}

interface Running {
  child: ChildProcess;
  url: string;
  creds: any;
  stop(): Promise<void>;
}

async function startAuthority(file: string, state: string, extraNodeArgs: string[] = []): Promise<Running> {
  const cmd = [path.join(root, 'scripts/node.sh'), ...extraNodeArgs, path.join(root, 'src/cli/main.ts'), 'authority', '--config', file, '--zone', 'bench', '--state-dir', state, '--dev'];
  const argv = pinned ? ['taskset', '-c', '0', 'sh', ...cmd] : ['sh', ...cmd];
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'warn' } });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-2000)));
  const ready = await new Promise<any>((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`authority exited ${code}: ${err}`)));
  });
  return {
    child,
    url: ready.endpoints.authority,
    creds: ready.devCredentials,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

function cannon(url: string, ca: string, body: string, headers: Record<string, string>): Promise<CannonResult> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url,
        method: 'POST',
        body,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        connections: 16,
        duration: DURATION,
        tlsOptions: { ca },
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
}

function row(storage: string, what: string, r: CannonResult): Row {
  return {
    storage,
    what,
    perSec: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.non2xx + r.errors,
  };
}

async function logins(storage: string, file: string, state: string, run: Running, ca: string): Promise<Row> {
  // a TOTP code works once per 30 s step per user: one fresh user per sign-in
  const stores = await openZoneStores(loadTopology(file), 'bench', state);
  const users: { username: string; password: string; totp_secret: string }[] = [];
  const wanted = DURATION * 25;
  const batch = 8;
  for (let i = 0; i < wanted; i += batch)
    users.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(batch, wanted - i) }, (_, j) =>
          stores.users.add({ username: `bench-${i + j}-${Date.now().toString(36)}` }).then((u) => ({ username: u.username, password: u.password, totp_secret: u.totp_secret! })),
        ),
      )),
    );
  await stores.storage.close();
  const agent = new Agent({ connect: { ca } });
  const f = ((i: any, init: any) => undiciFetch(i, { ...init, dispatcher: agent })) as any;
  const web = run.creds.clients.find((c: any) => c.grant_types.includes('authorization_code'));
  const config = await oidc.discovery(new URL(run.url), web.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(web.client_secret), { [oidc.customFetch]: f });
  const times: number[] = [];
  let errors = 0;
  const end = Date.now() + DURATION * 1000;
  const worker = async () => {
    while (Date.now() < end && users.length > 0) {
      const user = users.pop()!;
      const t0 = performance.now();
      try {
        const browser = new Browser(f);
        const verifier = oidc.randomPKCECodeVerifier();
        const state = oidc.randomState();
        const url = oidc.buildAuthorizationUrl(config, {
          redirect_uri: REDIRECT,
          scope: 'openid orders:read',
          code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
          code_challenge_method: 'S256',
          state,
        });
        const page = await browser.follow(url.toString(), run.url);
        const otp = await browser.submit(page, '/login', { username: user.username, password: user.password }, run.url);
        const done = await browser.submit(otp, '/otp', { otp: await generate({ secret: user.totp_secret }) }, run.url);
        await oidc.authorizationCodeGrant(config, new URL(done.url), { pkceCodeVerifier: verifier, expectedState: state });
        times.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 4 }, worker));
  const seconds = (performance.now() - t0) / 1000;
  await agent.close();
  times.sort((a, b) => a - b);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] ?? NaN;
  return { storage, what: 'login + TOTP + code exchange', perSec: times.length / seconds, p50: pct(50), p99: pct(99), errors };
}

function profileSummary(dir: string): string[] {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return ['(no profile written)'];
  const prof = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
    nodes: { id: number; callFrame: { url: string; functionName: string }; hitCount: number }[];
    samples: number[];
  };
  const byBucket = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const url = n.callFrame.url;
    let bucket: string;
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
    if (m) bucket = m[1];
    else if (url.includes('/src/authority/')) bucket = 'gatehouse authority';
    else if (url.startsWith('node:')) bucket = `node: ${url.slice(5).split('/').slice(0, 2).join('/')}`;
    else if (n.callFrame.functionName === '(garbage collector)') bucket = 'garbage collector';
    else if (n.callFrame.functionName === '(idle)' || n.callFrame.functionName === '(program)') bucket = n.callFrame.functionName;
    else bucket = url ? path.basename(url) : `native ${n.callFrame.functionName || '(anonymous)'}`;
    byBucket.set(bucket, (byBucket.get(bucket) ?? 0) + n.hitCount);
    total += n.hitCount;
  }
  const busy = total - (byBucket.get('(idle)') ?? 0);
  return [...byBucket]
    .filter(([k]) => k !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 10)
    .map(([k, v]) => `  ${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`);
}

async function benchStorage(storage: 'sqlite' | 'postgres', url?: string): Promise<{ rows: Row[]; profile?: string[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-bench-authority-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `version: 1\ntrustDomain: bench.local\nzones:\n  bench:\n    authority:\n      scopes: [orders:read, orders:write, catalog:read]\n${url ? `      storage: ${JSON.stringify(url)}\n` : ''}`,
  );
  const state = path.join(dir, 'state');
  const rows: Row[] = [];
  let profile: string[] | undefined;
  try {
    const profDir = path.join(dir, 'prof');
    let run = await startAuthority(file, state, storage === 'sqlite' ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []);
    const ca = readFileSync(path.join(state, 'tls', 'dev-ca.pem'), 'utf8');
    const svc = run.creds.clients.find((c: any) => c.grant_types.includes('client_credentials'));
    const auth = 'Basic ' + Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64');
    rows.push(row(storage, 'client_credentials grant', await cannon(`${run.url}/token`, ca, 'grant_type=client_credentials&scope=orders%3Aread', { authorization: auth })));
    await run.stop();
    if (storage === 'sqlite') profile = profileSummary(profDir);

    run = await startAuthority(file, state);
    const agent = new Agent({ connect: { ca } });
    const tokenRes = await undiciFetch(`${run.url}/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&scope=orders%3Aread',
    });
    const token = ((await tokenRes.json()) as { access_token: string }).access_token;
    await agent.close();
    rows.push(row(storage, 'introspection (JWT)', await cannon(`${run.url}/token/introspection`, ca, `token=${token}`, { authorization: auth })));
    rows.push(await logins(storage, file, state, run, ca));
    await run.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { rows, profile };
}

async function postgresUrl(): Promise<{ url: string; drop(): Promise<void> } | undefined> {
  const base = process.env.GATEHOUSE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `gh_bench_${process.pid}`;
  const c = new pg.Client({ connectionString: base, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.end();
  } catch (e) {
    process.stderr.write(`bench: PostgreSQL not reachable (${(e as Error).message}); skipping it\n`);
    return undefined;
  }
  return {
    url: `${base}?schema=${schema}`,
    async drop() {
      const d = new pg.Client({ connectionString: base });
      await d.connect();
      await d.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await d.end();
    },
  };
}

const all: Row[] = [];
const sqlite = await benchStorage('sqlite');
all.push(...sqlite.rows);
const pgInfo = await postgresUrl();
if (pgInfo) {
  try {
    all.push(...(await benchStorage('postgres', pgInfo.url)).rows);
  } finally {
    await pgInfo.drop();
  }
}

const cpus = availableParallelism();
process.stdout.write(
  `\nzone authority, ${pinned ? 'authority pinned to 1 core (taskset -c 0)' : 'NOT pinned (no taskset)'}, ${cpus} CPUs, ${DURATION} s per run, 16 connections (sign-ins: 4 at a time)\n\n`,
);
const header = ['storage', 'operation', 'per second', 'p50 ms', 'p99 ms', 'errors'];
const lines = all.map((r) => [r.storage, r.what, r.perSec.toFixed(0), r.p50.toFixed(1), r.p99.toFixed(1), String(r.errors)]);
const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
const fmt = (cells: string[]) => '| ' + cells.map((c, i) => (i >= 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ') + ' |';
process.stdout.write([fmt(header), '|' + widths.map((w, i) => (i >= 2 ? '-'.repeat(w + 1) + ':' : ':' + '-'.repeat(w + 1))).join('|') + '|', ...lines.map(fmt)].join('\n') + '\n');
process.stdout.write('\nanchors: Keycloak budgets 120 client-credentials grants/s per vCPU; Hydra 513/s on 2 CPUs; target >= 1,000/s on one core with SQLite\n');
if (sqlite.profile) process.stdout.write(`\nwhere the time goes (client_credentials, SQLite, share of busy CPU by module):\n${sqlite.profile.join('\n')}\n`);
