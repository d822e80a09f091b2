// `gatehouse gateway` writes its access log to its own stdout, as an operator
// runs it: into a pipe (a container's log driver) or a file (`gatehouse up`).
// Every request gets exactly one whole JSON line, the last ones are flushed
// when the gateway stops, and a log reader that stops reading does not stop
// the gateway from serving.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startUpstream, tempDir, type Upstream } from './support/gateway-fixture.ts';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');

async function startGateway(stdout: 'pipe' | number, workers = 1): Promise<{ child: ChildProcess; url: string; agent: Agent; ca: Buffer; close(): Promise<void> }> {
  const upstream = await startUpstream();
  try {
    return await spawnGateway(upstream, stdout, workers);
  } catch (error) {
    await upstream.close();
    throw error;
  }
}

async function spawnGateway(upstream: Upstream, stdout: 'pipe' | number, workers: number): Promise<{ child: ChildProcess; url: string; agent: Agent; ca: Buffer; close(): Promise<void> }> {
  const dir = tempDir();
  const file = path.join(dir, 'g.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: true } }
    routes:
      - { path: /api/echo, match: prefix, service: echo, auth: anonymous }
services:
  echo: { zone: edge, upstream: '${upstream.url}' }
`,
  );
  const child = spawn(process.execPath, [main, 'gateway', '--config', file, '--zone', 'edge', '--state-dir', dir, '--workers', String(workers)], {
    cwd: root,
    stdio: ['ignore', stdout, 'pipe'],
    env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'warn' },
  });
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${err}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = /ready: gateway (\S+?),/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.once('exit', (code) => reject(new Error(`gateway exited (${code}):\n${err}`)));
  });
  const ca = readFileSync(path.join(dir, 'tls/dev-ca.pem'));
  const agent = new Agent({ connect: { ca }, connections: 16 });
  return {
    child,
    url,
    agent,
    ca,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await agent.close();
      await upstream.close();
    },
  };
}

/** SIGTERM; resolves with the exit code once the process exited and its output streams closed. */
function stop(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once('close', (code) => resolve(code));
    child.kill('SIGTERM');
  });
}

/** `n` requests, `concurrency` at a time: ordinary ones, one in five refused (no route), hostile paths among them; their request ids. */
async function load(gw: { url: string; agent: Agent }, n: number, concurrency: number, agents: Agent[] = [gw.agent]): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const one = async (i: number, agent: Agent) => {
    const p = i % 5 === 0 ? '/nowhere' : i % 7 === 0 ? `/api/echo/caf%C3%A9/%22q%22/${'x'.repeat(i % 400)}` : `/api/echo/${i}`;
    const r = await request(gw.url + p, { dispatcher: agent });
    await r.body.dump();
    assert.equal(r.statusCode, i % 5 === 0 ? 404 : 200);
    ids.push(String(r.headers['x-request-id']));
  };
  await Promise.all(
    Array.from({ length: concurrency }, async (_, lane) => {
      while (next < n) await one(next++, agents[lane % agents.length]);
    }),
  );
  return ids;
}

/** Every line whole JSON; the access lines' request ids, each once. */
function accessLines(text: string): Map<string, Record<string, unknown>> {
  const byId = new Map<string, Record<string, unknown>>();
  for (const line of text.split('\n').filter(Boolean)) {
    const entry = JSON.parse(line) as Record<string, unknown>; // throws on a torn or interleaved line
    if (entry.name !== 'access.edge') continue;
    assert.ok(!byId.has(String(entry.request_id)), `one line per request (${String(entry.request_id)})`);
    byId.set(String(entry.request_id), entry);
  }
  return byId;
}

test('into a pipe whose reader stops for a while: the gateway keeps serving, and every line arrives whole, the last ones at shutdown', async () => {
  const gw = await startGateway('pipe');
  try {
    const chunks: Buffer[] = [];
    gw.child.stdout!.on('data', (d: Buffer) => chunks.push(d));
    // the reader stops: the pipe fills (64 KiB) long before these ~1 MB of lines are written
    gw.child.stdout!.pause();
    const ids = await load(gw, 3000, 16);
    gw.child.stdout!.resume();
    assert.equal(await stop(gw.child), 0);
    const lines = accessLines(Buffer.concat(chunks).toString('utf8'));
    assert.equal(lines.size, ids.length);
    for (const id of ids) assert.ok(lines.has(id), `a line for ${id}`);
    const refused = [...lines.values()].filter((l) => l.status === 404);
    assert.equal(refused.length, 600);
    assert.ok(refused.every((l) => l.path === '/nowhere' && l.code === 'not_found'));
    const odd = [...lines.values()].filter((l) => String(l.path).startsWith('/api/echo/caf%C3%A9/%22q%22/'));
    // the percent-encoded paths (every 7th request that is not a refusal) are logged in their canonical form, each in one line
    assert.equal(odd.length, Array.from({ length: 3000 }, (_, i) => i).filter((i) => i % 7 === 0 && i % 5 !== 0).length);
  } finally {
    await gw.close();
  }
});

test('into a file, as gatehouse up runs it: every line whole, the last ones written before the gateway exits', async () => {
  const out = path.join(tempDir(), 'gateway.log');
  const fd = openSync(out, 'a');
  const gw = await startGateway(fd);
  closeSync(fd);
  try {
    const ids = await load(gw, 500, 8);
    assert.equal(await stop(gw.child), 0);
    const lines = accessLines(readFileSync(out, 'utf8'));
    assert.equal(lines.size, ids.length);
    for (const id of ids) assert.ok(lines.has(id));
  } finally {
    await gw.close();
  }
});

test('two workers into one pipe whose reader stops: their batches never tear each other\'s lines', async () => {
  const gw = await startGateway('pipe', 2);
  // a connection each: the primary hands connections to the workers in turn
  const agents = Array.from({ length: 8 }, () => new Agent({ connect: { ca: gw.ca }, connections: 1 }));
  try {
    const chunks: Buffer[] = [];
    gw.child.stdout!.on('data', (d: Buffer) => chunks.push(d));
    gw.child.stdout!.pause();
    const ids = await load(gw, 4000, 32, agents);
    gw.child.stdout!.resume();
    assert.equal(await stop(gw.child), 0);
    const lines = accessLines(Buffer.concat(chunks).toString('utf8'));
    assert.equal(lines.size, ids.length);
    for (const id of ids) assert.ok(lines.has(id), `a line for ${id}`);
    const pids = new Map<unknown, number>();
    for (const l of lines.values()) pids.set(l.pid, (pids.get(l.pid) ?? 0) + 1);
    assert.equal(pids.size, 2, `both workers served and logged: ${JSON.stringify([...pids])}`);
  } finally {
    await Promise.all(agents.map((a) => a.close()));
    await gw.close();
  }
});
