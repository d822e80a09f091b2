// Vault benchmark: 1 KiB field encryptions and decryptions per second in
// process and over the mTLS API (batches of 100, the server in this same
// process: one core for client and server), tokenize/detokenize per second on
// SQLite and on PostgreSQL (when reachable). Bounded: `seconds` per row.
//   sh scripts/node.sh bench/vault.ts [seconds per row, default 2]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { initCa, issueWorkloadIdentity, serviceSpiffeId } from '../src/pki/index.ts';
import { openVault, startVaultServer, createVaultClient, type Vault } from '../src/vault/index.ts';
import { spawn } from 'node:child_process';
import { table, have } from './lib.ts';

const seconds = Number(process.argv[2] ?? 2);
const TD = 'bench.local';
const field = randomBytes(1024);

/** Operations per second of `op` (`per` fields each call), `parallel` callers, for `seconds`. */
async function rate(op: (i: number) => Promise<unknown>, per = 1, parallel = 1): Promise<number> {
  // warm up (JIT, connections) for a quarter of the time, then measure
  const warm = performance.now() + seconds * 250;
  let w = 0;
  await Promise.all(Array.from({ length: parallel }, async () => {
    while (performance.now() < warm) await op(w++);
  }));
  let n = w;
  const first = w;
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (performance.now() < end) await op(n++);
    }),
  );
  return ((n - first) * per) / ((performance.now() - start) / 1000);
}

const rows: (string | number)[][] = [];
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function tokenRows(v: Vault, where: string): Promise<void> {
  await v.ensureKey('bench-tokens');
  await v.ensureKey('bench-cards', { tokens: 'card' });
  const tokens: string[] = [];
  rows.push([`tokenize (opaque, random) ${where}`, fmt(await rate(async (i) => tokens.push(await v.tokenize('bench-tokens', `value-${i}-${where}`)), 1, 8)), 'fields/s']);
  rows.push([`tokenize (card) ${where}`, fmt(await rate(async () => v.tokenize('bench-cards', '4111111111111111'), 1, 8)), 'fields/s']);
  rows.push([`detokenize ${where}`, fmt(await rate(async (i) => v.detokenize('bench-tokens', tokens[i % tokens.length]), 1, 8)), 'fields/s']);
}

const dir = mkdtempSync(path.join(tmpdir(), 'gh-vault-bench-'));
try {
  const config = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    config,
    `version: 1
trustDomain: ${TD}
zones: { z: {} }
services: { orders: { zone: z, upstream: 'http://127.0.0.1:1' } }
vault:
  keys:
    bench: { encrypt: [orders], decrypt: [orders] }
`,
  );
  const { topology } = loadTopology(config);
  await initCa({ stateDir: dir, topology, passphrase: 'benchmark passphrase!' });
  const server = await startVaultServer({ config, stateDir: dir, logger: createLogger({ name: 'bench', level: 'error' }), env: {} });
  const v = server.vault;

  // in process
  const ct = await v.encrypt('bench', field, 'orders/1/address');
  rows.push(['encrypt 1 KiB, in process', fmt(await rate(() => v.encrypt('bench', field, 'orders/1/address'))), 'fields/s']);
  rows.push(['decrypt 1 KiB, in process', fmt(await rate(() => v.decrypt('bench', ct, 'orders/1/address'))), 'fields/s']);

  // over the mTLS API, batches of 100
  const identity = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'z', 'orders'), { topology });
  const client = createVaultClient({ url: server.url, identity });
  const batch = Array.from({ length: 100 }, (_, i) => ({ plaintext: field, context: `orders/${i}/address` }));
  const cts = await client.encryptBatch('bench', batch);
  const back = cts.map((ciphertext, i) => ({ ciphertext, context: `orders/${i}/address` }));
  rows.push(['encrypt 1 KiB over mTLS, batches of 100 (4 callers)', fmt(await rate(() => client.encryptBatch('bench', batch), 100, 4)), 'fields/s']);
  rows.push(['decrypt 1 KiB over mTLS, batches of 100 (4 callers)', fmt(await rate(() => client.decryptBatch('bench', back), 100, 4)), 'fields/s']);
  rows.push(['encrypt 1 KiB over mTLS, one field a request (8 callers)', fmt(await rate(() => client.encrypt('bench', field, 'orders/1/address'), 1, 8)), 'fields/s']);
  client.close();

  // the same over the API of a vault in its own process, alone on one core (taskset -c 1 when there),
  // this process being the client: what one vault core serves
  const main = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
  const argv = [main, 'vault', '--config', config, '--state-dir', dir, '--listen', '127.0.0.1:0'];
  const child = have('taskset') ? spawn('taskset', ['-c', '1', process.execPath, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] }) : spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d;
        const m = /ready: vault (https:\/\/\S+)/.exec(err);
        if (m) resolve(m[1]);
      });
      child.once('exit', (code) => reject(new Error(`gatehouse vault exited (${code}): ${err}`)));
    });
    const remote = createVaultClient({ url, identity });
    rows.push(['encrypt 1 KiB over mTLS, batches of 100 (4 callers), vault alone on one core', fmt(await rate(() => remote.encryptBatch('bench', batch), 100, 4)), 'fields/s']);
    rows.push(['decrypt 1 KiB over mTLS, batches of 100 (4 callers), vault alone on one core', fmt(await rate(() => remote.decryptBatch('bench', back), 100, 4)), 'fields/s']);
    remote.close();
  } finally {
    child.kill('SIGTERM');
  }

  await tokenRows(v, 'on SQLite');
  await server.close();

  // PostgreSQL (skipped with a reason when not reachable)
  const base = process.env.GATEHOUSE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `gh_bench_vault_${process.pid}`;
  const probe = new pg.Client({ connectionString: base, connectionTimeoutMillis: 2000 });
  try {
    await probe.connect();
    // the state dir's master key (its check value refuses any other)
    const pv = await openVault({ stateDir: dir, storage: `${base}?schema=${schema}`, env: {} });
    try {
      await tokenRows(pv, 'on PostgreSQL');
    } finally {
      await pv.close();
      await probe.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  } catch (error) {
    rows.push(['tokenize/detokenize on PostgreSQL', 'skipped', `not reachable: ${(error as Error).message.slice(0, 60)}`]);
  } finally {
    await probe.end().catch(() => {});
  }
  rows.push(['published: Vault Enterprise transform FPE on HCP (vault-benchmark#257)', '~37', 'req/s at 268 ms mean']);
  process.stdout.write(table(['vault', 'rate', 'unit'], rows) + '\n');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
