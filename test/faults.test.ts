// Faults under load against `gatehouse up` on the example, as a user runs it:
// kill -9 of every component in turn while light traffic runs (the rest keeps
// answering, each is back, nothing it stored is lost), SIGTERM under load
// (in-flight requests finish, exit 0, no orphan), SIGKILL of `up` (no child
// survives), and a component that cannot start (reported once, not retried in
// a loop). Prints the fault table (t.diagnostic).
import { keepLogs } from './support/suite-logs.ts';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Agent, request, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import type { Endpoints } from '../src/cli/up.ts';
import type { DevCredentials } from './support/example-up.ts';
import { certificateFor, privateGatewayAgent } from './support/example-up.ts';
import { signIn, codeTokens } from './support/authority-flows.ts';
import type { Harness, TestFetch } from './support/authority-harness.ts';
import { gatewaySpiffeId, trustBundlePath } from '../src/pki/index.ts';
import { demoServiceToken, dpopHeaders, dpopKey, type DpopKey } from './support/dpop.ts';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');
const exampleDir = path.join(root, 'examples/shop');

interface Component {
  name: string;
  state: string;
  healthy: boolean;
  pid?: number;
  restarts: number;
  reason?: string;
}

interface Up {
  child: ChildProcess;
  stateDir: string;
  endpoints: Endpoints;
  credentials: DevCredentials;
  edge: Agent;
  /** For the private gateway (locked ingress): presents the BFF's certificate. */
  privateEdge: Agent;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  readyz(): Promise<{ status: number; body: { ready: boolean; unhealthy: Component[]; components: Component[] } }>;
  component(name: string): Promise<Component>;
}

const running: Up[] = [];
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups) await c().catch(() => {});
  for (const u of running) if (u.child.exitCode === null && u.child.signalCode === null) u.child.kill('SIGKILL');
  for (const u of running) await Promise.all([u.edge.close(), u.privateEdge.close()]).catch(() => {});
});

/** Gone: no such process, or a zombie nobody has reaped yet (it runs nothing). */
/** The process's start time (clock ticks since boot), or undefined when it is gone. */
function startedAt(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[0] === 'Z' ? undefined : fields[19];
  } catch {
    return undefined;
  }
}

const cmdlineOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').slice(0, 300);
  } catch {
    return 'gone';
  }
};

/** Gone (or a zombie), or the pid now belongs to another process (pids are reused on a busy machine). */
function gone(pid: number, started?: string): boolean {
  const now = startedAt(pid);
  return now === undefined || (started !== undefined && now !== started);
}

/**
 * The running components' pids, each with its start time. A failed component
 * keeps the pid it last had, which another process may have taken since.
 */
const livePids = (components: { pid?: number; state: string }[]) =>
  components
    .filter((c) => c.state !== 'failed' && c.state !== 'backoff')
    .flatMap((c) => (c.pid === undefined ? [] : [{ pid: c.pid, started: startedAt(c.pid) }]))
    .filter((p) => p.started !== undefined);

async function startUp(args: string[] = [], marker = /gatehouse: ready\n/): Promise<Up> {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'gh-faults-'));
  const child = spawn(process.execPath, [main, 'up', '--ephemeral-ports', '--state-dir', stateDir, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL'); // its components follow it (they watch their IPC channel)
      reject(new Error(`not ready after 90 s:\n${output}`));
    }, 90_000);
    const poll = setInterval(() => {
      if (marker.test(output)) {
        clearTimeout(timer);
        clearInterval(poll);
        resolve();
      }
    }, 50);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new Error(`up exited with ${code} before it was ready:\n${output}`));
    });
  });
  const endpoints = JSON.parse(readFileSync(path.join(stateDir, 'endpoints.json'), 'utf8')) as Endpoints;
  // a topology without authorities has no dev credentials; one without the private zone, no private gateway
  const credentialsFile = path.join(stateDir, 'dev-credentials.json');
  const credentials = (existsSync(credentialsFile) ? JSON.parse(readFileSync(credentialsFile, 'utf8')) : { zones: {} }) as DevCredentials;
  const edge = new Agent({ connect: { ca: readFileSync(endpoints.caBundle, 'utf8') }, connections: 16 });
  const privateEdge = endpoints.zones.private ? await privateGatewayAgent(stateDir, endpoints.caBundle) : new Agent();
  const readyz = async () => {
    const r = await undiciFetch(endpoints.up!.admin + '/readyz');
    return { status: r.status, body: (await r.json()) as { ready: boolean; unhealthy: Component[]; components: Component[] } };
  };
  const u: Up = {
    child,
    stateDir,
    endpoints,
    credentials,
    edge,
    privateEdge,
    output: () => output,
    exited,
    readyz,
    component: async (name) => (await readyz()).body.components.find((c) => c.name === name)!,
  };
  running.push(u);
  return u;
}

/** Processes that belong to a run: descendants of `pid` and anything whose command line names the state dir. */
function processesOf(pid: number, stateDir: string): { pid: number; cmd: string }[] {
  const parent = new Map<number, number>();
  const cmd = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      cmd.set(Number(d), readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' '));
    } catch {
      // gone meanwhile
    }
  }
  const found = new Set<number>();
  for (const [p, c] of cmd) if (c.includes(stateDir) && !c.includes('node --test')) found.add(p);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [p, pp] of parent) if (!found.has(p) && (pp === pid || found.has(pp))) (found.add(p), (grew = true));
  }
  found.delete(process.pid);
  return [...found].filter((p) => parent.has(p) && !readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z ')).map((p) => ({ pid: p, cmd: cmd.get(p) ?? '' }));
}

/** A client-credentials token of the zone's demo service; with `key`, DPoP-bound (the private zone takes sender-constrained tokens only). */
function clientToken(u: Up, zone: string, scope = 'orders:read', key?: DpopKey): Promise<{ status: number; token?: string }> {
  return demoServiceToken({ dispatcher: u.edge, authority: u.endpoints.zones[zone].authority!, clients: u.credentials.zones[zone].clients, scope, key });
}

interface Sample {
  route: string;
  start: number;
  end: number;
  status: number | string;
}

/**
 * Light mixed traffic: the anonymous catalog (slowly: it is rate-limited per
 * address), an authenticated public route, an authenticated private route and
 * a refused one (no token). Every answer is kept with its time.
 */
function load(u: Up, tokens: { public: string; private: string; privateKey: DpopKey }) {
  const samples: Sample[] = [];
  let on = true;
  const gw = u.endpoints.zones;
  // the refused traffic comes from another loopback address: the gateway slows down and then
  // blocks a source that keeps failing authentication (429), and must not take the good traffic with it
  const refusedFrom = new Agent({ connect: { ca: readFileSync(u.endpoints.caBundle, 'utf8') }, localAddress: '127.0.0.2' });
  const privateOrders = gw.private.gateway + '/api/orders';
  // headers per request: a DPoP proof is good for one request only
  const routes: { route: string; url: string; every: number; headers?: () => Promise<Record<string, string>>; ok: number[]; via?: Agent }[] = [
    { route: 'catalog (anonymous)', url: gw.public.gateway + '/api/catalog', every: 900, ok: [200] },
    { route: 'echo (jwt, public)', url: gw.public.gateway + '/api/echo/load', every: 120, headers: async () => ({ authorization: `Bearer ${tokens.public}` }), ok: [200] },
    { route: 'orders (jwt, private)', url: privateOrders, every: 120, headers: () => dpopHeaders(tokens.privateKey, tokens.private, 'GET', privateOrders), ok: [200], via: u.privateEdge },
    { route: 'echo without token (refused)', url: gw.public.gateway + '/api/echo/load', every: 300, ok: [401, 429], via: refusedFrom },
  ];
  const loops = routes.map(async (r) => {
    while (on) {
      const start = Date.now();
      let status: number | string;
      try {
        const res = await request(r.url, { dispatcher: r.via ?? u.edge, headers: await r.headers?.(), headersTimeout: 5000, bodyTimeout: 5000 });
        status = res.statusCode;
        await res.body.dump();
      } catch (error) {
        status = (error as { code?: string }).code ?? 'error';
      }
      samples.push({ route: r.route, start, end: Date.now(), status });
      await new Promise((res) => setTimeout(res, r.every));
    }
  });
  return {
    samples,
    routes,
    async stop() {
      on = false;
      await Promise.all(loops);
      await refusedFrom.close();
    },
  };
}

/** What each route answered between two instants: `{ 200: 12, 502: 3 }` per route. */
function seen(samples: Sample[], from: number, to: number): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const s of samples) {
    if (s.start < from || s.start > to) continue;
    out[s.route] ??= {};
    out[s.route][s.status] = (out[s.route][s.status] ?? 0) + 1;
  }
  return out;
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

const table: string[] = [];

// routes each component serves (a fault there may show on them, nowhere else)
const serves: Record<string, string[]> = {
  'service-catalog': ['catalog (anonymous)'],
  'service-echo': ['echo (jwt, public)'],
  'sidecar-echo': ['echo (jwt, public)'],
  'service-orders': ['orders (jwt, private)'],
  'service-bff': [],
  'gateway-public': ['catalog (anonymous)', 'echo (jwt, public)', 'echo without token (refused)'],
  'gateway-private': ['orders (jwt, private)'],
  // the partner gateway serves the API key route, asked once the faults are over
  'gateway-partner': [],
  'authority-public': [],
  'authority-private': [],
  ca: [],
  // PEPs serve on with their last bundle while it is down (test/control-peps.test.ts)
  control: [],
};

let A: Up;
let traffic: ReturnType<typeof load>;
const before: { creds: string; refresh: string; apiKey: string; revoked: string; certSerial: string; bundle: string; webConfig: oidc.Configuration } = {} as never;

test('kill -9 of every component in turn under light load: the rest keeps answering, each is back, nothing is lost', async (t) => {
  const started = Date.now();
  A = await startUp();
  t.diagnostic(`up ready in ${Date.now() - started} ms`);
  const privateKey = await dpopKey();
  const tokens = { public: (await clientToken(A, 'public', 'orders:read')).token!, private: (await clientToken(A, 'private', 'orders:read', privateKey)).token!, privateKey };

  // state worth keeping, made before the faults: a user's refresh token (sign-in with password + TOTP),
  // an API key, a revoked access token, a revoked certificate
  const zone = A.credentials.zones.public;
  const web = zone.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const edgeFetch = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: A.edge })) as unknown as TestFetch;
  before.webConfig = await oidc.discovery(new URL(A.endpoints.zones.public.authority!), web.client_id, { redirect_uris: web.redirect_uris }, oidc.ClientSecretBasic(web.client_secret!), {
    [oidc.customFetch]: edgeFetch as any,
  });
  const h = { auth: { issuer: A.endpoints.zones.public.authority }, fetch: edgeFetch, totp: async (secret: string) => generate({ secret }) } as unknown as Harness;
  const signedIn = await codeTokens(before.webConfig, await signIn(h, before.webConfig, zone.users[0], { scope: 'openid offline_access orders:read' }));
  assert.ok(signedIn.refresh_token);
  before.refresh = signedIn.refresh_token!;
  const key = spawnSync(process.execPath, [main, 'keys', 'api', 'add', '--config', 'examples/shop/gatehouse.yaml', '--zone', 'partner', '--consumer', 'acme', '--scopes', 'catalog:read', '--state-dir', A.stateDir], { cwd: root, encoding: 'utf8' });
  assert.equal(key.status, 0, key.stderr);
  before.apiKey = JSON.parse(key.stdout.slice(0, key.stdout.lastIndexOf('}') + 1)).key;
  before.revoked = (await clientToken(A, 'public', 'orders:read')).token!;
  const client = zone.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  const rev = await request(A.endpoints.zones.public.authority + '/token/revocation', {
    dispatcher: A.edge,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64') },
    body: new URLSearchParams({ token: before.revoked }).toString(),
  });
  assert.equal(rev.statusCode, 200);
  await rev.body.dump();
  const cert = await certificateFor(A.stateDir, gatewaySpiffeId('shop.local', 'public'));
  before.certSerial = cert.serial;
  const revoke = spawnSync(process.execPath, [main, 'ca', 'revoke', cert.serial, '--reason', 'fault test', '--state-dir', A.stateDir], { cwd: root, encoding: 'utf8' });
  assert.equal(revoke.status, 0, revoke.stderr);
  before.creds = readFileSync(path.join(A.stateDir, 'dev-credentials.json'), 'utf8');
  before.bundle = readFileSync(trustBundlePath(A.stateDir), 'utf8');

  traffic = load(A, tokens);
  cleanups.push(() => traffic.stop());
  await new Promise((r) => setTimeout(r, 1500));
  const order = ['service-catalog', 'authority-public', 'service-orders', 'ca', 'control', 'sidecar-echo', 'service-echo', 'authority-private', 'service-bff', 'gateway-private', 'gateway-public', 'gateway-partner'];
  for (const name of order) {
    const victim = await A.component(name);
    assert.ok(victim?.healthy && victim.pid, `${name} is running before the fault`);
    const t0 = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    const back = await until(`${name} back`, 15_000, async () => {
      const c = await A.component(name);
      return c.healthy && c.pid !== victim.pid && c;
    });
    // back means serving again: every route it serves answers as before
    const affected = serves[name];
    for (const route of affected) {
      const r = traffic.routes.find((x) => x.route === route)!;
      await until(`${route} after ${name}`, 15_000, async () => {
        const res = await request(r.url, { dispatcher: r.via ?? A.edge, headers: await r.headers?.() });
        await res.body.dump();
        return r.ok.includes(res.statusCode);
      });
    }
    const recovered = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 400));
    const window = seen(traffic.samples, t0, Date.now());
    for (const r of traffic.routes) {
      if (affected.includes(r.route)) continue;
      const got = window[r.route] ?? {};
      assert.ok(Object.keys(got).length > 0, `${r.route} was exercised during the outage of ${name}`);
      for (const status of Object.keys(got))
        assert.ok(r.ok.map(String).includes(status), `kill -9 ${name}: ${r.route} kept answering ${r.ok.join('/')} (got ${JSON.stringify(got)})`);
    }
    assert.ok(recovered <= 15_000, `${name} back in ${recovered} ms`);
    const users = affected.map((route) => `${route}: ${JSON.stringify(window[route] ?? {})}`).join('; ');
    table.push(`| kill -9 ${name} | ${users || 'nothing (every route kept answering)'} | ${recovered} ms (restart ${back.restarts}) |`);
    assert.ok(A.output().includes(`${name} stopped unexpectedly`), 'the crash is reported');
  }

  // nothing lost: seeded client secrets and users, the refresh token, the API key,
  // the token and certificate revocations, the CA
  assert.equal(readFileSync(path.join(A.stateDir, 'dev-credentials.json'), 'utf8'), before.creds, 'same demo identities');
  assert.equal(readFileSync(trustBundlePath(A.stateDir), 'utf8'), before.bundle, 'same trust bundle');
  for (const z of ['public', 'private']) assert.equal((await clientToken(A, z)).status, 200, `${z}: the client secret still works`);
  const refreshed = await oidc.refreshTokenGrant(before.webConfig, before.refresh);
  assert.ok(refreshed.access_token, 'the refresh token issued before survives both authority restarts');
  const partner = await request(A.endpoints.zones.partner.gateway + '/api/partner/catalog', { dispatcher: A.edge, headers: { 'x-api-key': before.apiKey } });
  assert.equal(partner.statusCode, 200, 'the API key still works after the gateway restart');
  await partner.body.dump();
  const revokedUse = await request(A.endpoints.zones.public.gateway + '/api/echo/x', { dispatcher: A.edge, headers: { authorization: `Bearer ${before.revoked}` } });
  assert.equal(revokedUse.statusCode, 401, 'a revoked token stays revoked');
  await revokedUse.body.dump();
  const bundleAgent = new Agent({ connect: { ca: before.bundle } });
  const list = await request(A.endpoints.ca + '/v1/revocations', { dispatcher: bundleAgent });
  const serials = ((await list.body.json()) as { serials: string[] }).serials.map((s) => s.replaceAll(':', '').toLowerCase());
  await bundleAgent.close();
  assert.ok(serials.includes(before.certSerial.replaceAll(':', '').toLowerCase()), 'the revoked certificate is still on the CA list');
  const unhealthy = (await A.readyz()).body.unhealthy;
  assert.deepEqual(unhealthy, [], 'everything healthy again');
  t.diagnostic(['| fault | what users saw (status: count, during the outage) | back after |', '|---|---|---|', ...table].join('\n'));
});

test('SIGTERM (twice) under load, with a service in its restart backoff: in-flight requests finish, up exits 0 in time, no orphan', async (t) => {
  assert.ok(A, 'the previous test started up');
  const since = Date.now();
  const gw = A.endpoints.zones.public.gateway!;
  const token = (await clientToken(A, 'public', 'orders:read')).token!;
  // a request whose body trickles in over 2 s: in flight through gateway, sidecar and app when SIGTERM comes
  const chunks = 20;
  const slow = request(gw + '/api/echo/slow', {
    dispatcher: A.edge,
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
    body: Readable.from(
      (async function* () {
        for (let i = 0; i < chunks; i++) {
          yield Buffer.alloc(1024, 'x');
          await new Promise((r) => setTimeout(r, 100));
        }
      })(),
    ),
  }).then(async (r) => ({ status: r.statusCode, body: (await r.body.json()) as { bodyBytes: number } }));
  await new Promise((r) => setTimeout(r, 500));
  const bff = await A.component('service-bff');
  process.kill(bff.pid!, 'SIGKILL');
  await until('bff in backoff', 3000, async () => (await A.component('service-bff')).state !== 'running');
  const pids = livePids((await A.readyz()).body.components);
  const sent = Date.now();
  A.child.kill('SIGTERM');
  setTimeout(() => A.child.kill('SIGTERM'), 100);
  const done = await slow;
  assert.equal(done.status, 200, 'the in-flight request completed');
  assert.equal(done.body.bodyBytes, chunks * 1024, 'with its whole body');
  const exit = await A.exited;
  await traffic.stop();
  const took = exit.at - sent;
  t.diagnostic(`up exited ${exit.code} ${took} ms after SIGTERM`);
  assert.equal(exit.code, 0, A.output().slice(-2000));
  assert.ok(took < 12_000, 'within drain timeout + 2 s');
  // requests begun before the SIGTERM all got their answer
  const cut = traffic.samples.filter((s) => s.start >= since && s.start < sent && typeof s.status === 'string');
  assert.ok(traffic.samples.filter((s) => s.start >= since && s.start < sent).length > 5, 'traffic ran up to the SIGTERM');
  assert.deepEqual(cut, [], 'no request begun before the SIGTERM was cut');
  assert.match(A.output(), /already stopping/);
  const left = processesOf(A.child.pid!, A.stateDir);
  assert.deepEqual(left, [], 'no orphan');
  for (const p of pids) assert.ok(gone(p.pid, p.started), `component pid ${p.pid} is gone`);
  await A.edge.close();
  keepLogs(A.stateDir, 'faults');
  rmSync(A.stateDir, { recursive: true, force: true });
});

test('a component with a bad config is reported once and not restarted in a loop; kill -9 of up (a restart in its backoff) leaves no child', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-faults-topo-'));
  writeFileSync(
    path.join(dir, 'broken.ts'),
    `// a service whose own configuration is wrong: it refuses to start\nexport async function start() {\n  throw new Error('inventory: config: INVENTORY_DB_URL is not set');\n}\n`,
  );
  // the example's catalog behind a gateway, beside the broken service: what `up` does with the one holds for any topology
  // (a small one: the whole example starts twenty processes, and test A above runs it)
  const yaml = [
    'version: 1',
    'trustDomain: shop.local',
    'zones:',
    '  public:',
    '    gateway: { listen: 127.0.0.1:8443, tls: dev, admin: { listen: 127.0.0.1:9901 } }',
    '    routes:',
    '      - { name: catalog, path: /api/catalog, match: exact, methods: [GET, HEAD], service: catalog, auth: anonymous }',
    'services:',
    '  catalog:',
    '    zone: public',
    `    run: ${exampleDir}/services/catalog.ts`,
    '    allow:',
    '      - { caller: gateway, methods: [GET, HEAD], paths: [{ path: /api/catalog }] }',
    '  inventory:',
    '    zone: public',
    `    run: ${path.join(dir, 'broken.ts')}`,
  ];
  writeFileSync(path.join(dir, 'gatehouse.yaml'), yaml.join('\n') + '\n');
  const B = await startUp(['--config', path.join(dir, 'gatehouse.yaml')], /gatehouse: degraded: .*\n/);
  try {
    const lines = B.output().split('\n').filter((l) => l.includes('service-inventory'));
    const reported = lines.filter((l) => /service-inventory failed to start/.test(l));
    assert.equal(reported.length, 1, B.output());
    assert.match(reported[0], /INVENTORY_DB_URL is not set/, 'with the reason');
    const r = await B.readyz();
    assert.equal(r.status, 503);
    assert.deepEqual(r.body.unhealthy.map((c) => [c.name, c.state]), [['service-inventory', 'failed']]);
    assert.match(r.body.unhealthy[0].reason!, /INVENTORY_DB_URL is not set/);
    const healthz = await undiciFetch(B.endpoints.up!.admin + '/healthz');
    assert.equal(healthz.status, 200);
    // the rest serves
    const catalog = await request(B.endpoints.zones.public.gateway + '/api/catalog', { dispatcher: B.edge });
    assert.equal(catalog.statusCode, 200);
    await catalog.body.dump();
    const starts = () => readFileSync(path.join(B.stateDir, 'logs', 'service-inventory.log'), 'utf8').split('--- gatehouse up: starting ').length - 1;
    const tried = starts();
    assert.ok(tried >= 1 && tried <= 3, `tried ${tried} times`);
    await new Promise((res) => setTimeout(res, 3000));
    assert.equal(starts(), tried, 'not started again');
    assert.equal(B.output().split('\n').filter((l) => /service-inventory failed to start/.test(l)).length, 1, 'still reported once');

    // a service crashes; while its restart waits, up itself is killed with SIGKILL
    const pids = livePids((await B.readyz()).body.components);
    const catalogPid = (await B.component('service-catalog')).pid!;
    process.kill(catalogPid, 'SIGKILL');
    await until('catalog in backoff', 3000, async () => (await B.component('service-catalog')).state === 'backoff');
    const killed = Date.now();
    B.child.kill('SIGKILL');
    await B.exited;
    const goneAt = await until('no child left', 5000, async () => processesOf(B.child.pid!, B.stateDir).length === 0 && Date.now());
    t.diagnostic(`every child gone ${goneAt - killed} ms after kill -9 of up`);
    assert.ok(goneAt - killed <= 3000, `children gone within a couple of seconds (${goneAt - killed} ms)`);
    // a process seen with no command line is still exiting: give it a moment to be gone
    for (const p of pids) {
      for (let i = 0; i < 30 && !gone(p.pid, p.started); i++) await new Promise((r) => setTimeout(r, 100));
      assert.ok(gone(p.pid, p.started), `component pid ${p.pid} is gone (${cmdlineOf(p.pid)})`);
    }
    await new Promise((res) => setTimeout(res, 1500));
    assert.deepEqual(processesOf(B.child.pid!, B.stateDir), [], 'and nothing was restarted after up died');
  } finally {
    await B.edge.close();
    keepLogs(B.stateDir, 'faults');
    rmSync(B.stateDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
