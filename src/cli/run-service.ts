// Runs one `run:` service module of a topology in its own process (forked by
// `gatehouse up`):
//
//   run-service.ts <module> <service> --config F --state-dir D --ca-url URL
//                  [--listen host:port] [--authority zone=issuer …] [--client zone=client_id …]
//     --listen: where the module serves mTLS (a pod's port: 0.0.0.0:8080);
//     absent: 127.0.0.1 on a port the system picks (gatehouse up)
//     environment: GATEHOUSE_JOIN_TOKEN (one-time, from `gatehouse ca token`)
//   run-service.ts <module> <service> --plain --state-dir D [--app-listen 127.0.0.1:P]
//     a plain-HTTP application on the Unix socket <D>/run/<service>/app.sock
//     (or the loopback port named), for `gatehouse sidecar` to front
//
// In mesh mode the process first gets its own workload certificate: it
// bootstraps over the CA server with the join token (the key is made here and
// never leaves the process), then renews it automatically and follows the
// CA's revocation list. The module's `start(options)` (ServiceStartOptions)
// then serves with createService — mTLS, allow edges — and must answer with
// an https URL; in plain mode it gets PlainStartOptions (its socket and the
// sidecar's secret file) and answers `unix:<socket>` (see src/mesh/service-module.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { announceReady, closeOnSignals } from './ready.ts';
import { loadTopology } from '../topology/load.ts';
import { createLogger } from '../shared/logger.ts';
import {
  bootstrapIdentity,
  createIdentityManager,
  createRevocationFeed,
  gatewaySpiffeId,
  trustBundlePath,
} from '../pki/index.ts';
import { zoneAudience } from '../authority/context.ts';
import {
  createAuthorityTokens,
  jwksFromFile,
  openMeshPolicy,
  resolveFromEndpoints,
  type ServiceStartOptions,
  type PlainStartOptions,
  type RunningServiceModule,
  sidecarPaths,
} from '../mesh/index.ts';
import { parseListen } from '../topology/schema.ts';
import { identityKeyPaths } from '../gateway/index.ts';

interface ServiceModule {
  start(o: ServiceStartOptions | PlainStartOptions): Promise<RunningServiceModule>;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string' },
    'state-dir': { type: 'string' },
    'ca-url': { type: 'string' },
    /** zone=issuer of each zone's authority */
    authority: { type: 'string', multiple: true, default: [] },
    /** zone=client_id: this service is a client of that zone's authority (tls_client_auth with its certificate) */
    client: { type: 'string', multiple: true, default: [] },
    plain: { type: 'boolean', default: false },
    /** plain mode: listen on this loopback host:port instead of the run folder's Unix socket */
    'app-listen': { type: 'string' },
    /** the control plane's bundles URL: edges and egress as this service's signed bundle says */
    control: { type: 'string' },
    /** mesh mode: where the module serves mTLS (host:port); absent: 127.0.0.1, a port the system picks */
    listen: { type: 'string' },
  },
});
const [modulePath, service] = positionals;
const usage =
  'usage: run-service <module> <service> (--config F --state-dir D --ca-url URL [--listen host:port], with GATEHOUSE_JOIN_TOKEN set | --plain --state-dir D [--app-listen 127.0.0.1:P])';
if (!modulePath || !service) throw new Error(usage);
const mod = (await import(pathToFileURL(modulePath).href)) as ServiceModule;
if (typeof mod.start !== 'function') throw new Error(`${modulePath} does not export start()`);

if (values.plain) {
  // The application listens on the Unix socket of its run folder (0600 in a
  // 0700 folder under the state dir), or on a loopback port only when
  // `--app-listen` says so; either way it is handed the sidecar's secret file.
  if (!values['state-dir']) throw new Error(usage);
  const paths = sidecarPaths(values['state-dir'], service);
  let host = '127.0.0.1';
  let port = 0;
  if (values['app-listen'] !== undefined) {
    const at = parseListen(values['app-listen']);
    if (typeof at === 'string' || !['127.0.0.1', '::1', 'localhost'].includes(at.host))
      throw new Error(`--app-listen: ${typeof at === 'string' ? at : `${at.host} is not loopback`} (an application behind a sidecar listens on loopback only)`);
    ({ host, port } = at);
  }
  const running = await mod.start({
    host,
    port,
    service,
    ...(values['app-listen'] === undefined ? { socketPath: paths.socket } : {}),
    sidecarSecretFile: paths.secretFile,
  });
  const expected = values['app-listen'] === undefined ? `unix:${paths.socket}` : undefined;
  if (expected !== undefined ? running.url !== expected : !/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(running.url))
    throw new Error(`${service}: a plain application answers on ${expected ?? 'http on loopback'} (listenForSidecar), not ${running.url}`);
  closeOnSignals(() => running.close());
  announceReady({ component: 'service', service, endpoints: { service: running.url } });
} else {
  if (!values.config || !values['state-dir'] || !values['ca-url']) throw new Error(usage);
  // checked before the join token is spent: a bad address must not cost the pod its one bootstrap
  const listen = values.listen === undefined ? { host: '127.0.0.1', port: 0 } : parseListen(values.listen);
  if (typeof listen === 'string') throw new Error(`--listen: ${listen}`);
  const joinToken = process.env.GATEHOUSE_JOIN_TOKEN;
  delete process.env.GATEHOUSE_JOIN_TOKEN;
  if (!joinToken) throw new Error('GATEHOUSE_JOIN_TOKEN is not set');

  const { topology } = loadTopology(values.config);
  const stateDir = path.resolve(values['state-dir']);
  const caUrl = values['ca-url'];
  const trustDomain = topology.trustDomain;
  const zone = topology.services[service]?.zone;
  if (!zone) throw new Error(`the topology has no service ${JSON.stringify(service)}`);
  const logger = createLogger({ name: `service-${service}` });
  const bundlePem = readFileSync(trustBundlePath(stateDir), 'utf8');

  const first = await bootstrapIdentity({ caUrl, joinToken, service, trustDomain, bundlePem });
  const identity = createIdentityManager({ initial: first, caUrl, trustDomain });
  identity.on('alert', (a: { kind: string; spiffeId: string; notAfter: Date }) =>
    logger.error({ event: 'security', kind: a.kind, spiffeId: a.spiffeId, notAfter: a.notAfter }, 'certificate not renewed'),
  );
  identity.on('rotated', (next: { serial: string; notAfter: Date }) =>
    logger.info({ serial: next.serial, notAfter: next.notAfter }, 'certificate renewed'),
  );
  const revocations = createRevocationFeed({ caUrl, trustDomain, bundlePem });
  await Promise.race([
    revocations.ready,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no revocation list from ${caUrl} within 15 s`)), 15_000).unref()),
  ]);

  const edgeCa = readFileSync(path.join(stateDir, 'tls', 'dev-ca.pem'), 'utf8');
  const pairs = (list: string[], what: string) =>
    new Map(
      list.map((v) => {
        const eq = v.indexOf('=');
        if (eq < 1) throw new Error(`--${what} takes zone=value, got ${JSON.stringify(v)}`);
        return [v.slice(0, eq), v.slice(eq + 1)] as const;
      }),
    );
  const clientIds = pairs(values.client, 'client');
  const authorities: ServiceStartOptions['authorities'] = {};
  for (const [z, issuer] of pairs(values.authority, 'authority')) {
    const config = topology.zones[z]?.authority;
    if (!config) throw new Error(`zone ${JSON.stringify(z)} has no authority`);
    const clientId = clientIds.get(z);
    authorities[z] = {
      issuer,
      audience: zoneAudience(trustDomain, z, config),
      ...(clientId
        ? { tokens: createAuthorityTokens({ issuer, clientId, auth: { method: 'tls_client_auth', identity }, ca: edgeCa }) }
        : {}),
    };
  }

  const policy = await openMeshPolicy({
    control: values.control,
    service,
    spiffeId: first.spiffeId,
    identity,
    trustDomain,
    bundlePem,
    stateDir,
    logger,
  });
  const running = await mod.start({
    host: listen.host,
    port: listen.port,
    service,
    topology,
    policy: policy?.source,
    events: policy?.events,
    identity,
    revocations,
    // the zone gateway's identity tokens, keys from the file it publishes in the state dir
    identityToken: { keys: jwksFromFile(identityKeyPaths(stateDir, zone).jwks), issuer: gatewaySpiffeId(trustDomain, zone), algorithms: ['EdDSA'] },
    resolve: resolveFromEndpoints(path.join(stateDir, 'endpoints.json')),
    edgeCa,
    authorities,
    logger,
  });
  if (new URL(running.url).protocol !== 'https:')
    throw new Error(`${service}: a mesh service answers on https (createService); for a plain application set \`sidecar: true\``);
  closeOnSignals(async () => {
    await running.close();
    await Promise.all(Object.values(authorities).map((a) => a.tokens?.close()));
    identity.close();
    revocations.close();
    await policy?.close();
  });
  announceReady({ component: 'service', service, endpoints: { service: running.url } });
}
