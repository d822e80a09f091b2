// `gatehouse probe` against the example as `gatehouse up` runs it, the way CI
// runs it: no high finding, exit 0, every check family reaching both gateways
// (the private one behind mTLS, with a workload certificate of the BFF, as a
// compromised workload would). The medium findings it makes today are listed
// in KNOWN with their cause; one that goes away must be removed from it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { upExample, certificateFor, type RunningExample } from './support/example-up.ts';
import type { ProbeReport, CheckResult } from '../src/audit/probe/index.ts';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');
const example = path.join(root, 'examples/shop/gatehouse.yaml');

let ex: RunningExample;
let certArgs: string[];

before(async () => {
  ex = await upExample();
  const id = await certificateFor(ex.stateDir, 'spiffe://shop.local/zone/public/svc/bff');
  writeFileSync(path.join(ex.stateDir, 'probe-cert.pem'), id.certPem);
  writeFileSync(path.join(ex.stateDir, 'probe-key.pem'), id.keyPem, { mode: 0o600 });
  certArgs = ['--cert', path.join(ex.stateDir, 'probe-cert.pem'), '--key', path.join(ex.stateDir, 'probe-key.pem')];
});

after(async () => {
  await ex?.stop();
});

function probe(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, 'probe', '--endpoints', path.join(ex.stateDir, 'endpoints.json'), '--config', example, ...args], { cwd: root });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Findings on the example today, each a product issue outside the probe:
 * - over HTTP/2 a header value with CR LF is dropped by nghttp2 before the gateway sees the
 *   request, so the gateway answers instead of refusing it (RFC 9113 §8.2.1: malformed, refuse);
 *   nothing reaches the upstream, hence medium.
 * (Fixed since: the CA, control plane, mesh services and authorities now use the gateways' cipher
 * list; endpoints.json declares the control plane's admin listener.)
 */
function known(r: CheckResult): boolean {
  if (r.id === 'h2.desync.crlf-header') return r.severity === 'medium' && /dropped, not passed on/.test(r.observed);
  return false;
}

test('the example: no finding beyond the known ones, no high one, exit 0; every family reached both gateways', async () => {
  const { code, stdout, stderr } = await probe([...certArgs, '--format', 'json']);
  const report = JSON.parse(stdout) as ProbeReport;
  const text = report.results.map((r) => `${r.status} ${r.id} ${r.target}: ${r.observed}`).join('\n');
  assert.equal(code, 0, `${stderr}\n${text}`);
  assert.equal(report.summary.high, 0, text);
  assert.deepEqual(report.results.filter((r) => r.status === 'fail' && !known(r)).map((r) => `${r.id} ${r.target}: ${r.observed}`), []);
  assert.deepEqual(report.results.filter((r) => r.status === 'error').map((r) => `${r.id} ${r.target}: ${r.observed}`), []);
  // only what the example cannot show is skipped: no echo route and no anonymous rate-limited route in the private zone
  assert.deepEqual(
    report.results.filter((r) => r.status === 'skip').map((r) => `${r.id} ${r.target.split(' ')[0]}`).sort(),
    ['h2.header-spoofing private', 'headers.spoofing private', 'ratelimit.spoofed-forwarding private'],
  );
  for (const zone of ['public', 'private'])
    for (const id of ['h1.smuggling.cl-te', 'path.auth-bypass', 'h2.path-normalisation', 'token.alg-none', 'token.key-confusion', 'token.other-zone', 'ws.unauthenticated', 'tls.certificate'])
      assert.ok(report.results.some((r) => r.id === id && r.target.startsWith(`${zone} `) && r.status === 'pass'), `${id} passed at the ${zone} gateway`);
  assert.ok(report.results.some((r) => r.id === 'gateway.client-certificate' && r.status === 'pass' && r.target.startsWith('private ')));
  assert.ok(report.requests < 2_000 && report.durationMs < 120_000);
});

test('without a workload certificate the private gateway is reported as refusing at TLS, and the checks behind it as skipped', async () => {
  const { code, stdout } = await probe(['--only', 'paths', '--format', 'json']);
  assert.equal(code, 0);
  const report = JSON.parse(stdout) as ProbeReport;
  assert.ok(report.results.some((r) => r.id === 'gateway.client-certificate' && r.status === 'pass'));
  assert.ok(report.results.some((r) => r.id === 'gateway.behind-mtls' && r.status === 'skip'));
  assert.ok(!report.results.some((r) => r.id.startsWith('path.') && r.target.startsWith('private ')));
});

test('sarif, junit and text from the CLI', async () => {
  const sarif = await probe([...certArgs, '--only', 'tls', '--format', 'sarif']);
  const doc = JSON.parse(sarif.stdout);
  assert.equal(doc.version, '2.1.0');
  assert.ok(doc.runs[0].results.every((r: { ruleId: string }) => r.ruleId === 'tls.weak-cipher'));
  const junit = await probe([...certArgs, '--only', 'h1-framing', '--format', 'junit']);
  assert.match(junit.stdout, /^<\?xml version="1.0"/);
  assert.match(junit.stdout, /<testsuite name="h1" tests="16" failures="0" errors="0" skipped="0">/);
  const text = await probe([...certArgs, '--only', 'websocket']);
  assert.match(text.stdout, /^gatehouse probe: \d+ checks/);
  assert.match(text.stdout, /0 findings \(0 high, 0 medium, 0 low\)/);
});

test('usage errors exit 2 with the reason', async () => {
  const bad = await probe(['--format', 'xml']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--format must be one of text, json, sarif, junit/);
  const only = await probe(['--only', 'nope']);
  assert.equal(only.code, 2);
  assert.match(only.stderr, /unknown check family nope/);
  const half = await probe(['--cert', 'x.pem']);
  assert.equal(half.code, 2);
  const missing = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [main, 'probe', '--state-dir', path.join(ex.stateDir, 'nowhere')], { cwd: root });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stderr }));
  });
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /no endpoints file at .*nowhere\/endpoints.json/);
});

function gatehouse(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [main, ...args], { cwd: root });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const claims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>;

// gatehouse token needs a running topology in dev mode: it shares this file's `gatehouse up`
test('gatehouse token: a client token and a signed-in user token that the gateway accepts; dev mode only', async () => {
  const client = await gatehouse(['token', '--zone', 'public', '--state-dir', ex.stateDir, '--scope', 'catalog:read']);
  assert.equal(client.code, 0, client.stderr);
  const t = client.stdout.trim();
  assert.equal(claims(t).scope, 'catalog:read');
  const echo = `${ex.endpoints.zones.public.gateway}/api/echo/x`;
  const { request } = await import('undici');
  const res = await request(echo, { dispatcher: ex.edge, headers: { authorization: `Bearer ${t}` } });
  assert.equal(res.statusCode, 200);
  await res.body.dump();
  const user = await gatehouse(['token', '-z', 'public', '--state-dir', ex.stateDir, '--user', ex.credentials.zones.public.users[0].username, '-s', 'orders:read', '--json']);
  assert.equal(user.code, 0, user.stderr);
  const u = claims((JSON.parse(user.stdout) as { access_token: string }).access_token);
  assert.notEqual(u.sub, u.client_id, 'the subject is the user, not the client');
  assert.deepEqual(String(u.scope).split(' ').sort(), ['openid', 'orders:read'], 'the scopes asked for (and openid, for signing in)');
  const refused = await gatehouse(['token', '--zone', 'public', '--state-dir', ex.stateDir, '--scope', 'admin']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /may not have admin/);
  const typo = await gatehouse(['token', '--zone', 'publik', '--state-dir', ex.stateDir]);
  assert.match(typo.stderr, /did you mean public\?/);
  const { mkdtempSync, copyFileSync } = await import('node:fs');
  const noDev = mkdtempSync(path.join(ex.stateDir, 'no-dev-'));
  copyFileSync(path.join(ex.stateDir, 'endpoints.json'), path.join(noDev, 'endpoints.json'));
  const prod = await gatehouse(['token', '--zone', 'public', '--state-dir', noDev]);
  assert.equal(prod.code, 1);
  assert.match(prod.stderr, /dev mode only/);
});
