// `gatehouse up`: runs a whole topology on one machine. Every component runs
// in its own process (the same CLI verbs an operator would run), started in
// trust order — the trust domain's CA and the control plane, the zone
// authorities (which follow the control plane), services (each with its own workload certificate, bootstrapped
// from a one-time join token), gateways — and `endpoints.json` is written only
// when every one of them has said it answers. Every gateway, mesh service and
// sidecar follows the control plane (`--control`): it enforces its signed
// bundle, and an edit of the topology file reaches them all through it.
//
// Each component is supervised (supervisor.ts): one that crashes is restarted
// after a jittered exponential backoff while the rest keeps serving, on the
// same ports (the first start's ports are pinned), so nobody's configuration
// changes. What must happen once is not redone: the CA and dev seeds live in
// the state dir and are reused; a restarted service gets a fresh one-time join
// token. A service that comes back on another port is written to
// services.json/endpoints.json, the gateways reload (SIGHUP), and a sidecar in
// front of a restarted application restarts with its new address. A component
// that fails at start (bad config) is reported once and left failed; `up`
// then runs degraded and says so on its admin listener (GET /readyz).
// `--fail-fast`: the first exit stops everything (fail closed), as before.
//
// Shutdown is ordered and draining: gateways first (they drain up to
// --drain-timeout), then sidecars, services, authorities, the CA; stragglers
// are killed, so `up` is gone within drain timeout + 2 s. No child outlives
// `up`, even one killed with SIGKILL: children watch their IPC channel
// (ready.ts) and are in their own process group, so a terminal's Ctrl-C
// reaches `up` alone and the order holds.
//
// A gateway whose zone polls the revocation feed (authentication.revocationFeed)
// gets its client secret in the environment variable the topology names, never
// on the command line or in a log. Dev mode: the zone authority seeds that
// client (it can only read the feed) and reports the secret over IPC; `up`
// keeps it in DIR/gateway/<zone>/revocation-feed.secret (0600) and hands it to
// the gateway. Otherwise (--no-dev, or a feed of another authority) the
// operator registers the client and sets the variable; `up` refuses to start
// without it, before anything runs.
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { createServer } from '../shared/node-http.ts';
import { existsSync, mkdirSync, openSync, writeFileSync, renameSync, readFileSync, closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTopology } from '../topology/load.ts';
import { openDevCa } from '../shared/dev-ca.ts';
import { listen } from '../shared/listen.ts';
import { writeProblem } from '../shared/problem.ts';
import { MethodNotAllowed, NotFound } from '../shared/errors.ts';
import { initCa, createJoinToken, serviceSpiffeId } from '../pki/index.ts';
import type { ReadyMessage } from './ready.ts';
import { createSupervisor, type ChildHandle, type ComponentStatus, type ExitStatus, type StopResult, type Timers } from './supervisor.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.join(here, 'main.ts');

export interface UpOptions {
  config: string;
  stateDir: string;
  /** Listen on free ports instead of the ones in the file (tests, several instances). */
  ephemeralPorts: boolean;
  dev: boolean;
  out?: NodeJS.WritableStream;
  /** The first component that exits stops everything (no restarts). Default false. */
  failFast?: boolean;
  /** How long gateways drain on shutdown before they are killed; default 10 s. */
  drainTimeoutMs?: number;
  /** `up`'s own admin listener (GET /healthz, /readyz); default 127.0.0.1:0. */
  adminListen?: string;
  /** Injected clock/timers of the supervisor (tests). */
  timers?: Timers;
}

export interface Endpoints {
  trustDomain: string;
  caBundle: string;
  /** The trust domain's CA (workload certificates: join-token bootstrap, renewal, revocations). */
  ca?: string;
  /** The control plane (signed policy bundles over mTLS; `gatehouse status`). */
  control?: string;
  /** Its loopback admin API (status, publish, quarantines, events). */
  controlAdmin?: string;
  /** The vault (encryption, tokenization over mTLS), when the topology has a vault section. */
  vault?: string;
  zones: Record<string, { gateway?: string; authority?: string; admin?: string; redirect?: string }>;
  services: Record<string, { zone: string; url: string }>;
  console?: string;
  /** `gatehouse up` itself: its loopback admin listener (GET /healthz, GET /readyz). */
  up?: { admin: string };
}

export interface UpSession {
  /** Resolves when bring-up is over: every component answers, or the ones that failed at start are reported (`unhealthy`). */
  ready: Promise<{ endpoints: Endpoints; unhealthy: ComponentStatus[] }>;
  /** Ordered, draining stop; idempotent. */
  stop(): Promise<StopResult>;
  /** The exit code `up` should end with, once it has stopped (by stop() or, with --fail-fast, by itself). */
  finished: Promise<number>;
  status(): ComponentStatus[];
}

interface Child {
  name: string;
  ready: Promise<ReadyMessage>;
}

/** Where a component is in the stop order: gateways first, the CA last. */
function tierOf(name: string): number {
  if (name.startsWith('gateway-')) return 0;
  if (name.startsWith('sidecar-')) return 1;
  if (name.startsWith('service-')) return 2;
  if (name.startsWith('authority-')) return 3;
  return 4;
}

/** Listen flags a restart keeps on the port of the first start, and the endpoint that says which. */
const PINNED: Record<string, string[]> = {
  '--listen': ['ca', 'control', 'vault', 'authority', 'gateway'],
  '--admin-listen': ['admin'],
  '--redirect-listen': ['redirect'],
};

/** Zones whose gateway reads a revocation feed with a secret `up` does not seed: the variable must be set already. */
function checkFeedSecrets(o: UpOptions, topology: ReturnType<typeof loadTopology>['topology'], seeded: (zone: string) => boolean): void {
  const missing: string[] = [];
  for (const [zone, z] of Object.entries(topology.zones)) {
    const feed = z.authentication.revocationFeed;
    if (!z.gateway || !feed || seeded(zone) || process.env[feed.clientSecretEnv]) continue;
    const register = feed.url
      ? `at the authority that serves ${feed.url}`
      : `(gatehouse clients add --config ${o.config} --state-dir ${o.stateDir} --zone ${zone} --id ${feed.clientId} --revocation-feed)`;
    missing.push(
      `zone ${zone}: the gateway reads the revocation feed as client ${feed.clientId}, but ${feed.clientSecretEnv} is not set; register the client once ${register} and export ${feed.clientSecretEnv}=<its secret>`,
    );
  }
  if (missing.length > 0) throw new Error(`${missing.join('\n')}\n(in dev mode, without --no-dev, up seeds the feed client of a zone's own authority)`);
}

function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}

const START_MARK = '--- gatehouse up: starting ';

/** The last lines of a component's log: why it failed, for the report. */
function logTail(file: string, lines = 3): string {
  if (!existsSync(file)) return '';
  const text = readFileSync(file, 'utf8');
  const last = text.lastIndexOf(START_MARK);
  return text
    .slice(last >= 0 ? last : 0)
    .slice(-8192)
    .split('\n')
    .filter((l) => !l.startsWith(START_MARK))
    .map((l) => l.trim())
    .filter((l) => l && !/^at |^\^|^Node\.js v/.test(l))
    .slice(-lines)
    .join(' | ')
    .slice(0, 600);
}

/** `up`'s own admin listener: liveness of `up`, readiness of the whole topology. */
async function startAdmin(at: string, status: () => { complete: boolean; components: ComponentStatus[] }): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const id = randomUUID();
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/healthz' && url.pathname !== '/readyz') return void writeProblem(res, NotFound('Try GET /healthz or GET /readyz.'), id);
    if (req.method !== 'GET' && req.method !== 'HEAD') return void writeProblem(res, MethodNotAllowed(['GET', 'HEAD']), id);
    const s = status();
    const components = s.components.map(({ name, state, healthy, pid, restarts, reason }) => ({ name, state, healthy, pid, restarts, reason }));
    const unhealthy = components.filter((c) => !c.healthy);
    const ok = url.pathname === '/healthz' || (s.complete && unhealthy.length === 0);
    const body =
      url.pathname === '/healthz'
        ? { status: 'ok' }
        : { ready: ok, ...(s.complete ? {} : { starting: true }), unhealthy, components };
    const text = JSON.stringify(body) + '\n';
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-request-id': id, 'content-length': Buffer.byteLength(text) });
    res.end(req.method === 'HEAD' ? undefined : text);
  });
  server.keepAliveTimeout = 1000;
  const bound = await listen(server, at, 'http');
  return {
    url: bound.url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function up(o: UpOptions): UpSession {
  const out = o.out ?? process.stdout;
  const say = (line: string) => out.write(`gatehouse: ${line}\n`);
  const drainMs = o.drainTimeoutMs ?? 10_000;
  const stateDir = path.resolve(o.stateDir);
  let complete = false;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));
  let admin: { url: string; close(): Promise<void> } | undefined;

  // what each component was started with (arguments change on a restart: pinned ports, a moved upstream)
  const specs = new Map<string, { args: string[]; script: string; env: Record<string, string>; last?: ReadyMessage }>();
  let onRestarted: (name: string, previous: ReadyMessage, next: ReadyMessage) => void = () => {};
  let stopPromise: Promise<StopResult> | undefined;
  let failedFast = false;
  const stop = (): Promise<StopResult> => {
    stopPromise ??= (async () => {
      const result = await supervisor.stop({ drainMs, graceMs: 1_500 });
      await admin?.close();
      if (result.killed.length > 0) say(`killed after the drain timeout: ${result.killed.join(', ')}`);
      finish(result.clean && !failedFast ? 0 : 1);
      return result;
    })();
    return stopPromise;
  };

  const supervisor = createSupervisor({
    timers: o.timers,
    restart: !o.failFast,
    onEvent(e) {
      if (supervisor.stopping) return;
      const spec = specs.get(e.name);
      if (e.type === 'ready') {
        const previous = spec?.last;
        if (spec) spec.last = e.value as ReadyMessage;
        if (e.restarts > 0) say(`${e.name} is back (restart ${e.restarts})`);
        if (previous && spec) onRestarted(e.name, previous, e.value as ReadyMessage);
      } else if (e.type === 'exited') {
        // a start failure is reported once, when it is given up on (`failed`)
        if (e.everReady && e.restartInMs !== undefined) say(`${e.name} stopped unexpectedly: ${e.reason}; restarting in ${(e.restartInMs / 1000).toFixed(1)} s`);
      } else {
        const log = path.join(stateDir, 'logs', `${e.name}.log`);
        if (o.failFast) {
          say(`${e.name} stopped unexpectedly (${e.reason}); stopping everything (fail closed)`);
          failedFast = true;
          if (complete) void stop();
        } else say(`${e.name} failed${e.everReady ? '' : ' to start'}: ${e.reason}; not restarting it (see ${log})`);
      }
    },
  });

  const spawnChild = (name: string): ChildHandle<ReadyMessage> => {
    const spec = specs.get(name)!;
    const logFile = path.join(stateDir, 'logs', `${name}.log`);
    const fd = openSync(logFile, 'a', 0o600);
    // one marker per start: a failure is described from its own start's lines only
    writeFileSync(fd, `${START_MARK}${name} at ${new Date().toISOString()}\n`);
    // detached: its own process group, so a terminal's SIGINT reaches `up` only and the stop order holds;
    // it still never outlives `up` (ready.ts watches the IPC channel)
    const child = fork(spec.script, spec.args, {
      stdio: ['ignore', fd, fd, 'ipc'],
      execArgv: [],
      detached: true,
      // spread anew on every start: a join token in `env` is minted per start (joinToken below)
      env: { ...process.env, ...spec.env, GATEHOUSE_SUPERVISED: '1', GATEHOUSE_DRAIN_TIMEOUT_MS: String(drainMs) },
    });
    closeSync(fd);
    return {
      pid: child.pid,
      ready: new Promise((resolve) => child.on('message', (m: ReadyMessage) => m?.type === 'gatehouse:ready' && resolve(m))),
      exited: new Promise<ExitStatus>((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
        child.once('error', () => child.exitCode === null && child.signalCode === null && child.pid === undefined && resolve({ code: 127, signal: null }));
      }),
      kill: (signal) => {
        try {
          child.kill(signal);
        } catch {
          // already gone
        }
      },
    };
  };

  const start = (name: string, args: string[], script = MAIN, env: Record<string, string> = {}): Child => {
    specs.set(name, { args: [...args], script, env });
    const ready = supervisor.add<ReadyMessage>({
      name,
      tier: tierOf(name),
      spawn: () => spawnChild(name),
      describe: (s: ExitStatus) => {
        const tail = logTail(path.join(stateDir, 'logs', `${name}.log`));
        return `exited (${s.signal ?? `code ${s.code}`})${tail ? `: ${tail}` : ''}`;
      },
    });
    // a restart comes back on the ports of the first start (it is what everybody was told)
    void ready.then((m) => {
      const spec = specs.get(name)!;
      for (let i = 0; i < spec.args.length - 1; i++) {
        const keys = PINNED[spec.args[i]];
        const value = spec.args[i + 1];
        if (!keys || !/:0$/.test(value)) continue;
        const url = keys.map((k) => m.endpoints[k]).find(Boolean);
        if (url) spec.args[i + 1] = `${value.slice(0, value.lastIndexOf(':'))}:${new URL(url).port}`;
      }
    }, () => {});
    return { name, ready };
  };

  const ready = (async () => {
    const loaded = loadTopology(o.config);
    const { topology } = loaded;
    const authorityVerb = existsSync(path.join(here, 'commands', 'authority.ts'));
    // dev mode seeds the feed client at the zone's own authority (dev-feed-client.ts)
    const seedsFeedClient = (zone: string) =>
      o.dev && authorityVerb && topology.zones[zone]?.authority !== undefined && topology.zones[zone]?.authentication.revocationFeed?.url === undefined;
    checkFeedSecrets(o, topology, seedsFeedClient);
    mkdirSync(path.join(stateDir, 'logs'), { recursive: true, mode: 0o700 });
    for (const f of ['endpoints.json', 'services.json']) if (existsSync(path.join(stateDir, f))) writeFileSync(path.join(stateDir, f), '{}');
    admin = await startAdmin(o.adminListen ?? '127.0.0.1:0', () => ({ complete, components: supervisor.status() }));
    say(`admin ${admin.url} (GET /healthz, GET /readyz)`);

    // the dev CA (TLS of gateways and authorities) and the trust domain's CA
    // (workload identities) exist before any component starts, so all share them
    // (once: a restart never redoes this)
    await openDevCa(stateDir, topology.trustDomain);
    const pki = await initCa({ stateDir, topology });
    if (pki.devPassphraseFile)
      out.write(`gatehouse: created the CA of ${topology.trustDomain}; dev mode: its root key passphrase is in ${pki.devPassphraseFile}\n`);

    const common = ['--config', loaded.file, '--state-dir', stateDir];
    const ephemeral = (flag: string) => (o.ephemeralPorts ? [flag, '127.0.0.1:0'] : []);

    // 1. the control plane: every gateway, service, sidecar and authority enforces
    // the bundle it serves (and follows the topology file's changes through it);
    // then the CA server (services bootstrap their certificates from it and renew
    // there) and the zone authorities, side by side: neither needs the other.
    // Without them nothing else can start: a failure here ends `up`.
    const controlChild = start('control', ['control', ...common, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']);
    const zones: Endpoints['zones'] = {};
    const devCredentials: Record<string, unknown> = {};
    const feedSecrets: Record<string, string> = {};
    // the zone authorities follow the control plane too (their bundle: quarantined
    // clients and subjects; their events over mTLS with their own identity), so
    // they start once it answers (its port is pinned: a restart finds it again)
    const controlReady = await controlChild.ready;
    const bundlesUrl = `${controlReady.endpoints.control}/v1/bundles`;
    // the CA server once the control plane answers: its issuances and refusals are security events there
    const caChild = start('ca', ['ca', 'serve', ...common, '--listen', '127.0.0.1:0', '--control', bundlesUrl]);
    // the vault, when the topology has one: services learn its URL (GATEHOUSE_VAULT_URL) and keep their data in
    // DIR/data/<service>; it sends its refusals to the control plane as events
    const vaultChild = topology.vault ? start('vault', ['vault', ...common, ...ephemeral('--listen')], MAIN, { GATEHOUSE_CONTROL_URL: bundlesUrl }) : undefined;
    const authorityChildren = Object.entries(topology.zones)
      .filter(([, z]) => z.authority !== undefined && authorityVerb)
      .map(([zone]) => ({
        zone,
        child: start(`authority-${zone}`, ['authority', ...common, '--zone', zone, ...(o.dev ? ['--dev'] : []), ...ephemeral('--listen')], MAIN, {
          GATEHOUSE_CONTROL_URL: bundlesUrl,
        }),
      }));
    const [caReady, ...authorityReady] = await Promise.all([caChild.ready, ...authorityChildren.map((a) => a.child.ready)]);
    const caUrl = caReady.endpoints.ca;
    const controlArgs = ['--control', bundlesUrl];
    const vaultUrl = vaultChild ? (await vaultChild.ready).endpoints.vault : undefined;
    authorityChildren.forEach((a, i) => {
      const m = authorityReady[i];
      zones[a.zone] = { ...zones[a.zone], authority: m.endpoints.authority };
      if (m.devCredentials !== undefined) devCredentials[a.zone] = m.devCredentials;
      if (m.devFeedClient !== undefined && seedsFeedClient(a.zone)) feedSecrets[a.zone] = m.devFeedClient.client_secret;
    });

    // 2. services that Gatehouse starts itself. Each gets a one-time join token
    // (in its environment, never on the command line) and bootstraps its own
    // certificate from the CA server: a mesh service (createService) itself, a
    // plain application through the `gatehouse sidecar` in front of it. A mesh
    // service learns the zones' authorities and the clients it has there
    // (dev: seeded for it, authenticated by its certificate).
    const services: Endpoints['services'] = {};
    const runService = path.join(here, 'run-service.ts');
    // the token is minted when the environment is spread, i.e. on every start:
    // a restarted service bootstraps again with a fresh single-use token
    const joinToken = (name: string): Record<string, string> => ({
      get GATEHOUSE_JOIN_TOKEN() {
        return createJoinToken({ stateDir, topology, service: name, ttlSeconds: 120 }).token;
      },
    });
    const serviceEnv = (name: string): Record<string, string> => {
      const env = joinToken(name); // Object.assign keeps its getter: the token is still minted per start
      if (!vaultUrl) return env;
      const data = path.join(stateDir, 'data', name);
      mkdirSync(data, { recursive: true, mode: 0o700 });
      return Object.assign(env, { GATEHOUSE_VAULT_URL: vaultUrl, GATEHOUSE_DATA_DIR: data });
    };
    const authorityArgs = (name: string, zone: string): string[] => {
      const args: string[] = [];
      const spiffeId = serviceSpiffeId(topology.trustDomain, zone, name);
      for (const [z, entry] of Object.entries(zones)) {
        if (!entry.authority) continue;
        args.push('--authority', `${z}=${entry.authority}`);
        const clients = (devCredentials[z] as { clients?: { client_id: string; tls_client_auth_san_uri?: string }[] } | undefined)?.clients ?? [];
        const own = clients.find((c) => c.tls_client_auth_san_uri === spiffeId);
        if (own) args.push('--client', `${z}=${own.client_id}`);
      }
      return args;
    };
    const startService = async (name: string, s: (typeof topology.services)[string]): Promise<string> => {
      const module = path.resolve(loaded.dir, s.run!);
      if (!s.sidecar) {
        const args = [module, name, ...common, '--ca-url', caUrl, ...controlArgs, ...authorityArgs(name, s.zone)];
        const child = start(`service-${name}`, args, runService, serviceEnv(name));
        return (await child.ready).endpoints.service;
      }
      // the application listens on the Unix socket of its 0700 run folder (state dir), never on a port
      const app = start(`service-${name}`, [module, name, '--plain', ...common], runService);
      const appUrl = (await app.ready).endpoints.service;
      const sidecar = start(`sidecar-${name}`, ['sidecar', '--service', name, '--upstream', appUrl, ...common, '--ca-url', caUrl, ...controlArgs], MAIN, joinToken(name));
      return (await sidecar.ready).endpoints.service;
    };
    // a service that fails at start is reported (supervisor) and left out; the rest comes up
    const settled = await Promise.allSettled(
      Object.entries(topology.services)
        .filter(([, s]) => s.run !== undefined)
        .map(async ([name, s]) => ({ name, zone: s.zone, url: await startService(name, s) })),
    );
    if (supervisor.stopping) throw new Error('stopped while starting');
    for (const r of settled) if (r.status === 'fulfilled') services[r.value.name] = { zone: r.value.zone, url: r.value.url };
    for (const [name, s] of Object.entries(topology.services))
      if (s.upstream !== undefined) services[name] = { zone: s.zone, url: s.upstream };
    const writeServices = () =>
      writeAtomic(
        path.join(stateDir, 'services.json'),
        JSON.stringify({ services: Object.fromEntries(Object.entries(services).map(([n, s]) => [n, { upstream: s.url }])) }, null, 2),
        0o600,
      );
    writeServices();

    // 3. gateways, each with the secret of its revocation-feed client (dev: seeded)
    const feedEnv = (zone: string): Record<string, string> => {
      const feed = topology.zones[zone].authentication.revocationFeed;
      const secret = feedSecrets[zone];
      if (!feed || secret === undefined) return {};
      const dir = path.join(stateDir, 'gateway', zone);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeAtomic(path.join(dir, 'revocation-feed.secret'), secret + '\n', 0o600);
      return { [feed.clientSecretEnv]: secret };
    };
    const gateways = Object.entries(topology.zones)
      .filter(([, z]) => z.gateway !== undefined)
      .map(([zone, z]) => ({
        zone,
        child: start(
          `gateway-${zone}`,
          [
            'gateway',
            ...common,
            '--zone',
            zone,
            '--workers',
            '1',
            ...controlArgs,
            ...ephemeral('--listen'),
            ...ephemeral('--admin-listen'),
            ...(z.gateway!.redirectListen ? ephemeral('--redirect-listen') : []),
          ],
          MAIN,
          feedEnv(zone),
        ),
      }));
    const gatewayReady = await Promise.allSettled(gateways.map((g) => g.child.ready));
    if (supervisor.stopping) throw new Error('stopped while starting');
    gateways.forEach((g, i) => {
      const r = gatewayReady[i];
      if (r.status !== 'fulfilled') return;
      const m = r.value;
      zones[g.zone] = { ...zones[g.zone], gateway: m.endpoints.gateway, admin: m.endpoints.admin };
      if (m.endpoints.redirect) zones[g.zone].redirect = m.endpoints.redirect;
    });

    const endpoints: Endpoints = {
      trustDomain: topology.trustDomain,
      caBundle: path.join(stateDir, 'tls', 'dev-ca.pem'),
      ca: caUrl,
      control: controlReady.endpoints.control,
      controlAdmin: controlReady.endpoints.admin,
      ...(controlReady.endpoints.console ? { console: controlReady.endpoints.console } : {}),
      ...(vaultUrl ? { vault: vaultUrl } : {}),
      zones,
      services,
      up: { admin: admin.url },
    };
    const writeEndpoints = () => writeAtomic(path.join(stateDir, 'endpoints.json'), JSON.stringify(endpoints, null, 2) + '\n', 0o644);
    if (o.dev && Object.keys(devCredentials).length > 0)
      writeAtomic(path.join(stateDir, 'dev-credentials.json'), JSON.stringify({ zones: devCredentials }, null, 2) + '\n', 0o600);
    writeEndpoints();

    // a restarted component that answers somewhere else: tell everybody
    onRestarted = (name, previous, next) => {
      const moved = Object.entries(previous.endpoints).filter(([k, v]) => next.endpoints[k] !== undefined && next.endpoints[k] !== v);
      if (moved.length === 0) return;
      say(`${name} moved: ${moved.map(([k, v]) => `${k} ${v} -> ${next.endpoints[k]}`).join(', ')}`);
      // components started with an old address in their arguments (a sidecar's --upstream) restart with the new one
      for (const [other, spec] of specs) {
        if (other === name) continue;
        let hit = false;
        spec.args = spec.args.map((a) => {
          const m = moved.find(([, v]) => v === a);
          if (!m) return a;
          hit = true;
          return next.endpoints[m[0]];
        });
        if (hit) supervisor.restart(other);
      }
      if (next.component === 'service' || next.component === 'sidecar') {
        const service = next.service!;
        const fronted = next.component === 'service' && specs.has(`sidecar-${service}`);
        if (!fronted && services[service]) {
          services[service] = { ...services[service], url: next.endpoints.service };
          writeServices();
          // gateways read service addresses when they (re)load
          for (const c of supervisor.status()) if (c.name.startsWith('gateway-') && c.pid !== undefined && c.healthy) process.kill(c.pid, 'SIGHUP');
        }
      } else if (next.component === 'authority' && next.zone) zones[next.zone] = { ...zones[next.zone], authority: next.endpoints.authority };
      else if (next.component === 'gateway' && next.zone) zones[next.zone] = { ...zones[next.zone], gateway: next.endpoints.gateway, admin: next.endpoints.admin };
      else if (next.component === 'ca') endpoints.ca = next.endpoints.ca;
      else if (next.component === 'control') Object.assign(endpoints, { control: next.endpoints.control, controlAdmin: next.endpoints.admin, console: next.endpoints.console });
      else if (next.component === 'vault') endpoints.vault = next.endpoints.vault;
      writeEndpoints();
    };
    complete = true;
    return { endpoints, unhealthy: supervisor.status().filter((c) => !c.healthy) };
  })();
  ready.catch(async () => {
    await stop();
  });
  return { ready, stop, finished, status: () => supervisor.status() };
}
