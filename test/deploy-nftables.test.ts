// `gatehouse export nftables` for real: network namespaces play the hosts of
// a two-zone topology, each loads the ruleset the CLI exports for it, and
// every declared flow must connect while a sample of undeclared ones (wrong
// port, wrong peer, outbound to an address nobody declared, a service calling
// another zone's service directly) must not; monitoring and log aggregation
// (seed 000) are flows too: the declared scraper reaches the one admin
// listener the topology moves off loopback, every host reaches the log sink,
// and nothing else does. Needs root, ip and nft: skipped
// with the reason elsewhere, failed under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLab, netnsUnavailable, type Lab } from './support/netns.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');

const TOPOLOGY = `version: 1
trustDomain: net.test
zones:
  public:
    # metrics on the host address, for the scrapers of monitor: only
    gateway: { listen: 0.0.0.0:8443, admin: { listen: 0.0.0.0:9901 } }
    authority: { listen: 0.0.0.0:8444, scopes: [orders:read] }
    # the clients' network only
    ingress: { sources: [10.77.0.8/29] }
    routes:
      - { path: /api/catalog, service: catalog, auth: anonymous }
      - { path: /api/shop, service: bff, auth: jwt }
  private:
    gateway: { listen: 0.0.0.0:9443 }
    authority: { listen: 0.0.0.0:9444, scopes: [orders:read], trustedZones: [public] }
    # workloads whose egress names gateway:private only (the BFF)
    ingress: { clientCertificate: required }
    routes:
      - { path: /api/orders, service: orders, auth: jwt }
services:
  catalog:
    zone: public
    run: catalog.ts
    allow:
      - { caller: gateway, paths: [{ path: /api/catalog }] }
      - { caller: bff, paths: [{ path: /api/catalog }] }
  bff:
    zone: public
    run: bff.ts
    allow: [{ caller: gateway, paths: [{ path: /api/shop }] }]
    # orders is in another zone: without its gateway in between, not a flow
    egress: [catalog, 'gateway:private', '10.77.0.20:5432', orders]
  orders:
    zone: private
    run: orders.ts
    allow:
      - { caller: gateway, paths: [{ path: /api/orders }] }
      - { caller: bff, paths: [{ path: /api/orders }] }
monitor:
  scrapers: [10.77.0.40/32]
  logSinks: ['10.77.0.41:24224']
hosts:
  edge: { address: 10.77.0.2, runs: { 'gateway:public': null, 'authority:public': null } }
  app: { address: 10.77.0.3, runs: { catalog: 7001, bff: 7002 } }
  core: { address: 10.77.0.4, runs: { 'gateway:private': null, 'authority:private': null } }
  data: { address: 10.77.0.5, runs: { orders: 7003 } }
  infra: { address: 10.77.0.6, runs: { 'gatehouse:ca': 8600, 'gatehouse:control': 8700 } }
`;

const FIREWALLED = ['edge', 'app', 'core', 'data', 'infra'];
/** The hosts; client, stranger (outside the public ingress) and db (which bff may reach) are outside the topology, with no firewall. */
const HOSTS = [
  { name: 'edge', address: '10.77.0.2' },
  { name: 'app', address: '10.77.0.3' },
  { name: 'core', address: '10.77.0.4' },
  { name: 'data', address: '10.77.0.5' },
  { name: 'infra', address: '10.77.0.6' },
  { name: 'client', address: '10.77.0.9' },
  { name: 'stranger', address: '10.77.0.30' },
  { name: 'db', address: '10.77.0.20' },
  { name: 'prometheus', address: '10.77.0.40' },
  { name: 'logs', address: '10.77.0.41' },
];
const address = (host: string) => HOSTS.find((h) => h.name === host)!.address;

/** What listens where: every declared port, and undeclared ones so that a refusal is the firewall's, not a closed port's. */
const LISTEN: Record<string, number[]> = {
  edge: [8443, 8444, 9901, 22],
  app: [7001, 7002, 22],
  core: [9443, 9444, 22],
  data: [7003, 22],
  infra: [8600, 8700, 22],
  client: [443],
  stranger: [443],
  db: [5432, 5433],
  prometheus: [9090],
  logs: [24224, 514],
};

type Check = [from: string, to: string, port: number, why: string];

const DECLARED: Check[] = [
  ['client', 'edge', 8443, 'a client (public ingress sources) reaches the public gateway'],
  ['client', 'edge', 8444, 'a client (public ingress sources) signs in at the public authority'],
  ['edge', 'app', 7001, 'public gateway → catalog (route)'],
  ['edge', 'app', 7002, 'public gateway → bff (route)'],
  ['app', 'core', 9443, 'bff → private gateway (egress gateway:private)'],
  ['app', 'core', 9444, 'bff → private authority (token exchange)'],
  ['app', 'edge', 8444, 'catalog, bff → public authority'],
  ['app', 'db', 5432, 'bff → 10.77.0.20:5432 (egress)'],
  ['app', 'infra', 8600, 'services → CA'],
  ['app', 'infra', 8700, 'services → control plane'],
  ['core', 'data', 7003, 'private gateway → orders (route)'],
  ['core', 'edge', 8444, 'private authority → public authority (trustedZones)'],
  ['data', 'core', 9444, 'orders → its zone authority'],
  ['data', 'infra', 8600, 'orders → CA'],
  ['edge', 'infra', 8700, 'public gateway → control plane'],
  ['infra', 'infra', 8600, 'control plane → CA (same host)'],
  ['prometheus', 'edge', 9901, 'Prometheus scrapes the public gateway (monitor.scrapers, admin listener off loopback)'],
  ['edge', 'logs', 24224, 'the edge host ships its logs (monitor.logSinks)'],
  ['app', 'logs', 24224, 'the app host ships its logs'],
  ['data', 'logs', 24224, 'the data host ships its logs'],
  ['infra', 'logs', 24224, 'the infra host ships its logs'],
];

const UNDECLARED: Check[] = [
  ['stranger', 'edge', 8443, 'a client outside the public ingress sources'],
  ['client', 'core', 9443, 'a client to the private gateway (its ingress admits workload certificates only)'],
  ['client', 'core', 9444, 'a client to the private authority'],
  ['client', 'app', 7001, 'a client straight to a service (wrong peer: not the gateway)'],
  ['client', 'data', 7003, 'a client straight to a private service'],
  ['client', 'edge', 22, 'wrong port on the gateway host'],
  ['app', 'data', 7003, 'bff → orders directly (another zone, no gateway between; the mesh edge exists)'],
  ['edge', 'data', 7003, 'public gateway → private service'],
  ['core', 'app', 7001, 'private gateway → public service'],
  ['data', 'app', 7002, 'orders → bff (no egress)'],
  ['app', 'client', 443, 'outbound to an address nobody declared'],
  ['data', 'db', 5432, 'orders → the database (only bff declares it)'],
  ['app', 'db', 5433, 'bff → the database on another port'],
  ['app', 'infra', 22, 'wrong port on the CA host'],
  ['infra', 'app', 7001, 'the CA calls nobody'],
  ['client', 'edge', 9901, 'a client to the gateway admin listener (metrics, health, reload)'],
  ['stranger', 'edge', 9901, 'a stranger to the gateway admin listener'],
  ['prometheus', 'edge', 8443, 'the scraper to the gateway itself (it is no client of the zone)'],
  ['prometheus', 'app', 7001, 'the scraper to a service'],
  ['prometheus', 'core', 9443, 'the scraper to the private gateway (its admin stays on loopback)'],
  ['app', 'logs', 514, 'the log sink on another port'],
  ['app', 'prometheus', 9090, 'a host to the scraper'],
];

const unavailable = await netnsUnavailable();
const mustRun = process.env.CI === 'true';

test(
  'export nftables: in network namespaces, every declared flow connects and undeclared ones are refused',
  { skip: unavailable && !mustRun ? `${unavailable} (CI=true runs it and fails instead)` : false, timeout: 120_000 },
  async () => {
    assert.equal(unavailable, undefined, `CI=true: the netns test must run here, but ${unavailable}`);
    const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-nft-'));
    let lab: Lab | undefined;
    try {
      const config = path.join(dir, 'gatehouse.yaml');
      writeFileSync(config, TOPOLOGY);
      const rulesets = new Map<string, string>();
      for (const host of FIREWALLED) {
        const { stdout } = await run(process.execPath, [CLI, 'export', 'nftables', '--config', config, '--host', host]);
        rulesets.set(host, stdout);
      }
      lab = await createLab(HOSTS);
      for (const [host, ports] of Object.entries(LISTEN)) for (const port of ports) await lab.listen(host, port);
      for (const [host, ruleset] of rulesets) {
        const file = path.join(dir, `${host}.nft`);
        writeFileSync(file, ruleset);
        await lab.exec(host, 'nft', ['-f', file]);
      }
      // loading it again replaces the table (one transaction), it does not add to it
      await lab.exec('app', 'nft', ['-f', path.join(dir, 'app.nft')]);
      const listed = (await lab.exec('app', 'nft', ['list', 'table', 'inet', 'gatehouse'])).stdout;
      assert.equal(listed.match(/dport 7002 accept/g)?.length, 1, 'one rule per flow after a reload');
      assert.match(listed, /policy drop/);

      const probe = async ([from, to, port, why]: Check) => ({ from, to, port, why, result: await lab!.connect(from, address(to), port, 2_000) });
      const [declared, undeclared] = await Promise.all([Promise.all(DECLARED.map(probe)), Promise.all(UNDECLARED.map(probe))]);
      const table = [
        ...declared.map((c) => `allowed  ${c.result.ok ? 'connects' : `REFUSED (${c.result.error})`}  ${c.from} → ${c.to}:${c.port}  ${c.why}`),
        ...undeclared.map((c) => `refused  ${c.result.ok ? 'CONNECTS' : `refused (${c.result.error})`}  ${c.from} → ${c.to}:${c.port}  ${c.why}`),
      ];
      process.stdout.write(`# flow matrix\n${table.map((l) => `#   ${l}`).join('\n')}\n`);
      for (const c of declared) assert.ok(c.result.ok, `declared flow refused: ${c.from} → ${c.to}:${c.port} (${c.why}): ${c.result.error}`);
      for (const c of declared) assert.equal(c.result.peer, c.to, 'the answer came from the host asked');
      for (const c of undeclared) assert.ok(!c.result.ok, `undeclared flow connects: ${c.from} → ${c.to}:${c.port} (${c.why})`);
      // undeclared flows are dropped by the firewall, not refused by a closed port
      for (const c of undeclared) assert.equal(c.result.error, 'timeout', `${c.from} → ${c.to}:${c.port}`);
    } finally {
      await lab?.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
