// The example under `gatehouse up`, edited while it runs: an allow edge
// changed in gatehouse.yaml is enforced by the service within a second or so,
// and `gatehouse status` shows every enforcement point on the new revision.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { request } from 'undici';
import { sharedExample, operatedExample } from '../support/example-up.ts';

const main = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const file = operatedExample();
const ex = await sharedExample('127.0.1.6', ['--config', file]);

interface Status {
  revision: number;
  peps: { id: string; kind: string; revision: number; lastSeen: string; stale: boolean }[];
}
const status = (): Status => {
  const r = spawnSync(process.execPath, [main, 'status', '--json', '--state-dir', ex.stateDir], { encoding: 'utf8' });
  return JSON.parse(r.stdout) as Status;
};

async function catalog(): Promise<number> {
  const r = await request(ex.endpoints.zones.public.gateway + '/api/catalog', { dispatcher: ex.edge });
  await r.body.dump();
  return r.statusCode;
}

/** Time until `f` answers what `ok` wants, polling every 50 ms (at most 10 s; the catalog route allows a burst of 30 per address). */
async function timeUntil(f: () => Promise<number>, ok: (s: number) => boolean): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (ok(await f())) return performance.now() - t0;
    if (performance.now() - t0 > 10_000) throw new Error('not enforced within 10 s');
    await delay(50);
  }
}

test('an allow edge edited while gatehouse up runs is enforced live; gatehouse status shows the new revision everywhere', async (t) => {
  assert.equal(await catalog(), 200);
  const first = status();
  // five zone authorities; four zone gateways; catalog, bff, orders, partner-catalog on the SDK; echo and backoffice behind sidecars
  assert.deepEqual(first.peps.map((p) => p.kind).sort(), [
    ...Array(5).fill('authority'),
    ...['gateway', 'gateway', 'gateway', 'gateway', 'service', 'service', 'service', 'service', 'sidecar', 'sidecar'],
  ]);
  const original = readFileSync(file, 'utf8');
  // catalog stops taking GET from its gateway: the gateway still routes, the service refuses (403)
  const edited = original.replace(
    "- caller: gateway # the public gateway, exactly what its route sends\n        methods: [GET, HEAD]",
    '- caller: gateway # the public gateway, exactly what its route sends\n        methods: [HEAD]',
  );
  assert.notEqual(edited, original);
  writeFileSync(file, edited);
  const denied = await timeUntil(catalog, (s) => s === 403);
  // every enforcement point reports the new revision on its next poll
  let s = status();
  for (let i = 0; i < 100 && !(s.revision > first.revision && s.peps.every((p) => p.revision === s.revision && !p.stale)); i++) {
    await delay(50);
    s = status();
  }
  assert.ok(s.revision > first.revision);
  assert.deepEqual(s.peps.filter((p) => p.revision !== s.revision || p.stale), []);
  writeFileSync(file, original);
  const restored = await timeUntil(catalog, (code) => code === 200);
  t.diagnostic(`edge removed: enforced after ${denied.toFixed(0)} ms; restored: ${restored.toFixed(0)} ms (file polled every 250 ms)`);
  // `gatehouse status` without --json: one line per enforcement point
  const text = spawnSync(process.execPath, [main, 'status', '--state-dir', ex.stateDir], { encoding: 'utf8' }).stdout;
  assert.match(text, /^revision \d+\n/);
  assert.equal(text.trim().split('\n').length, 1 + first.peps.length, 'one line per enforcement point');
});

const prometheusBin = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p));
const noPrometheus = prometheusBin === undefined && process.env.CI !== 'true' ? 'prometheus is not installed (apt-get install prometheus); CI installs it' : false;
if (noPrometheus) process.stdout.write(`# skipped: ${noPrometheus}\n`);

test('a real Prometheus scrapes every gateway of the example and loads the exported alert rules', { skip: noPrometheus }, async () => {
  assert.ok(prometheusBin, 'prometheus is required under CI=true');
  const work = mkdtempSync(path.join(tmpdir(), 'gh-prometheus-'));
  const exported = spawnSync(process.execPath, [main, 'export', 'monitoring', '--config', file, '--out', work], { encoding: 'utf8' });
  assert.equal(exported.status, 0, exported.stderr);
  // every gateway's admin listener (corp is an authority only)
  const targets = Object.values(ex.endpoints.zones).flatMap((z) => (z.admin ? [new URL(z.admin).host] : []));
  writeFileSync(
    path.join(work, 'prometheus.yml'),
    `global: { scrape_interval: 1s, evaluation_interval: 1s }\nrule_files: [gatehouse-alerts.yml]\nscrape_configs:\n  - job_name: gatehouse-gateway\n    static_configs: [{ targets: ${JSON.stringify(targets)} }]\n`,
  );
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const prom = spawn(prometheusBin, [`--config.file=${path.join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(work, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
  try {
    const api = `http://127.0.0.1:${port}/api/v1`;
    const query = async (q: string) => {
      const r = await fetch(`${api}/query?query=${encodeURIComponent(q)}`).catch(() => undefined);
      return r?.ok ? ((await r.json()) as { data: { result: { metric: Record<string, string>; value: [number, string] }[] } }).data.result : [];
    };
    // both gateways up, and their request counters scraped (the catalog was called above)
    let up: Awaited<ReturnType<typeof query>> = [];
    for (let i = 0; i < 150 && up.filter((r) => r.value[1] === '1').length < targets.length; i++) {
      await delay(200);
      up = await query('up{job="gatehouse-gateway"}');
    }
    assert.equal(up.filter((r) => r.value[1] === '1').length, targets.length, JSON.stringify(up));
    const requests = await query('sum by (zone) (gatehouse_gateway_requests_total)');
    assert.ok(requests.some((r) => r.metric.zone === 'public' && Number(r.value[1]) > 0), JSON.stringify(requests));
    const revision = await query('gatehouse_gateway_bundle_revision');
    assert.equal(revision.length, targets.length);
    // the exported rules are loaded and evaluate without error
    const rules = (await (await fetch(`${api}/rules`)).json()) as { data: { groups: { rules: { name: string; health: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    assert.equal(loaded.length, 7);
    for (let i = 0; i < 50 && loaded.some((r) => r.health === 'unknown'); i++) {
      await delay(200);
      const again = (await (await fetch(`${api}/rules`)).json()) as typeof rules;
      loaded.splice(0, loaded.length, ...again.data.groups.flatMap((g) => g.rules));
    }
    assert.deepEqual(loaded.filter((r) => r.health !== 'ok').map((r) => r.name), []);
  } finally {
    prom.kill('SIGTERM');
    await new Promise((r) => prom.once('exit', r));
    rmSync(work, { recursive: true, force: true });
  }
});
