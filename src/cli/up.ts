// `gatehouse up`: runs a whole topology on one machine. Every component runs
// in its own process (the same CLI verbs an operator would run), started in
// trust order — the trust domain's CA and the zone authorities, services (each
// with its own workload certificate, bootstrapped from a one-time join token),
// gateways
// — and `endpoints.json` is written only when every one of them has said it
// answers.
//
// A gateway whose zone polls the revocation feed (authentication.revocationFeed)
// gets its client secret in the environment variable the topology names, never
// on the command line or in a log. Dev mode: the zone authority seeds that
// client (it can only read the feed) and reports the secret over IPC; `up`
// keeps it in DIR/gateway/<zone>/revocation-feed.secret (0600) and hands it to
// the gateway. Otherwise (--no-dev, or a feed of another authority) the
// operator registers the client and sets the variable; `up` refuses to start
// without it, before anything runs.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, writeFileSync, renameSync, readFileSync, closeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadTopology } from '../topology/load.ts';
import { openDevCa } from '../shared/dev-ca.ts';
import { initCa, createJoinToken, serviceSpiffeId } from '../pki/index.ts';
import type { ReadyMessage } from './ready.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.join(here, 'main.ts');

export interface UpOptions {
  config: string;
  stateDir: string;
  /** Listen on free ports instead of the ones in the file (tests, several instances). */
  ephemeralPorts: boolean;
  dev: boolean;
  out?: NodeJS.WritableStream;
}

export interface Endpoints {
  trustDomain: string;
  caBundle: string;
  /** The trust domain's CA (workload certificates: join-token bootstrap, renewal, revocations). */
  ca?: string;
  zones: Record<string, { gateway?: string; authority?: string; admin?: string; redirect?: string }>;
  services: Record<string, { zone: string; url: string }>;
  console?: string;
}

interface Child {
  name: string;
  process: ChildProcess;
  ready: Promise<ReadyMessage>;
}

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

export async function up(o: UpOptions): Promise<{ endpoints: Endpoints; stop(): Promise<void> }> {
  const out = o.out ?? process.stdout;
  const loaded = loadTopology(o.config);
  const { topology } = loaded;
  const stateDir = path.resolve(o.stateDir);
  const authorityVerb = existsSync(path.join(here, 'commands', 'authority.ts'));
  // dev mode seeds the feed client at the zone's own authority (dev-feed-client.ts)
  const seedsFeedClient = (zone: string) =>
    o.dev && authorityVerb && topology.zones[zone]?.authority !== undefined && topology.zones[zone]?.authentication.revocationFeed?.url === undefined;
  checkFeedSecrets(o, topology, seedsFeedClient);
  mkdirSync(path.join(stateDir, 'logs'), { recursive: true, mode: 0o700 });
  for (const f of ['endpoints.json', 'services.json']) if (existsSync(path.join(stateDir, f))) writeFileSync(path.join(stateDir, f), '{}');

  // the dev CA (TLS of gateways and authorities) and the trust domain's CA
  // (workload identities) exist before any component starts, so all share them
  await openDevCa(stateDir, topology.trustDomain);
  const pki = await initCa({ stateDir, topology });
  if (pki.devPassphraseFile)
    out.write(`gatehouse: created the CA of ${topology.trustDomain}; dev mode: its root key passphrase is in ${pki.devPassphraseFile}\n`);
  const children: Child[] = [];
  let stopping = false;
  const start = (name: string, args: string[], script = MAIN, env: Record<string, string> = {}): Child => {
    const logFile = path.join(stateDir, 'logs', `${name}.log`);
    const fd = openSync(logFile, 'a', 0o600);
    const child = fork(script, args, { stdio: ['ignore', fd, fd, 'ipc'], execArgv: [], env: { ...process.env, ...env } });
    closeSync(fd);
    const ready = new Promise<ReadyMessage>((resolve, reject) => {
      child.on('message', (m: ReadyMessage) => {
        if (m?.type === 'gatehouse:ready') resolve(m);
      });
      child.once('exit', (code, signal) => {
        const tail = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
        const error = new Error(`${name} exited (${signal ?? `code ${code}`}) before it was ready; see ${logFile}\n${tail}`);
        reject(error);
        if (!stopping) {
          out.write(`gatehouse: ${name} stopped unexpectedly (${signal ?? `code ${code}`}); stopping everything (fail closed)\n`);
          void stop().then(() => (process.exitCode = 1));
        }
      });
    });
    const c = { name, process: child, ready };
    children.push(c);
    return c;
  };
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await Promise.all(
      [...children].reverse().map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.process.exitCode !== null || c.process.signalCode !== null) return resolve();
            const kill = setTimeout(() => c.process.kill('SIGKILL'), 8_000);
            c.process.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            c.process.kill('SIGTERM');
          }),
      ),
    );
  };

  try {
    const common = ['--config', loaded.file, '--state-dir', stateDir];
    const ephemeral = (flag: string) => (o.ephemeralPorts ? [flag, '127.0.0.1:0'] : []);

    // 1. the CA server (services bootstrap their certificates from it and renew
    // there) and the zone authorities, side by side: neither needs the other
    const caChild = start('ca', ['ca', 'serve', ...common, '--listen', '127.0.0.1:0']);
    const zones: Endpoints['zones'] = {};
    const devCredentials: Record<string, unknown> = {};
    const feedSecrets: Record<string, string> = {};
    const authorityChildren = Object.entries(topology.zones)
      .filter(([, z]) => z.authority !== undefined && authorityVerb)
      .map(([zone]) => ({
        zone,
        child: start(`authority-${zone}`, ['authority', ...common, '--zone', zone, ...(o.dev ? ['--dev'] : []), ...ephemeral('--listen')]),
      }));
    const [caReady, ...authorityReady] = await Promise.all([caChild.ready, ...authorityChildren.map((a) => a.child.ready)]);
    const caUrl = caReady.endpoints.ca;
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
    const joinToken = (name: string) => ({ GATEHOUSE_JOIN_TOKEN: createJoinToken({ stateDir, topology, service: name, ttlSeconds: 120 }).token });
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
        const args = [module, name, ...common, '--ca-url', caUrl, ...authorityArgs(name, s.zone)];
        const child = start(`service-${name}`, args, runService, joinToken(name));
        return (await child.ready).endpoints.service;
      }
      const app = start(`service-${name}`, [module, name, '--plain'], runService);
      const appUrl = (await app.ready).endpoints.service;
      const sidecar = start(`sidecar-${name}`, ['sidecar', '--service', name, '--upstream', appUrl, ...common, '--ca-url', caUrl], MAIN, joinToken(name));
      return (await sidecar.ready).endpoints.service;
    };
    const started = await Promise.all(
      Object.entries(topology.services)
        .filter(([, s]) => s.run !== undefined)
        .map(async ([name, s]) => ({ name, zone: s.zone, url: await startService(name, s) })),
    );
    for (const s of started) services[s.name] = { zone: s.zone, url: s.url };
    for (const [name, s] of Object.entries(topology.services))
      if (s.upstream !== undefined) services[name] = { zone: s.zone, url: s.upstream };
    writeAtomic(
      path.join(stateDir, 'services.json'),
      JSON.stringify({ services: Object.fromEntries(Object.entries(services).map(([n, s]) => [n, { upstream: s.url }])) }, null, 2),
      0o600,
    );

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
            ...ephemeral('--listen'),
            ...ephemeral('--admin-listen'),
            ...(z.gateway!.redirectListen ? ephemeral('--redirect-listen') : []),
          ],
          MAIN,
          feedEnv(zone),
        ),
      }));
    const gatewayReady = await Promise.all(gateways.map((g) => g.child.ready));
    gateways.forEach((g, i) => {
      const m = gatewayReady[i];
      zones[g.zone] = { ...zones[g.zone], gateway: m.endpoints.gateway, admin: m.endpoints.admin };
      if (m.endpoints.redirect) zones[g.zone].redirect = m.endpoints.redirect;
    });

    const endpoints: Endpoints = {
      trustDomain: topology.trustDomain,
      caBundle: path.join(stateDir, 'tls', 'dev-ca.pem'),
      ca: caUrl,
      zones,
      services,
    };
    if (o.dev && Object.keys(devCredentials).length > 0)
      writeAtomic(path.join(stateDir, 'dev-credentials.json'), JSON.stringify({ zones: devCredentials }, null, 2) + '\n', 0o600);
    writeAtomic(path.join(stateDir, 'endpoints.json'), JSON.stringify(endpoints, null, 2) + '\n', 0o644);
    return { endpoints, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
