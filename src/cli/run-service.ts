// Runs one `run:` service module of a topology in its own process (forked by
// `gatehouse up`):
//
//   run-service.ts <module> <service> --config F --state-dir D --ca-url URL
//   environment: GATEHOUSE_JOIN_TOKEN (one-time, from `gatehouse ca token`)
//
// Before the module starts, the process gets its own workload certificate:
// it bootstraps over the CA server with the join token (the key is made here
// and never leaves the process), then renews it automatically, and follows
// the CA's revocation list. The module exports
// `start({ host, port, service, topology, identity, revocations }) => { url, close }`.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { announceReady, closeOnSignals } from './ready.ts';
import { loadTopology } from '../topology/load.ts';
import type { Topology } from '../topology/schema.ts';
import {
  bootstrapIdentity,
  createIdentityManager,
  createRevocationFeed,
  trustBundlePath,
  type IdentityManager,
  type RevocationSource,
} from '../pki/index.ts';

export interface ServiceStartOptions {
  host: string;
  port: number;
  service: string;
  topology: Topology;
  /** This service's certificate, renewed before it expires (event `rotated`). */
  identity: IdentityManager;
  /** The CA's revocation list, kept fresh. */
  revocations: RevocationSource;
}

interface ServiceModule {
  start(o: ServiceStartOptions): Promise<{ url: string; close(): Promise<void> }>;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { config: { type: 'string' }, 'state-dir': { type: 'string' }, 'ca-url': { type: 'string' } },
});
const [modulePath, service] = positionals;
if (!modulePath || !service || !values.config || !values['state-dir'] || !values['ca-url'])
  throw new Error('usage: run-service <module> <service> --config F --state-dir D --ca-url URL (GATEHOUSE_JOIN_TOKEN set)');
const joinToken = process.env.GATEHOUSE_JOIN_TOKEN;
delete process.env.GATEHOUSE_JOIN_TOKEN;
if (!joinToken) throw new Error('GATEHOUSE_JOIN_TOKEN is not set');

const { topology } = loadTopology(values.config);
const stateDir = values['state-dir'];
const caUrl = values['ca-url'];
const trustDomain = topology.trustDomain;
const bundlePem = readFileSync(trustBundlePath(stateDir), 'utf8');

const first = await bootstrapIdentity({ caUrl, joinToken, service, trustDomain, bundlePem });
const identity = createIdentityManager({ initial: first, caUrl, trustDomain });
identity.on('alert', (a: { kind: string; spiffeId: string; notAfter: Date }) =>
  process.stderr.write(`gatehouse service ${service}: ALERT ${a.kind} ${a.spiffeId} (valid until ${a.notAfter.toISOString()})\n`),
);
identity.on('rotated', (next: { serial: string; notAfter: Date }) =>
  process.stderr.write(`gatehouse service ${service}: certificate renewed (serial ${next.serial}, valid until ${next.notAfter.toISOString()})\n`),
);
const revocations = createRevocationFeed({ caUrl, trustDomain, bundlePem });
await Promise.race([
  revocations.ready,
  new Promise((_, reject) => setTimeout(() => reject(new Error(`no revocation list from ${caUrl} within 15 s`)), 15_000).unref()),
]);

const mod = (await import(pathToFileURL(modulePath).href)) as ServiceModule;
if (typeof mod.start !== 'function') throw new Error(`${modulePath} does not export start()`);
const running = await mod.start({ host: '127.0.0.1', port: 0, service, topology, identity, revocations });
closeOnSignals(async () => {
  await running.close();
  identity.close();
  revocations.close();
});
announceReady({ component: 'service', service, endpoints: { service: running.url } });
