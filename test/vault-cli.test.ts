// `gatehouse vault` operator verbs as a user runs them: shapes from DESIGN.md
// (keys list --json, gh:v1: ciphertexts), exit codes, no plaintext in errors,
// and rewrap over a table killed with SIGKILL midway and run again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { openVault, parseCiphertext } from '../src/vault/index.ts';
import { tempDir } from './support/authority-harness.ts';

const MAIN = path.resolve(import.meta.dirname, '../src/cli/main.ts');
const NODE = process.execPath;

function gatehouse(stateDir: string, args: string[], input = ''): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [MAIN, 'vault', ...args, '--state-dir', stateDir, '--config', path.join(stateDir, 'none.yaml')], { input, encoding: 'utf8', env: { ...process.env, GATEHOUSE_MASTER_KEY: '' } });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('keys, encrypt/decrypt, tokenize/detokenize through the CLI: DESIGN.md shapes, exit codes, nothing secret in errors', () => {
  const tmp = tempDir('gh-vault-cli-');
  try {
    const d = tmp.dir;
    assert.equal(gatehouse(d, ['keys', 'create', '--key', 'pii']).status, 0);
    assert.equal(gatehouse(d, ['keys', 'create', '--key', 'cards', '--tokens', 'card']).status, 0);
    assert.equal(gatehouse(d, ['keys', 'rotate', '--key', 'pii']).status, 0);
    const dup = gatehouse(d, ['keys', 'create', '--key', 'pii']);
    assert.equal(dup.status, 1);
    assert.match(dup.stderr, /vault_key_exists/);
    assert.equal(gatehouse(d, ['keys', 'set-min-version', '--key', 'pii', '--version', '2']).status, 0);
    const bad = gatehouse(d, ['keys', 'set-min-version', '--key', 'pii', '--version', '7']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /vault_version_invalid/);
    const list = gatehouse(d, ['keys', 'list', '--json']);
    assert.equal(list.status, 0);
    assert.deepEqual(JSON.parse(list.stdout), [
      { name: 'cards', latest: 1, minDecryptionVersion: 1 },
      { name: 'pii', latest: 2, minDecryptionVersion: 2 },
    ]);
    const enc = gatehouse(d, ['encrypt', '--key', 'pii', '--context', 'orders/1/address'], 'Rue de la Paix 1');
    assert.equal(enc.status, 0);
    assert.match(enc.stdout, /^gh:v1:[A-Za-z0-9_-]+\n$/);
    const dec = gatehouse(d, ['decrypt', '--key', 'pii', '--context', 'orders/1/address'], enc.stdout);
    assert.equal(dec.stdout, 'Rue de la Paix 1');
    const wrong = gatehouse(d, ['decrypt', '--key', 'pii', '--context', 'orders/2/address'], enc.stdout);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /vault_decrypt_failed/);
    assert.equal(wrong.stdout, '');
    assert.doesNotMatch(wrong.stderr, /Rue de la Paix|orders\/2/);
    const tok = gatehouse(d, ['tokenize', '--key', 'cards'], '4111111111111111\n');
    assert.match(tok.stdout, /^0\d{11}1111\n$/);
    assert.equal(gatehouse(d, ['detokenize', '--key', 'cards'], tok.stdout).stdout, '4111111111111111\n');
    const notCard = gatehouse(d, ['tokenize', '--key', 'cards'], '4111111111111112\n');
    assert.equal(notCard.status, 1);
    assert.doesNotMatch(notCard.stderr, /4111111111111112/);
    const audit = readFileSync(path.join(d, 'vault', 'audit.log'), 'utf8');
    assert.match(audit, /"caller":"operator","op":"keys.rotate","key":"pii","outcome":"ok"/);
    assert.doesNotMatch(audit, /4111111111111111|Rue de la Paix/);
  } finally {
    tmp.remove();
  }
});

test('usage errors exit 2 (DESIGN.md: 0 ok, 1 refusal, 2 usage or config error) and open nothing; refusals stay 1', () => {
  const tmp = tempDir('gh-vault-usage-');
  try {
    const d = tmp.dir;
    const cases: [string[], RegExp][] = [
      [['keys', 'create'], /required option '--key/],
      [['keys', 'create', '--key', 'pii', '--tokens', 'fpe'], /--tokens is opaque or card/],
      [['keys', 'set-min-version', '--key', 'pii', '--version', 'two'], /--version is a whole number/],
      [['keys', 'set-min-version', '--key', 'pii', '--version', '0'], /--version is a whole number/],
      [['keys', 'set-min-version', '--key', 'pii', '--version', '1e3'], /--version is a whole number/],
      [['encrypt', '--key', 'pii'], /required option '--context/],
      [['rewrap', '--key', 'pii'], /rewrap needs --db, --table and --column/],
      [['keys', 'list', '--jsn'], /unknown option '--jsn'/],
      [['keys'], /Usage: gatehouse vault keys/],
      [['tokenise', '--key', 'pii'], /error/],
    ];
    for (const [args, message] of cases) {
      const r = gatehouse(d, args);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.stdout, '');
    }
    assert.equal(existsSync(path.join(d, 'vault')), false, 'no usage error opened (or created) the vault');
    assert.equal(gatehouse(d, ['--help']).status, 0);
    assert.equal(gatehouse(d, ['keys', 'rotate', '--key', 'nokey']).status, 1, 'a refusal is 1');
  } finally {
    tmp.remove();
  }
});

test('gatehouse validate and audit: a vault grant naming no service of the topology is a config error at its line and field, with the nearest name', () => {
  const tmp = tempDir('gh-vault-grants-');
  try {
    const file = path.join(tmp.dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      `version: 1
trustDomain: grants.local
zones:
  private:
    gateway: { listen: 127.0.0.1:0 }
services:
  orders: { zone: private, upstream: http://127.0.0.1:1 }
  payments: { zone: private, upstream: http://127.0.0.1:1 }
vault:
  keys:
    orders-pii:
      encrypt: [orders]
      decrypt: [ordres, billing]
    orders-card:
      tokens: card
      detokenize:
        - payment
`,
    );
    const validate = spawnSync(NODE, [MAIN, 'validate', file], { encoding: 'utf8' });
    assert.equal(validate.status, 2, validate.stderr);
    assert.match(validate.stderr, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:13:17: vault\\.keys\\.orders-pii\\.decrypt\\[0\\]: unknown service "ordres" \\(did you mean "orders"\\?\\)`));
    assert.match(validate.stderr, /:13:25: vault\.keys\.orders-pii\.decrypt\[1\]: unknown service "billing"\n/);
    assert.match(validate.stderr, /:17:11: vault\.keys\.orders-card\.detokenize\[0\]: unknown service "payment" \(did you mean "payments"\?\)/);
    assert.doesNotMatch(validate.stderr, /encrypt\[0\]/, 'a grant to a real service is fine');
    const audit = spawnSync(NODE, [MAIN, 'audit', '--config', file, '--format', 'json'], { encoding: 'utf8' });
    assert.equal(audit.status, 2, audit.stderr);
    const findings = JSON.stringify(JSON.parse(audit.stdout));
    assert.match(findings, /GH100/);
    assert.match(findings, /unknown service \\"ordres\\"/);
    // the vault itself never starts on such a topology (the loader refuses it first)
    const serve = spawnSync(NODE, [MAIN, 'vault', '--config', file, '--state-dir', tmp.dir], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(serve.status, 2, serve.stderr);
    assert.match(serve.stderr, /unknown service "ordres"/);
  } finally {
    tmp.remove();
  }
});

test('rewrap over a table: killed with SIGKILL midway, the rerun completes; no row lost, none encrypted twice', async () => {
  const tmp = tempDir('gh-vault-rewrap-');
  const rows = 6000;
  try {
    const d = tmp.dir;
    const file = path.join(d, 'shop.sqlite');
    const v = await openVault({ stateDir: d, env: {} });
    await v.createKey('pii');
    // the test reads while rewrap writes: wait for its lock as an application would (SQLite's busy timeout)
    const db = new DatabaseSync(file, { timeout: 10_000 });
    db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, address TEXT, note TEXT)');
    const insert = db.prepare('INSERT INTO orders (id, address, note) VALUES (?, ?, ?)');
    db.exec('BEGIN');
    for (let i = 1; i <= rows; i++) insert.run(i, i % 100 === 0 ? null : await v.encrypt('pii', `street ${i}`, `orders/${i}/address`), `n${i}`);
    db.exec('COMMIT');
    await v.rotateKey('pii');
    await v.close();
    const versions = () => {
      const counts = { v1: 0, v2: 0, other: 0 };
      for (const r of db.prepare('SELECT address FROM orders').all() as { address: string | null }[]) {
        if (r.address === null) counts.other++;
        else if (parseCiphertext(r.address).version === 1) counts.v1++;
        else counts.v2++;
      }
      return counts;
    };
    const args = [MAIN, 'vault', 'rewrap', '--key', 'pii', '--db', file, '--table', 'orders', '--column', 'address', '--state-dir', d, '--config', path.join(d, 'none.yaml'), '--json'];
    const child = spawn(NODE, args, { stdio: 'ignore' });
    // killed once some rows are done
    for (let i = 0; i < 400 && versions().v2 < 200; i++) await new Promise((r) => setTimeout(r, 25));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const midway = versions();
    assert.ok(midway.v2 > 0, 'the first run rewrapped some rows');
    const rerun = spawnSync(NODE, args, { encoding: 'utf8' });
    assert.equal(rerun.status, 0, rerun.stderr);
    const result = JSON.parse(rerun.stdout);
    assert.equal(result.rows, rows);
    assert.equal(result.failed.length, 0);
    assert.equal(result.current + result.rewrapped, rows - rows / 100);
    assert.deepEqual(versions(), { v1: 0, v2: rows - rows / 100, other: rows / 100 });
    const again = await openVault({ stateDir: d, env: {} });
    for (const r of db.prepare('SELECT id, address, note FROM orders').all() as { id: number; address: string | null; note: string }[]) {
      assert.equal(r.note, `n${r.id}`);
      if (r.address !== null) assert.equal((await again.decrypt('pii', r.address, `orders/${r.id}/address`)).toString(), `street ${r.id}`);
    }
    await again.close();
    db.close();
  } finally {
    tmp.remove();
  }
});
