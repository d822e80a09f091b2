// The gatehouse command as a user runs it: validate, gateway with workers,
// `up --no-dev` refusing without a feed secret, API keys. (`up` on the
// example: test/example/up.ts, in the shared example run.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, statSync, existsSync, readdirSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startUpstream, tempDir } from './support/gateway-fixture.ts';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');
const example = path.join(root, 'examples/shop/gatehouse.yaml');

function run(args: string[]) {
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', cwd: root, timeout: 30_000 });
}

/** Start a long-running verb; resolves when `marker` appears on stdout or stderr. */
function start(args: string[], marker: RegExp): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [main, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${marker}:\n${output}`)), 60_000);
    const on = (d: Buffer) => {
      output += d;
      if (marker.test(output)) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ${marker}:\n${output}`));
    });
  });
}

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

test('validate: ok for the example, exit 2 with positioned errors for a bad file', () => {
  const good = run(['validate', example]);
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /ok \(trust domain shop\.local; 5 zone\(s\): public, private, partner, internal, corp/);
  const dir = tempDir();
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, readFileSync(example, 'utf8').replace('    routes:\n', '    routez:\n'));
  const result = run(['validate', bad]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /bad\.yaml:\d+:5: zones\.public\.routez: unknown key "routez" \(did you mean "routes"\?\)/);
  assert.match(result.stderr, /gatehouse: invalid configuration \(1 problem\)/);
  assert.doesNotMatch(result.stderr, /at .*\.ts:\d+/, 'no stack trace');
});

test('validate compiles the contracts the topology names: a broken OpenAPI document is reported with its own line', () => {
  const dir = tempDir();
  const copy = path.join(dir, 'gatehouse.yaml');
  writeFileSync(copy, readFileSync(example, 'utf8'));
  mkdirSync(path.join(dir, 'openapi'));
  const doc = readFileSync(path.join(path.dirname(example), 'openapi', 'orders.yaml'), 'utf8');
  writeFileSync(path.join(dir, 'openapi', 'orders.yaml'), doc.replace('minimum: 1, maximum: 1000', 'minimum: one, maximum: 1000'));
  const result = run(['validate', copy]);
  assert.equal(result.status, 2, result.stdout);
  assert.match(result.stderr, /openapi\/orders\.yaml:\d+:\d+: components\.schemas\.Line: the schema is invalid: Line\/properties\/quantity\/minimum must be number\ngatehouse: invalid configuration \(1 problem\)/, 'once, though three routes use it');
  // the same document fine, a route naming an operation it lacks
  writeFileSync(path.join(dir, 'openapi', 'orders.yaml'), doc.replace(/\n  \/api\/orders\/\{id\}:[\s\S]*?(?=\ncomponents:)/, ''));
  const missing = run(['validate', copy]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /gatehouse\.yaml:\d+:\d+: zones\.private\.routes\[1\]\.validate\.openapi: openapi\/orders\.yaml describes no get operation at \/api\/orders\/\{id\}/);
});

test('every verb has --help', () => {
  for (const verb of ['up', 'gateway', 'validate']) {
    const r = run([verb, '--help']);
    assert.equal(r.status, 0, verb);
    assert.match(r.stdout, new RegExp(`Usage: gatehouse ${verb}`));
  }
});

test('gateway --workers 2: serves, metrics are aggregated across workers, SIGHUP reloads, SIGTERM stops', async () => {
  const upstream = await startUpstream();
  const dir = tempDir();
  const file = path.join(dir, 'g.yaml');
  const yaml = (extra: string) => `version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    routes:
      - { path: /a, service: s, auth: anonymous }${extra}
services:
  s: { zone: edge, upstream: '${upstream.url}' }
`;
  writeFileSync(file, yaml(''));
  const { child, output } = await start(['gateway', '--config', file, '--zone', 'edge', '--state-dir', dir, '--workers', '2'], /ready: gateway (\S+), admin (\S+)/);
  const [, url, admin] = /ready: gateway (\S+), admin (\S+)/.exec(output())!;
  const agent = new Agent({ connect: { ca: readFileSync(path.join(dir, 'tls/dev-ca.pem')) }, pipelining: 0, allowH2: false });
  try {
    for (let i = 0; i < 20; i++) {
      const r = await request(url + '/a', { dispatcher: agent, reset: true });
      assert.equal(r.statusCode, 200);
      await r.body.dump();
    }
    const metrics = await (await fetch(admin + '/metrics')).text();
    assert.match(metrics, /gatehouse_gateway_requests_total\{route="a",method="GET",status_class="2xx",zone="edge"\} 20/);
    writeFileSync(file, yaml('\n      - { path: /b, service: s, auth: anonymous }'));
    child.kill('SIGHUP');
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await request(url + '/b', { dispatcher: agent, reset: true });
      status = r.statusCode;
      await r.body.dump();
    }
    assert.equal(status, 200, 'the new route serves after SIGHUP');
    writeFileSync(file, yaml('\n      - { path: /c, service: nope, auth: anonymous }'));
    const refused = await fetch(admin + '/reload', { method: 'POST' });
    assert.equal(refused.status, 422);
    assert.match(((await refused.json()) as { detail: string }).detail, /routes\[1\]\.service: unknown service "nope"/);
  } finally {
    await agent.close();
    assert.equal(await stop(child), 0);
    await upstream.close();
  }
});

test('up --no-dev: without the secret of a revocation-feed client it refuses to start and says what to do', () => {
  const dir = tempDir('gh-up-nodev-');
  const env = { ...process.env };
  delete env.GATEHOUSE_PUBLIC_FEED_SECRET;
  delete env.GATEHOUSE_PRIVATE_FEED_SECRET;
  const r = spawnSync(process.execPath, [main, 'up', '--no-dev', '--ephemeral-ports', '--state-dir', dir], { encoding: 'utf8', cwd: root, timeout: 30_000, env });
  assert.equal(r.status, 1, r.stderr);
  for (const zone of ['public', 'private']) {
    assert.match(r.stderr, new RegExp(`zone ${zone}: .*GATEHOUSE_${zone.toUpperCase()}_FEED_SECRET is not set`));
    assert.match(r.stderr, new RegExp(`gatehouse clients add .*--zone ${zone} --id gateway-${zone} --revocation-feed`));
  }
  assert.ok(!existsSync(path.join(dir, 'logs')), 'nothing was started');
});

test('keys api add | list | revoke: the key is printed once, only its prefix is listed', () => {
  const dir = tempDir('gh-keys-');
  const add = run(['keys', 'api', 'add', '--zone', 'public', '--consumer', 'acme', '--scopes', 'orders:read,catalog:read', '--tier', 'gold', '--state-dir', dir, '--config', example]);
  assert.equal(add.status, 0, add.stderr);
  const created = JSON.parse(add.stdout.slice(0, add.stdout.lastIndexOf('}') + 1));
  assert.match(created.key, /^gh_[a-z0-9]{8}_[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(created.scopes, ['orders:read', 'catalog:read']);
  const list = run(['keys', 'api', 'list', '--zone', 'public', '--state-dir', dir, '--config', example]);
  assert.equal(list.status, 0, list.stderr);
  // the secret part is everything after gh_<prefix>_ (base64url: it may itself contain '_')
  const secret = created.key.slice(created.key.indexOf('_', 3) + 1);
  assert.equal(secret.length, 43);
  assert.ok(!list.stdout.includes(secret), 'the secret part is never listed');
  assert.equal(JSON.parse(list.stdout)[0].prefix, created.prefix);
  // the hashes are for the owner only
  for (const f of readdirSync(path.join(dir, 'gateway', 'public')).filter((n) => n.startsWith('api-keys.db')))
    assert.equal(statSync(path.join(dir, 'gateway', 'public', f)).mode & 0o777, 0o600, f);
  assert.equal(run(['keys', 'api', 'revoke', '--zone', 'public', '--prefix', created.prefix, '--state-dir', dir, '--config', example]).status, 0);
  const again = run(['keys', 'api', 'revoke', '--zone', 'public', '--prefix', created.prefix, '--state-dir', dir, '--config', example]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /no active key with prefix/);
  // a --zone the topology gives no gateway is a usage error (DESIGN.md: exit 2), named as such
  const noGateway = run(['keys', 'api', 'add', '--zone', 'nowhere', '--consumer', 'x', '--state-dir', dir, '--config', example]);
  assert.equal(noGateway.status, 2);
  assert.match(noGateway.stderr, /^gatehouse keys: zone "nowhere" has no gateway/m);
});
