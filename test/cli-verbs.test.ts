// The CLI verbs people expect, without a running topology: version, routes,
// config show, init, and the one rule for which topology a verb reads
// (--config, else $GATEHOUSE_CONFIG, else ./gatehouse.yaml; never the example
// by surprise). `gatehouse token` needs `gatehouse up`: test/example/probe.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');
const example = path.join(root, 'examples/shop/gatehouse.yaml');

function run(args: string[], o: { cwd?: string; env?: Record<string, string> } = {}) {
  const env = { ...process.env, ...o.env };
  if (!o.env?.GATEHOUSE_CONFIG) delete env.GATEHOUSE_CONFIG;
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', cwd: o.cwd ?? root, env, timeout: 30_000 });
}

test('gatehouse version: Gatehouse, Node and OpenSSL versions', () => {
  const r = run(['version', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const v = JSON.parse(r.stdout);
  assert.equal(v.gatehouse, JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  assert.equal(v.node, process.versions.node);
  assert.equal(v.openssl, process.versions.openssl);
  assert.match(run(['version']).stdout, /^gatehouse \d+\.\d+\.\d+\nnode \d+\.\d+\.\d+\nopenssl /);
});

test('gatehouse routes --json: the compiled table in match order (exact before templates before prefixes, longest prefix first)', () => {
  const r = run(['routes', '--zone', 'public', '--config', example, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as Array<{ name: string; methods: string[]; path: string; match: string; service: string; auth: { accept: string[] }; policies: Record<string, unknown> }>;
  assert.deepEqual(
    rows.map((x) => [x.name, x.match]),
    [
      ['catalog', 'exact'],
      ['shop-orders', 'exact'],
      ['echo', 'prefix'],
    ],
  );
  for (const x of rows) assert.deepEqual(Object.keys(x).filter((k) => k !== 'hosts'), ['name', 'methods', 'path', 'match', 'service', 'auth', 'policies']);
  const catalog = rows[0];
  assert.deepEqual(catalog.methods, ['GET', 'HEAD']);
  assert.deepEqual(catalog.auth.accept, []);
  assert.ok(catalog.policies.rate_limit, 'the rate limit the route sets');
  // the partner zone's two prefixes: the longer first
  const partner = JSON.parse(run(['routes', '-z', 'partner', '-c', example, '--json']).stdout) as typeof rows;
  assert.deepEqual(partner.map((x) => [x.name, x.match, x.path]), [
    ['partner-catalog-oauth', 'prefix', '/api/partner/oauth/catalog'],
    ['partner-catalog', 'prefix', '/api/partner/catalog'],
  ]);
  assert.deepEqual(partner[1].auth.accept, ['api_key']);
  const priv = JSON.parse(run(['routes', '-z', 'private', '-c', example, '--json']).stdout) as typeof rows;
  assert.deepEqual(priv.map((x) => [x.name, x.match]), [
    ['orders-list', 'exact'],
    ['orders-create', 'exact'],
    ['orders-get', 'template'],
  ]);
  const text = run(['routes', '--zone', 'public', '--config', example]);
  assert.match(text.stdout, /^METHODS\s+HOSTS\s+PATH\s+MATCH\s+SERVICE\s+AUTH\s+POLICIES\s+NAME\n/);
  const typo = run(['routes', '--zone', 'publik', '--config', example]);
  assert.equal(typo.status, 2);
  assert.match(typo.stderr, /no zone "publik" \(did you mean public\?\)/);
});

test('gatehouse config show: the topology with every default filled in', () => {
  const r = run(['config', 'show', '--config', example, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const t = JSON.parse(r.stdout);
  assert.equal(t.zones.public.gateway.limits.maxHeaderBytes, 16384, 'a default the file does not set');
  assert.equal(t.zones.public.routes[0].name, 'catalog');
  const y = parse(run(['config', 'show', '--config', example]).stdout);
  assert.deepEqual(y, t);
});

test('--config, else $GATEHOUSE_CONFIG, else ./gatehouse.yaml; never the example for a management verb', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-cli-'));
  const missing = run(['validate'], { cwd: dir });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^gatehouse\.yaml:1:1: cannot read the file \(ENOENT\): give --config FILE, set GATEHOUSE_CONFIG, or write one with gatehouse init/);
  assert.match(run(['validate'], { cwd: dir, env: { GATEHOUSE_CONFIG: example } }).stdout, /ok \(trust domain shop\.local/);
  copyFileSync(example, path.join(dir, 'gatehouse.yaml'));
  assert.equal(run(['routes', '--zone', 'public', '--json'], { cwd: dir }).status, 0);
  const other = path.join(dir, 'other.yaml');
  writeFileSync(other, 'version: 1\ntrustDomain: other.local\nzones: { z: { routes: [] } }\n');
  assert.match(run(['config', 'show', '--json', '--config', other], { cwd: dir, env: { GATEHOUSE_CONFIG: example } }).stdout, /other\.local/, '--config wins over the variable');
  for (const verb of [['ca', 'issue'], ['keys', 'rotate'], ['clients', 'list'], ['users', 'list'], ['sidecar'], ['gateway'], ['authority'], ['routes'], ['config', 'show']]) {
    const help = run([...verb, '--help']).stdout;
    assert.match(help, /--config <file>\s+topology file; absent:\s+\$GATEHOUSE_CONFIG, else\s+\.\/gatehouse\.yaml/, `${verb.join(' ')} --help`);
    assert.doesNotMatch(help, /examples\/shop/, `${verb.join(' ')} never defaults to the example`);
  }
});

test('gatehouse init: a topology that validates; names that would break YAML are refused with the reason', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-init-'));
  const out = path.join(dir, 'gatehouse.yaml');
  const r = run(['init', '--service', 'shop-api', '--upstream', 'http://127.0.0.1:3000', '--scope', 'orders:read,orders:write', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /gatehouse up --config .*gatehouse\.yaml/);
  assert.match(run(['validate', out]).stdout, /ok \(trust domain example\.local; 1 zone\(s\): public; 1 service\(s\); 1 route\(s\)\)/);
  const routes = JSON.parse(run(['routes', '--zone', 'public', '--config', out, '--json']).stdout);
  assert.deepEqual(routes[0].auth, { accept: ['jwt'], scopes: 'orders:read orders:write' });
  assert.equal(run(['init', '--service', 'shop-api', '--upstream', 'http://127.0.0.1:3000', '--out', out]).status, 2, 'an existing file is kept');
  const sidecar = path.join(dir, 'web.yaml');
  assert.equal(run(['init', '-n', 'web', '--run', 'web.ts', '--sidecar', '--auth', 'anonymous', '-o', sidecar]).status, 0);
  assert.match(run(['validate', sidecar]).stdout, /ok/);
  const refused: Array<[string[], RegExp]> = [
    [['--service', 'a: b'], /service "a: b": lowercase letters/],
    [['--service', 'x\n  evil: 1'], /service "x\\n  evil: 1"/],
    [['--service', 'ok', '--zone', '#z'], /zone "#z"/],
    [['--service', 'ok', '--trust-domain', 'a b'], /trust domain "a b"/],
    [['--service', 'ok', '--path', "/a'b/../c"], /path "\/a'b\/..\/c"/],
    [['--service', 'ok', '--scope', 'a"b'], /scope "a\\"b"/],
    [['--service', 'ok', '--auth', 'anonymus'], /auth "anonymus": one of anonymous, jwt/],
  ];
  for (const [args, reason] of refused) {
    const x = run(['init', ...(args.includes('--upstream') ? [] : ['--upstream', 'http://127.0.0.1:3000']), ...args, '--out', path.join(dir, 'refused.yaml')]);
    assert.equal(x.status, 2, args.join(' '));
    assert.match(x.stderr, reason);
  }
  assert.match(run(['init', '--upstream', 'http://127.0.0.1:3000', '--out', path.join(dir, 'n.yaml')]).stderr, /--service is required/);
});
