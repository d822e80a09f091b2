// `gatehouse gateway --workers 2` as an operator runs it: the workers share what
// their circuit breakers see (a dead upstream trips once for all of them), and a
// worker that dies is replaced while the other keeps serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startUpstream, tempDir } from './support/gateway-fixture.ts';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');

async function startGatewayProcess(yaml: string): Promise<{ child: ChildProcess; url: string; admin: string; agent: Agent }> {
  const dir = tempDir();
  const file = path.join(dir, 'g.yaml');
  writeFileSync(file, yaml);
  const child = spawn(process.execPath, [main, 'gateway', '--config', file, '--zone', 'edge', '--state-dir', dir, '--workers', '2'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const [url, admin] = await new Promise<[string, string]>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output}`)), 60_000);
    const on = (d: Buffer) => {
      output += d.toString();
      const m = /ready: gateway (\S+), admin (\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve([m[1].replace(/,$/, ''), m[2]]);
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}):\n${output}`)));
  });
  const agent = new Agent({ connect: { ca: readFileSync(path.join(dir, 'tls/dev-ca.pem')) }, pipelining: 0, allowH2: false });
  return { child, url, admin, agent };
}

function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/** A fresh connection per request, so the primary hands them to the workers in turn. */
async function status(o: { url: string; agent: Agent }, p: string): Promise<number> {
  const r = await request(o.url + p, { dispatcher: o.agent, reset: true });
  await r.body.dump();
  return r.statusCode;
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });

test('a dead upstream opens the circuit once for every worker', async () => {
  const dead = await freePort(); // nothing listens there: connection refused
  const gw = await startGatewayProcess(`version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    routes:
      - { path: /dead, service: dead, auth: anonymous }
services:
  dead: { zone: edge, upstream: 'http://127.0.0.1:${dead}', circuitBreaker: { failures: 3, openMs: 30000 } }
`);
  try {
    const seen: number[] = [];
    for (let i = 0; i < 16; i++) {
      seen.push(await status(gw, '/dead'));
      await new Promise((r) => setTimeout(r, 30));
    }
    const first503 = seen.indexOf(503);
    // three failures in all, whichever worker saw them: one worker alone would have needed three of its own
    assert.equal(first503, 3, `the breaker opened after its threshold across workers: ${seen.join(' ')}`);
    assert.deepEqual(
      seen.slice(first503).filter((s) => s !== 503),
      [],
      `once open in one worker, no worker sends traffic to the dead upstream: ${seen.join(' ')}`,
    );
    const metrics = await (await fetch(gw.admin + '/metrics')).text();
    // summed over the workers: each worker's breaker opened, for the reason the first failures gave
    assert.match(metrics, /gatehouse_gateway_circuit_opened_total\{service="dead",reason="connect_refused",zone="edge"\} 2\b/);
  } finally {
    await gw.agent.close();
    assert.equal(await stop(gw.child), 0);
  }
});

test('a worker that dies is replaced while the other keeps serving', async () => {
  const upstream = await startUpstream();
  const gw = await startGatewayProcess(`version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    routes:
      - { path: /a, service: s, auth: anonymous }
services:
  s: { zone: edge, upstream: '${upstream.url}' }
`);
  try {
    const children = () =>
      readFileSync(`/proc/${gw.child.pid}/task/${gw.child.pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    const before = children();
    assert.equal(before.length, 2, 'two workers');
    process.kill(before[0], 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300)); // the primary notices (a connection handed to a dying worker is lost: Node's cluster)
    // the other worker answers
    for (let i = 0; i < 10; i++) assert.equal(await status(gw, '/a'), 200);
    let after: number[] = [];
    for (let i = 0; i < 100 && after.length !== 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = children().filter((pid) => pid !== before[0]);
    }
    assert.equal(after.length, 2, 'the dead worker was replaced');
    assert.ok(!after.includes(before[0]));
    assert.equal(gw.child.exitCode, null, 'the gateway kept running');
    for (let i = 0; i < 10; i++) assert.equal(await status(gw, '/a'), 200);
  } finally {
    await gw.agent.close();
    assert.equal(await stop(gw.child), 0);
    await upstream.close();
  }
});
