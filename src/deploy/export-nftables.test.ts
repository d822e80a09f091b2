import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, loadTopology } from '../topology/index.ts';
import { exportNftables } from './export-nftables.ts';
import { cidrHasHostBits } from './flows.ts';

const BASE = `version: 1
trustDomain: net.test
zones:
  public:
    gateway: { listen: 0.0.0.0:8443 }
    routes:
      - { path: /api/catalog, service: catalog, auth: anonymous }
services:
  catalog:
    zone: public
    run: catalog.ts
    allow: [{ caller: gateway, paths: [{ path: /api/catalog }] }]
    egress: [EGRESS]
hosts:
  edge: { address: 10.0.0.2, runs: { 'gateway:public': null } }
  app: { address: 10.0.0.3, LOOPBACKruns: { catalog: 7001 } }
  infra: { address: 10.0.0.6, runs: { 'gatehouse:ca': 8600, 'gatehouse:control': 8700 } }
`;

function withFile<T>(text: string, fn: (file: string) => T, name = 'gatehouse.yaml'): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-nft-unit-'));
  try {
    const file = path.join(dir, name);
    writeFileSync(file, text);
    return fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const topology = (o: { egress?: string; loopback?: boolean; replace?: [string, string] } = {}) => {
  let text = BASE.replace('[EGRESS]', `[${o.egress ?? "'10.0.0.20:5432'"}]`).replace('LOOPBACK', o.loopback === false ? 'loopback: false, ' : '');
  if (o.replace) text = text.replace(o.replace[0], o.replace[1]);
  return text;
};

/** The ConfigError an export throws, as `line: message` lines. */
function refusal(text: string, host = 'app'): string[] {
  return withFile(text, (file) => {
    try {
      exportNftables(loadTopology(file), host);
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      return error.issues.map((i) => `${i.line}: ${i.message}`);
    }
    assert.fail('the export was not refused');
  });
}

test('a host gets default drop both ways and exactly its flows, each with its topology line', () => {
  const rules = withFile(topology(), (file) => exportNftables(loadTopology(file), 'app'));
  assert.match(rules, /chain input \{\n\t\ttype filter hook input priority filter; policy drop;/);
  assert.match(rules, /chain output \{\n\t\ttype filter hook output priority filter; policy drop;/);
  const accepts = rules.split('\n').filter((l) => l.endsWith(' accept') && !/ct state|lo"|icmpv6/.test(l)).map((l) => l.trim());
  assert.deepEqual(accepts, [
    'ip saddr 10.0.0.2 ip daddr 10.0.0.3 tcp dport 7001 accept',
    'ip daddr 10.0.0.20 tcp dport 5432 accept',
    'ip daddr 10.0.0.6 tcp dport 8600 accept',
    'ip daddr 10.0.0.6 tcp dport 8700 accept',
  ]);
  assert.match(rules, /# the public gateway routes to catalog: zones\.public\.routes\[0\]\.service \(gatehouse\.yaml:7\)\n\t\tip saddr 10\.0\.0\.2/);
  assert.match(rules, /iif "lo" accept/);
});

test('the same topology exports the same bytes, wherever the file is', () => {
  const a = withFile(topology(), (file) => exportNftables(loadTopology(file), 'edge'));
  const b = withFile(topology(), (file) => exportNftables(loadTopology(file), 'edge'));
  assert.equal(a, b);
});

test('loopback: false drops the blanket loopback accept', () => {
  const rules = withFile(topology({ loopback: false }), (file) => exportNftables(loadTopology(file), 'app'));
  assert.doesNotMatch(rules, /"lo"/);
});

test('topologies that cannot be expressed safely are refused with their line, never a permissive rule', () => {
  assert.deepEqual(refusal(topology(), 'nope'), ['15: no host named "nope" (hosts: edge, app, infra)']);
  assert.deepEqual(refusal(topology({ egress: "'db.internal:5432'" })), [
    '13: db.internal is a name: network rules match addresses, so an outside endpoint needs its IP address (a name would have to allow whatever it resolves to)',
  ]);
  // two services on one port of one host
  const twoOnOnePort = topology({ replace: ["runs: { catalog: 7001 }", "runs: { catalog: 7001, other: 7001 }"] }).replace(
    'hosts:',
    'other: { zone: public, run: other.ts }\nhosts:',
  ).replace('other: { zone', '  other: { zone');
  assert.deepEqual(refusal(twoOnOnePort), ["17: port 7001 of host app is already catalog's"]);
  assert.deepEqual(refusal(topology({ replace: ['catalog: 7001', 'catalgo: 7001'] })), [
    '16: unknown component "catalgo" (components: gatehouse:ca, gatehouse:control, gateway:public, catalog)',
  ]);
  // catalog placed nowhere: the gateway's flow to it has no host
  assert.deepEqual(refusal(topology({ replace: ['catalog: 7001', ''] }), 'edge'), [
    '7: a flow to catalog, which no host runs: place it in a host\'s runs',
  ]);
  assert.deepEqual(refusal(topology({ replace: ["'gateway:public': null", "'gateway:public': 9999"] }), 'edge'), [
    '15: gateway:public listens on port 8443 in the topology (zones.public.gateway); write null or 8443',
  ]);
  // an ingress wider than /8 (the loader refuses it at its line)
  assert.deepEqual(refusal(topology({ replace: ['    routes:\n', '    ingress: { sources: [8.0.0.0/7] }\n    routes:\n'] })), [
    '6: 8.0.0.0/7 is wider than /8: an ingress that admits this much is not locked; list the networks that need it',
  ]);
  // a listener on loopback that other machines are meant to reach
  assert.deepEqual(refusal(topology({ replace: ['0.0.0.0:8443', '127.0.0.1:8443'] }), 'edge'), [
    '5: gateway:public listens on 127.0.0.1, which other machines cannot reach (clients of zone public reach its gateway): listen on 0.0.0.0 or 10.0.0.2',
  ]);
  // a service the gateway reaches at one address, placed on a host at another
  assert.deepEqual(refusal(topology({ replace: ['run: catalog.ts', 'upstream: https://10.0.0.9:7001'] }).replace('catalog: 7001', 'catalog: null')), [
    '16: catalog is reached at 10.0.0.9 (services.catalog.upstream), but host app is 10.0.0.3',
  ]);
  assert.deepEqual(refusal(topology({ replace: ["'gatehouse:ca': 8600", "'gatehouse:ca': null"] }), 'infra'), [
    '17: gatehouse:ca has no fixed port in the topology: give the port it listens on here',
  ]);
});

test('hostile names never reach a ruleset: the loader refuses them at their line', () => {
  for (const [from, to] of [
    ['app: {', '"ap\\"p": {'], // a quote
    ['app: {', '"app\\n table inet x": {'], // a newline
    ['app: {', 'аpp: {'], // Cyrillic а, a look-alike
    ['  catalog:\n', '  "catalog\\"; accept":\n'],
  ]) {
    assert.throws(
      () => withFile(topology({ replace: [from, to] }), (file) => exportNftables(loadTopology(file), 'app')),
      (error: unknown) => error instanceof ConfigError && error.issues.every((i) => i.line > 1),
      to,
    );
  }
});

test('a hostile file name is escaped in the comments: the ruleset stays one rule per line and loads', () => {
  const name = 'gate"house\n} table inet evil { chain c {\u202e.yaml';
  const rules = withFile(topology(), (file) => exportNftables(loadTopology(file), 'app'), name);
  assert.match(rules, /gate"house\\u\{a\}\} table inet evil/);
  for (const line of rules.split('\n'))
    assert.match(line, /^(#.*|\t*#.*|table inet gatehouse( \{)?|delete table inet gatehouse|\t*\}|\tchain (input|output) \{|\t\t[a-z0-9 ,.:"{}-]+;?[a-z ;]*|)$/, line);
  assert.doesNotMatch(rules, /[^\x09\x0a\x20-\x7e]/, 'ASCII only');
  if (process.getuid?.() === 0 && hasNft()) execFileSync('nft', ['-c', '-f', '-'], { input: rules });
});

test('cidrHasHostBits: bits past the prefix are ambiguous', () => {
  assert.equal(cidrHasHostBits('10.0.0.0/8'), false);
  assert.equal(cidrHasHostBits('10.1.2.3'), false);
  assert.equal(cidrHasHostBits('2001:db8::/32'), false);
  assert.equal(cidrHasHostBits('::ffff:10.0.0.0/104'), false);
  assert.equal(cidrHasHostBits('10.0.0.1/8'), true);
  assert.equal(cidrHasHostBits('10.0.0.128/25'), false);
  assert.equal(cidrHasHostBits('10.0.0.129/25'), true);
  assert.equal(cidrHasHostBits('2001:db8::1/64'), true);
});

function hasNft(): boolean {
  try {
    execFileSync('nft', ['--version']);
    return true;
  } catch {
    return false;
  }
}

test('monitoring: an admin listener off loopback is reached by the declared scrapers only; every host reaches the log sinks', () => {
  const text = topology({ replace: ['gateway: { listen: 0.0.0.0:8443 }', 'gateway: { listen: 0.0.0.0:8443, admin: { listen: 0.0.0.0:9901 } }'] }) +
    "monitor: { scrapers: [10.0.9.0/24], logSinks: ['10.0.9.20:24224', '[fd00::20]:514'] }\n";
  const edge = withFile(text, (file) => exportNftables(loadTopology(file), 'edge'));
  assert.match(edge, /# Prometheus scrapes the public gateway's metrics: monitor\.scrapers\[0\] \(gatehouse\.yaml:\d+\)\n\t\tip saddr 10\.0\.9\.0\/24 ip daddr 10\.0\.0\.2 tcp dport 9901 accept/);
  assert.equal(edge.match(/dport 9901/g)?.length, 1, 'the scrapers only');
  for (const host of ['edge', 'app', 'infra']) {
    const rules = withFile(text, (file) => exportNftables(loadTopology(file), host));
    // one rule per sink, however many components the host runs
    assert.equal(rules.match(/ip daddr 10\.0\.9\.20 tcp dport 24224 accept/g)?.length, 1, host);
    assert.equal(rules.match(/ip6 daddr fd00::20 tcp dport 514 accept/g)?.length, 1, host);
    assert.match(rules, /# the host ships its logs to 10\.0\.9\.20:24224: monitor\.logSinks\[0\]/);
  }
  // on loopback (the default), nobody reaches it and nothing is declared
  const plain = withFile(topology() + 'monitor: { scrapers: [10.0.9.0/24] }\n', (file) => exportNftables(loadTopology(file), 'edge'));
  assert.doesNotMatch(plain, /9901|scrapes/);
});

test('monitoring that cannot be locked is refused: an admin listener off loopback nobody may scrape, or on port 0; a scraper network wider than /8', () => {
  const off = (listen: string) => ['gateway: { listen: 0.0.0.0:8443 }', `gateway: { listen: 0.0.0.0:8443, admin: { listen: '${listen}' } }`] as [string, string];
  assert.deepEqual(refusal(topology({ replace: off('0.0.0.0:9901') }), 'edge'), [
    "5: the public gateway's admin listener (metrics, health, reload) is off loopback, but monitor.scrapers names nobody who may reach it: list your Prometheus networks there, or keep it on 127.0.0.1",
  ]);
  assert.deepEqual(refusal(topology({ replace: off('0.0.0.0:0') }) + 'monitor: { scrapers: [10.0.9.0/24] }\n', 'edge'), [
    "5: the public gateway's admin listener is off loopback on port 0: give it a fixed port, which the scrapers' rules name",
  ]);
  const wide = refusal(topology({ replace: off('0.0.0.0:9901') }) + 'monitor: { scrapers: [10.0.0.0/7] }\n', 'edge');
  assert.equal(wide.length, 1);
  assert.match(wide[0], /^\d+: 10\.0\.0\.0\/7 is wider than \/8/);
  // a sink must be an address and a port (the loader says so at its line)
  assert.throws(() => withFile(topology() + "monitor: { logSinks: ['logs.internal:514'] }\n", (file) => loadTopology(file)), /a log sink is an IP address and a port/);
});

test('the vault runs on the CA\'s host (it shares its state dir): its grantees reach it there, nobody else', () => {
  const withVault = topology({ replace: ['hosts:', `vault:\n  listen: 0.0.0.0:9450\n  keys:\n    pii: { encrypt: [catalog], decrypt: [catalog] }\nhosts:`] });
  const rules = (host: string) => withFile(withVault, (file) => exportNftables(loadTopology(file), host));
  assert.match(rules('infra'), /# catalog encrypts or tokenizes with the vault: vault\.keys\.pii\.encrypt\[0\] \(gatehouse\.yaml:\d+\)\n\t\tip saddr 10\.0\.0\.3 ip daddr 10\.0\.0\.6 tcp dport 9450 accept/);
  assert.match(rules('app'), /vault: vault\.keys\.pii\.encrypt\[0\] \(gatehouse\.yaml:\d+\)\n\t\tip daddr 10\.0\.0\.6 tcp dport 9450 accept/);
  assert.doesNotMatch(rules('edge'), /9450/);
  assert.match(rules('infra'), /# Runs: gatehouse:ca, gatehouse:control, gatehouse:vault\./);
  assert.deepEqual(
    refusal(withVault.replace('listen: 0.0.0.0:9450', 'listen: 0.0.0.0:8600'), 'infra').filter((l) => l.includes('vault')),
    [`${withVault.split('\n').findIndex((l) => l.startsWith('vault:')) + 2}: the vault runs on host infra beside the CA, where port 8600 is already gatehouse:ca's`],
  );
});
