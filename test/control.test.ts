// The control plane end to end: mTLS, own bundle only, long-poll, status,
// static export, refusals counted with nothing changed, control plane down and
// back, client restarted from disk, tampered disk bundle.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { makeCaDir, TD, TOPOLOGY_YAML, tempDir } from './support/pki-fixtures.ts';
import { issueWorkloadIdentity, serviceSpiffeId, gatewaySpiffeId } from '../src/pki/index.ts';
import { startControlServer, createBundleClient, exportBundles, type BundleClient } from '../src/control/index.ts';
import { signBundle, openControlSigner, bundlePath, type Bundle } from '../src/policy/index.ts';

const ca = await makeCaDir();
const config = path.join(ca.stateDir, 'gatehouse.yaml');
writeFileSync(config, TOPOLOGY_YAML);
const checkout = await issueWorkloadIdentity(ca.stateDir, serviceSpiffeId(TD, 'public', 'checkout'));
const orders = await issueWorkloadIdentity(ca.stateDir, serviceSpiffeId(TD, 'private', 'orders'));
const gateway = await issueWorkloadIdentity(ca.stateDir, gatewaySpiffeId(TD, 'private'));
const quiet = { info() {}, error() {}, warn() {}, debug() {}, child() { return quiet; } } as never;
const clients: BundleClient[] = [];
after(async () => {
  for (const c of clients) await c.close();
  ca.cleanup();
});

function client(id: typeof checkout, o: { url?: string; dir?: string; stateDir: string }) {
  const c = createBundleClient({ ...o, identity: id, trustDomain: TD, caBundle: id.bundlePem, waitSeconds: 5, pollIntervalMs: 100, retryMs: 100 });
  clients.push(c);
  return c;
}

function get(url: string, tls: { cert?: string; key?: string; ca: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { ...tls, checkServerIdentity: () => undefined, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('each workload gets its own bundle over mTLS; another one is 403; no trust-domain certificate: refused at TLS', async () => {
  const server = await startControlServer({ config, stateDir: ca.stateDir, logger: quiet });
  try {
    const own = await get(`${server.bundlesUrl}/${bundlePath(checkout.spiffeId, TD)}`, { cert: checkout.certPem, key: checkout.keyPem, ca: checkout.bundlePem });
    assert.equal(own.status, 200);
    assert.match(own.body, /"audience":"spiffe:\/\/test.local\/zone\/public\/svc\/checkout"/);
    const other = await get(`${server.bundlesUrl}/${bundlePath(orders.spiffeId, TD)}`, { cert: checkout.certPem, key: checkout.keyPem, ca: checkout.bundlePem });
    assert.equal(other.status, 403);
    assert.doesNotMatch(other.body, /svc\/orders/);
    await assert.rejects(get(`${server.bundlesUrl}/${bundlePath(checkout.spiffeId, TD)}`, { ca: checkout.bundlePem }));
    const rogueCa = await makeCaDir();
    try {
      const rogue = await issueWorkloadIdentity(rogueCa.stateDir, serviceSpiffeId(TD, 'public', 'checkout'));
      await assert.rejects(get(`${server.bundlesUrl}/${bundlePath(checkout.spiffeId, TD)}`, { cert: rogue.certPem, key: rogue.keyPem, ca: checkout.bundlePem }));
    } finally {
      rogueCa.cleanup();
    }
  } finally {
    await server.close();
  }
});

test('long-poll: a publish reaches a waiting client within ~100 ms; status shows the revision it enforces', async () => {
  const server = await startControlServer({ config, stateDir: ca.stateDir, logger: quiet, watchMs: 60_000 });
  const state = tempDir('gh-ctl-');
  try {
    const c = client(orders, { url: server.bundlesUrl, stateDir: state.dir });
    const first = await c.waitFor(server.revision());
    assert.equal(first.bundle.audience, orders.spiffeId);
    await delay(200); // the client is now parked in a long-poll
    writeFileSync(config, TOPOLOGY_YAML.replace('paths: [{ path: /orders/summary }]', 'paths: [{ path: /orders/summary }, { path: /orders/stats }]'));
    const t0 = performance.now();
    const rev = await server.publish();
    assert.equal(rev, first.revision + 1);
    const next = await c.waitFor(rev, 2000);
    const ms = performance.now() - t0;
    assert.ok(ms < 150, `propagation took ${ms} ms`);
    assert.match(JSON.stringify(next.bundle.policy), /orders\/stats/);
    await delay(100); // its next poll reports the revision
    const s = server.status();
    assert.equal(s.revision, rev);
    const pep = s.peps.find((p) => p.id === orders.spiffeId)!;
    assert.deepEqual({ kind: pep.kind, revision: pep.revision, stale: pep.stale }, { kind: 'service', revision: rev, stale: false });
    // unchanged content: same revision, no new bytes
    assert.equal(await server.publish(), rev);
    await c.close();
  } finally {
    writeFileSync(config, TOPOLOGY_YAML);
    await server.close();
    state.cleanup();
  }
});

test('the bundle in force expires: subscribers are told once, whether a poll or the timer notices first (fail closed)', async () => {
  const out = tempDir('gh-exp-');
  const state = tempDir('gh-ctl-');
  try {
    const r = await exportBundles({ config, stateDir: ca.stateDir, out: out.dir, ttlSeconds: 60 });
    // a clock the test moves: the timer (real time) is a minute away, the poll sees the expiry first
    let skew = 0;
    const c = createBundleClient({
      dir: out.dir,
      stateDir: state.dir,
      identity: gateway,
      trustDomain: TD,
      caBundle: gateway.bundlePem,
      pollIntervalMs: 50,
      clock: { now: () => Date.now() + skew },
    });
    clients.push(c);
    await c.waitFor(r.revision, 3000);
    const told: (number | undefined)[] = [];
    c.subscribe((b) => told.push(b?.revision));
    skew = 61_000;
    for (let i = 0; i < 100 && told.length === 0; i++) await delay(20);
    await delay(300); // later polls refuse the expired file again: nobody is told twice
    assert.deepEqual(told, [undefined]);
    assert.equal(c.current(), undefined);
    assert.ok((c.stats().refused.bundle_expired ?? 0) >= 1, 'the expired file is refused on the next polls');
  } finally {
    out.cleanup();
    state.cleanup();
  }
});

test('refused bundles change nothing and are counted (folder of exported files)', async () => {
  const out = tempDir('gh-exp-');
  const state = tempDir('gh-ctl-');
  try {
    const r = await exportBundles({ config, stateDir: ca.stateDir, out: out.dir });
    const file = path.join(out.dir, bundlePath(gateway.spiffeId, TD));
    assert.ok(existsSync(file));
    const c = client(gateway, { dir: out.dir, stateDir: state.dir });
    const good = await c.waitFor(r.revision, 3000);
    const bytes = readFileSync(file);
    const signer = await openControlSigner({ stateDir: ca.stateDir });
    const doc = JSON.parse(bytes.subarray(bytes.indexOf(0x0a) + 1).toString()) as Bundle;
    const bad: [string, Uint8Array][] = [
      ['bundle_signature_invalid', Buffer.concat([bytes.subarray(0, bytes.length - 2), Buffer.from('}}')])],
      ['bundle_malformed', bytes.subarray(0, 30)],
      ['bundle_wrong_audience', await signBundle({ ...doc, revision: r.revision + 1, audience: orders.spiffeId }, signer)],
      ['bundle_rollback', await signBundle({ ...doc, revision: r.revision - 1 }, signer)],
      ['bundle_expired', await signBundle({ ...doc, revision: r.revision + 1, expiresAt: new Date(Date.now() - 1000).toISOString() }, signer)],
      ['bundle_too_large', new Uint8Array(8 * 1024 * 1024 + 10)],
    ];
    for (const [code, b] of bad) {
      const before = c.stats().refused[code] ?? 0;
      writeFileSync(file, b);
      for (let i = 0; i < 50 && (c.stats().refused[code] ?? 0) === before; i++) await delay(20);
      assert.equal(c.stats().refused[code], before + 1, code);
      assert.equal(c.current()?.digest, good.digest, `${code}: the good bundle stays`);
    }
  } finally {
    out.cleanup();
    state.cleanup();
  }
});

test('control plane killed (-9): clients keep their bundle; restarted: they converge; a client restarted meanwhile starts from disk; a tampered disk bundle is refused', async () => {
  const state = tempDir('gh-ctl-');
  const node = process.execPath;
  const main = path.resolve('src/cli/main.ts');
  const info = path.join(ca.stateDir, 'control', 'control.json');
  const startCli = async (listen: string) => {
    try {
      writeFileSync(info, '{}');
    } catch {}
    const child = spawn(node, [main, 'control', '--config', config, '--state-dir', ca.stateDir, '--listen', listen], { stdio: ['ignore', 'ignore', 'pipe'] });
    for (let i = 0; i < 200; i++) {
      await delay(50);
      const j = JSON.parse(readFileSync(info, 'utf8')) as { bundles?: string; admin?: string; pid?: number };
      if (j.bundles && j.pid === child.pid) return { child, bundles: j.bundles, admin: j.admin! };
    }
    throw new Error('gatehouse control did not start');
  };
  let run = await startCli('127.0.0.1:0');
  const port = new URL(run.bundles).port;
  try {
    const c = client(checkout, { url: run.bundles, stateDir: state.dir });
    const first = await c.waitFor(1, 5000);
    run.child.kill('SIGKILL');
    await delay(300);
    assert.equal(c.current()?.digest, first.digest, 'keeps serving its bundle');
    // a PEP restarted while the control plane is down starts from its disk copy
    const again = client(checkout, { url: run.bundles, stateDir: state.dir });
    await again.started;
    assert.equal(again.current()?.digest, first.digest);
    assert.equal(again.stats().source, 'disk');
    // the topology changes while the control plane is down; it comes back on the same address
    writeFileSync(config, TOPOLOGY_YAML.replace('egress: [orders, payments]', 'egress: [orders]'));
    run = await startCli(`127.0.0.1:${port}`);
    const [a, b] = await Promise.all([c.waitFor(first.revision + 1, 8000), again.waitFor(first.revision + 1, 8000)]);
    assert.deepEqual(a.bundle.policy.egress, ['orders']);
    assert.equal(b.revision, a.revision);
    // gatehouse status --json: exactly the documented shape
    await delay(300);
    const status = await new Promise<string>((resolve) => {
      const p = spawn(node, [main, 'status', '--json', '--state-dir', ca.stateDir], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('close', () => resolve(out));
    });
    const s = JSON.parse(status) as { revision: number; peps: Record<string, unknown>[] };
    assert.equal(s.revision, a.revision);
    const pep = s.peps.find((p) => p.id === checkout.spiffeId)!;
    assert.deepEqual(Object.keys(pep).sort(), ['id', 'kind', 'lastSeen', 'revision', 'stale']);
    assert.equal(pep.revision, a.revision);
    assert.equal(pep.stale, false);
    // a tampered disk bundle is refused at start: nothing in force (fail closed)
    await c.close();
    await again.close();
    run.child.kill('SIGKILL');
    const disk = path.join(state.dir, 'bundles', readdirSync(path.join(state.dir, 'bundles'))[0]);
    const bytes = readFileSync(disk);
    assert.equal((await import('node:fs')).statSync(disk).mode & 0o777, 0o600);
    bytes[bytes.length - 3] ^= 1;
    writeFileSync(disk, bytes);
    const tampered = client(checkout, { url: run.bundles, stateDir: state.dir });
    await tampered.started;
    assert.equal(tampered.current(), undefined);
    assert.equal(tampered.stats().refused.bundle_signature_invalid, 1);
  } finally {
    run.child.kill('SIGKILL');
    writeFileSync(config, TOPOLOGY_YAML);
    state.cleanup();
  }
});
