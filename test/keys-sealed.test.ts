// The authority's signing keys, TOTP secrets and server secrets, and the CA's
// root and issuer keys, under the vault's master key: the re-seal migration of
// an older state dir (v1 values under the zone's own master.key or under
// GATEHOUSE_MASTER_KEY itself; a passphrase-sealed root and plain PEM issuer
// keys) killed with SIGKILL midway and run again; a wrong master key refuses
// and changes nothing; nothing secret in the refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { tempDir } from './support/authority-harness.ts';
import { TOPOLOGY_YAML, TD } from './support/pki-fixtures.ts';
import { openDatabase } from '../src/authority/db/open-database.ts';
import { KeyStore } from '../src/authority/keys/key-store.ts';
import { loadKeyEncryptionKey, type Sealer } from '../src/authority/keys/key-encryption.ts';
import { gcmOpen, gcmSeal } from '../src/authority/keys/gcm.ts';
import { KEK_ROW } from '../src/authority/keys/reseal.ts';
import { loadKms, localKms, openVault, MasterKeyError, type Kms } from '../src/vault/index.ts';
import { initCa, openCa, issueWorkloadIdentity } from '../src/pki/index.ts';
import { parseTopology } from '../src/topology/load.ts';
import { sealKey } from '../src/pki/lib/key-envelope.ts';
import { x509 } from '../src/pki/lib/x509.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const NODE = process.execPath;
const USERS = 20_000;

/** What an older version sealed: AES-256-GCM `v1.` values straight under its key. */
function legacySealer(key: Buffer): Sealer {
  return {
    source: 'legacy',
    attach: async () => {},
    seal: (p, purpose) => gcmSeal(key, 'v1', p, purpose),
    open: (s, purpose) => gcmOpen(key, 'v1', s, purpose)!,
  };
}

interface Legacy {
  zoneDir: string;
  /** purpose → plaintext, of every sealed value */
  plain: Map<string, string>;
}

/** An authority zone as an older version left it: signing keys, secrets and USERS TOTP secrets sealed v1 under `oldKey`. */
async function legacyZone(stateDir: string, oldKey: Buffer, keyFile: boolean): Promise<Legacy> {
  const zoneDir = path.join(stateDir, 'authority', 'public');
  mkdirSync(zoneDir, { recursive: true, mode: 0o700 });
  if (keyFile) writeFileSync(path.join(zoneDir, 'master.key'), oldKey.toString('base64url') + '\n', { mode: 0o600 });
  const storage = await openDatabase('sqlite', zoneDir);
  const plain = new Map<string, string>();
  try {
    const ks = new KeyStore(storage.db, legacySealer(oldKey), Date.now);
    await ks.ensureSigningKey('EdDSA', 600);
    await ks.rotate('EdDSA', 0, 600);
    plain.set('secret:client-secret-hmac', (await ks.secret('client-secret-hmac')).toString('base64'));
    await ks.putSealed('dev-credentials', '{"zones":{}}');
    plain.set('secret:dev-credentials', Buffer.from('{"zones":{}}').toString('base64'));
    for (const r of await storage.db.selectFrom('signing_keys').select(['kid', 'private_jwk']).execute())
      plain.set(`signing-key:${r.kid}`, gcmOpen(oldKey, 'v1', r.private_jwk, `signing-key:${r.kid}`)!.toString('base64'));
    const now = Date.now();
    const rows = [];
    for (let i = 0; i < USERS; i++) {
      const id = `u${i}`;
      const secret = randomBytes(20).toString('hex');
      plain.set(`totp:${id}`, Buffer.from(secret).toString('base64'));
      rows.push({ id, username: `user${i}`, password_hash: 'x', totp_secret: gcmSeal(oldKey, 'v1', secret, `totp:${id}`), totp_last_step: 0, locked: 0, claims: '{}', created_at: now });
    }
    for (let i = 0; i < rows.length; i += 500) await storage.db.insertInto('users').values(rows.slice(i, i + 500)).execute();
  } finally {
    await storage.close();
  }
  return { zoneDir, plain };
}

/** Every sealed value of the zone: v1 under `oldKey` or v2 under the KEK row (sealed under `kms`); each must open to what was sealed. */
async function checkZone(l: Legacy, oldKey: Buffer, kms: Kms | undefined): Promise<{ v1: number; v2: number }> {
  const db = new DatabaseSync(path.join(l.zoneDir, 'authority.sqlite'), { readOnly: true });
  try {
    const kekRow = db.prepare('select value from secrets where name = ?').get(KEK_ROW) as { value: string } | undefined;
    const kek = kekRow && kms ? await kms.unwrap(Buffer.from(kekRow.value.slice(3), 'base64url'), 'authority-kek:public') : undefined;
    const values: [string, string][] = [
      ...(db.prepare('select kid, private_jwk from signing_keys').all() as { kid: string; private_jwk: string }[]).map((r) => [`signing-key:${r.kid}`, r.private_jwk] as [string, string]),
      ...(db.prepare('select name, value from secrets where name != ?').all(KEK_ROW) as { name: string; value: string }[]).map((r) => [`secret:${r.name}`, r.value] as [string, string]),
      ...(db.prepare('select id, totp_secret from users').all() as { id: string; totp_secret: string }[]).map((r) => [`totp:${r.id}`, r.totp_secret] as [string, string]),
    ];
    assert.equal(values.length, l.plain.size, 'no value lost, none added');
    const counts = { v1: 0, v2: 0 };
    for (const [purpose, sealed] of values) {
      const v2 = sealed.startsWith('v2.');
      assert.ok(!v2 || kek, `${purpose} is v2, so the KEK row exists`);
      const opened = v2 ? gcmOpen(Buffer.from(kek!), 'v2', sealed, purpose) : gcmOpen(oldKey, 'v1', sealed, purpose);
      assert.ok(opened, `${purpose} opens (${sealed.slice(0, 3)})`);
      assert.equal(opened.toString('base64'), l.plain.get(purpose), `${purpose} holds what was sealed`);
      counts[v2 ? 'v2' : 'v1']++;
    }
    return counts;
  } finally {
    db.close();
  }
}

/** A child process that opens the zone as the authority does (KeyStore → key-encryption key → re-seal). */
function openerScript(dir: string): string {
  const file = path.join(dir, 'open-zone.ts');
  const u = (p: string) => pathToFileURL(path.join(ROOT, p)).href;
  writeFileSync(
    file,
    `import { openDatabase } from '${u('src/authority/db/open-database.ts')}';
import { KeyStore } from '${u('src/authority/keys/key-store.ts')}';
import { loadKeyEncryptionKey } from '${u('src/authority/keys/key-encryption.ts')}';
const zoneDir = process.argv[2];
const storage = await openDatabase('sqlite', zoneDir);
try {
  const ks = new KeyStore(storage.db, loadKeyEncryptionKey(zoneDir), Date.now);
  await ks.ensureSigningKey('EdDSA', 600);
  const set = await ks.load('EdDSA');
  process.stdout.write(JSON.stringify({ kid: set.active.kid, d: set.active.privateJwk.d !== undefined, hmac: (await ks.secret('client-secret-hmac')).toString('base64') }) + '\\n');
} finally {
  await storage.close();
}
`,
  );
  return file;
}

function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  if (!extra.GATEHOUSE_MASTER_KEY) delete env.GATEHOUSE_MASTER_KEY;
  delete env.GATEHOUSE_KMS;
  return env;
}

/** The names of the files that differ between two snapshots (a short message, not megabytes of base64). */
function changed(a: Map<string, string>, b: Map<string, string>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k));
}

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      // the WAL is checkpointed into the database when it closes; -shm is an index of it
      else if (!e.name.endsWith('-shm') && !e.name.endsWith('-wal')) out.set(path.relative(dir, p), readFileSync(p).toString('base64'));
    }
  };
  walk(dir);
  return out;
}

test('an older zone (v1 under its master.key file): re-sealed under the vault master key; SIGKILL midway, the rerun completes; nothing lost; the old key file removed', async () => {
  const tmp = tempDir('gh-keys-sealed-');
  try {
    const stateDir = path.join(tmp.dir, 'state');
    const oldKey = randomBytes(32);
    const l = await legacyZone(stateDir, oldKey, true);
    assert.deepEqual(await checkZone(l, oldKey, undefined), { v1: l.plain.size, v2: 0 });
    const script = openerScript(tmp.dir);
    const env = envWith({});
    const child = spawn(NODE, [script, l.zoneDir], { stdio: 'ignore', env });
    const exited = new Promise((r) => child.once('exit', r));
    // killed once some, not all, TOTP secrets are re-sealed
    const db = new DatabaseSync(path.join(l.zoneDir, 'authority.sqlite'), { readOnly: true });
    const count = db.prepare("select count(*) as n from users where totp_secret like 'v2.%'");
    let n = 0;
    let done = false;
    void exited.then(() => (done = true));
    for (let i = 0; i < 6000 && !done; i++) {
      n = Number((count.get() as { n: number }).n);
      if (n > 0 && n < USERS) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    db.close();
    child.kill('SIGKILL');
    await exited;
    const kms = loadKms(stateDir, { mayCreate: false, env: {} });
    const midway = await checkZone(l, oldKey, kms);
    assert.ok(midway.v2 > 0 && midway.v1 > 0, `killed midway (${JSON.stringify(midway)}: v2 ${n} users when the kill was sent)`);
    assert.ok(existsSync(path.join(l.zoneDir, 'master.key')), 'the old key file is kept while v1 values remain');

    const rerun = spawnSync(NODE, [script, l.zoneDir], { encoding: 'utf8', env });
    assert.equal(rerun.status, 0, rerun.stderr);
    const opened = JSON.parse(rerun.stdout) as { kid: string; d: boolean; hmac: string };
    assert.ok(opened.d, 'the active signing key opens with its private part');
    assert.equal(opened.hmac, l.plain.get('secret:client-secret-hmac'));
    assert.deepEqual(await checkZone(l, oldKey, kms), { v1: 0, v2: l.plain.size });
    assert.equal(existsSync(path.join(l.zoneDir, 'master.key')), false, 'the old key file is gone once nothing is sealed under it');
    assert.equal(statSync(path.join(stateDir, 'vault', 'master.key')).mode & 0o777, 0o600);

    // a third open changes no value (nothing sealed twice)
    const before = new DatabaseSync(path.join(l.zoneDir, 'authority.sqlite'), { readOnly: true });
    const snapshot = JSON.stringify(before.prepare('select id, totp_secret from users order by id').all());
    before.close();
    assert.equal(spawnSync(NODE, [script, l.zoneDir], { encoding: 'utf8', env }).status, 0);
    const after = new DatabaseSync(path.join(l.zoneDir, 'authority.sqlite'), { readOnly: true });
    assert.equal(JSON.stringify(after.prepare('select id, totp_secret from users order by id').all()), snapshot);
    after.close();
  } finally {
    tmp.remove();
  }
});

test('an older zone sealed under GATEHOUSE_MASTER_KEY itself moves under a zone KEK sealed by that master key; a wrong master key refuses and changes nothing', async () => {
  const tmp = tempDir('gh-keys-sealed-');
  try {
    const stateDir = path.join(tmp.dir, 'state');
    const master = randomBytes(32);
    const l = await legacyZone(stateDir, master, false);
    const script = openerScript(tmp.dir);
    const wrong = Buffer.alloc(32, 3).toString('hex');

    // wrong key, older state: no v1 value opens → refused before anything is written
    const before = files(stateDir);
    const refused = spawnSync(NODE, [script, l.zoneDir], { encoding: 'utf8', env: envWith({ GATEHOUSE_MASTER_KEY: wrong }) });
    assert.notEqual(refused.status, 0);
    assert.match(refused.stderr, /cannot decrypt .*refusing to start \(nothing was changed\)/);
    assert.ok(!refused.stderr.includes(wrong) && !refused.stderr.includes(master.toString('hex')), 'no key in the message');
    assert.deepEqual(changed(files(stateDir), before), [], 'nothing written');

    const ok = spawnSync(NODE, [script, l.zoneDir], { encoding: 'utf8', env: envWith({ GATEHOUSE_MASTER_KEY: master.toString('base64') }) });
    assert.equal(ok.status, 0, ok.stderr);
    assert.deepEqual(await checkZone(l, master, localKms(Buffer.from(master), 'test')), { v1: 0, v2: l.plain.size });
    assert.equal(existsSync(path.join(stateDir, 'vault', 'master.key')), false, 'no key file when the key is in the environment');

    // wrong key, migrated state: the check value refuses; nothing written
    const sealed = files(stateDir);
    const again = spawnSync(NODE, [script, l.zoneDir], { encoding: 'utf8', env: envWith({ GATEHOUSE_MASTER_KEY: wrong }) });
    assert.notEqual(again.status, 0);
    assert.match(again.stderr, /MasterKeyError|refusing to start \(nothing was changed\)/);
    assert.deepEqual(changed(files(stateDir), sealed), [], 'nothing written');
    // and without any key: the key file is missing while things are sealed → refused, no new key created
    const none = spawnSync(NODE, [script, l.zoneDir], { encoding: 'utf8', env: envWith({}) });
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /is missing; refusing to start/);
    assert.equal(existsSync(path.join(stateDir, 'vault', 'master.key')), false);
  } finally {
    tmp.remove();
  }
});

/** The CA's keys as an older version stored them: the root under a (dev) passphrase, issuer keys as plain PEM, no master key. */
async function legacyCa(stateDir: string): Promise<void> {
  const topology = parseTopology(TOPOLOGY_YAML, 'test.yaml');
  await initCa({ stateDir, topology });
  const kms = loadKms(stateDir, { mayCreate: false, env: {} });
  const pki = path.join(stateDir, 'pki');
  const root = JSON.parse(readFileSync(path.join(pki, 'root-key.enc.json'), 'utf8'));
  const der = (await kms.unwrap(Buffer.from(root.sealed, 'base64url'), 'pki:root'))!;
  const passphrase = randomBytes(24).toString('base64url');
  writeFileSync(path.join(pki, 'root-key.enc.json'), JSON.stringify(sealKey(der, passphrase), null, 2) + '\n', { mode: 0o600 });
  writeFileSync(path.join(pki, 'root-passphrase'), passphrase + '\n', { mode: 0o600 });
  for (const f of readdirSync(path.join(pki, 'issuers')).filter((f) => f.endsWith('.key'))) {
    const name = f.slice(0, -4);
    const sealed = JSON.parse(readFileSync(path.join(pki, 'issuers', f), 'utf8')).sealed as string;
    const key = (await kms.unwrap(Buffer.from(sealed, 'base64url'), `pki:issuer:${name}`))!;
    writeFileSync(path.join(pki, 'issuers', f), x509.PemConverter.encode(key, 'PRIVATE KEY') + '\n', { mode: 0o600 });
  }
  rmSync(path.join(stateDir, 'vault'), { recursive: true });
}

/** Each CA key file is in its old or its new form, and opens to the key of its certificate. */
async function checkCa(stateDir: string): Promise<{ sealed: number; legacy: number }> {
  const pki = path.join(stateDir, 'pki');
  const kms = existsSync(path.join(stateDir, 'vault', 'master.key')) ? loadKms(stateDir, { mayCreate: false, env: {} }) : undefined;
  const counts = { sealed: 0, legacy: 0 };
  const open = async (file: string, aad: string): Promise<Buffer> => {
    const text = readFileSync(file, 'utf8');
    if (text.startsWith('-----BEGIN')) {
      counts.legacy++;
      return Buffer.from(x509.PemConverter.decodeFirst(text));
    }
    const j = JSON.parse(text);
    if (j.v === 1) {
      counts.legacy++;
      const { openKey } = await import('../src/pki/lib/key-envelope.ts');
      return openKey(j, readFileSync(path.join(pki, 'root-passphrase'), 'utf8').trim());
    }
    counts.sealed++;
    assert.ok(kms, `${file} is sealed, so the master key exists`);
    const der = await kms.unwrap(Buffer.from(j.sealed, 'base64url'), aad);
    assert.ok(der, `${file} opens`);
    return der;
  };
  const rootDer = await open(path.join(pki, 'root-key.enc.json'), 'pki:root');
  assert.ok(new X509Certificate(readFileSync(path.join(pki, 'bundle.pem'))).checkPrivateKey(createPrivateKey({ key: rootDer, format: 'der', type: 'pkcs8' })));
  for (const name of ['_control', 'public', 'private']) {
    const der = await open(path.join(pki, 'issuers', `${name}.key`), `pki:issuer:${name}`);
    assert.ok(new X509Certificate(readFileSync(path.join(pki, 'issuers', `${name}.pem`))).checkPrivateKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })), `issuer ${name}`);
  }
  return counts;
}

test('an older CA (passphrase root, plain PEM issuer keys): `ca init` re-seals them under the master key; SIGKILL at any moment and a rerun lose nothing', async (t) => {
  const tmp = tempDir('gh-ca-sealed-');
  try {
    const stateDir = path.join(tmp.dir, 'state');
    const config = path.join(tmp.dir, 'gatehouse.yaml');
    writeFileSync(config, TOPOLOGY_YAML);
    await legacyCa(stateDir);
    assert.deepEqual(await checkCa(stateDir), { sealed: 0, legacy: 4 });
    const args = [MAIN, 'ca', 'init', '--config', config, '--state-dir', stateDir];
    const env = envWith({});
    // kills at growing delays until a run completes on its own; after each, every key still opens
    const outcomes: string[] = [];
    for (let delay = 150; delay < 15_000; delay += 60) {
      const child = spawn(NODE, args, { stdio: 'ignore', env });
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      const timer = setTimeout(() => child.kill('SIGKILL'), delay);
      const code = await exited;
      clearTimeout(timer);
      const c = await checkCa(stateDir);
      outcomes.push(`${delay}ms: ${code === null ? 'killed' : `exit ${code}`} sealed ${c.sealed}/4`);
      if (code !== null) {
        assert.equal(code, 0, outcomes.join('; '));
        break;
      }
    }
    t.diagnostic(outcomes.join('; '));
    assert.ok(outcomes.length > 1 && outcomes[0]!.includes('killed'), `at least one run was killed first: ${outcomes.join('; ')}`);
    assert.deepEqual(await checkCa(stateDir), { sealed: 4, legacy: 0 }, outcomes.join('; '));
    assert.equal(existsSync(path.join(stateDir, 'pki', 'root-passphrase')), false, 'the dev passphrase is gone');
    for (const f of readdirSync(path.join(stateDir, 'pki', 'issuers'))) assert.ok(!readFileSync(path.join(stateDir, 'pki', 'issuers', f), 'utf8').includes('PRIVATE KEY'), f);
    // the CA works: a workload identity from the re-sealed issuer
    const id = await issueWorkloadIdentity(stateDir, `spiffe://${TD}/zone/private/svc/orders`);
    assert.equal(id.spiffeId, `spiffe://${TD}/zone/private/svc/orders`);

    // a wrong master key: refused, nothing changed
    const snapshot = files(stateDir);
    const wrong = Buffer.alloc(32, 9).toString('base64');
    const r = spawnSync(NODE, args, { encoding: 'utf8', env: envWith({ GATEHOUSE_MASTER_KEY: wrong }) });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /refusing/);
    assert.ok(!r.stderr.includes(wrong));
    await assert.rejects(openCa({ stateDir, env: { GATEHOUSE_MASTER_KEY: wrong } }), MasterKeyError);
    assert.deepEqual(changed(files(stateDir), snapshot), []);
  } finally {
    tmp.remove();
  }
});

test('four zones of a fresh state dir opened at the same moment by four processes: one master key is created, every zone seals under it', async () => {
  const tmp = tempDir('gh-keys-race-');
  try {
    const stateDir = path.join(tmp.dir, 'state');
    const script = openerScript(tmp.dir);
    const zones = ['a', 'b', 'c', 'd'].map((z) => path.join(stateDir, 'authority', z));
    for (const z of zones) mkdirSync(z, { recursive: true });
    const runs = await Promise.all(
      zones.map(
        (z) =>
          new Promise<{ code: number | null; err: string }>((resolve) => {
            const child = spawn(NODE, [script, z], { env: envWith({}), stdio: ['ignore', 'ignore', 'pipe'] });
            let err = '';
            child.stderr.on('data', (c: Buffer) => (err += c.toString()));
            child.once('exit', (code) => resolve({ code, err }));
          }),
      ),
    );
    for (const r of runs) assert.equal(r.code, 0, r.err);
    const kms = loadKms(stateDir, { mayCreate: false, env: {} });
    for (const z of zones) {
      const db = new DatabaseSync(path.join(z, 'authority.sqlite'), { readOnly: true });
      const row = db.prepare('select value from secrets where name = ?').get(KEK_ROW) as { value: string };
      db.close();
      const kek = await kms.unwrap(Buffer.from(row.value.slice(3), 'base64url'), `authority-kek:${path.basename(z)}`);
      assert.equal(kek?.length, 32, `zone ${path.basename(z)}'s KEK opens with the one master key`);
    }
    assert.deepEqual(readdirSync(path.join(stateDir, 'vault')).sort(), ['master.check', 'master.key'], 'no temporary file left');
  } finally {
    tmp.remove();
  }
});

test('the vault, the CA and the authorities share one master key: a vault opened with another key refuses once the CA sealed under the first', async () => {
  const tmp = tempDir('gh-keys-shared-');
  try {
    const stateDir = path.join(tmp.dir, 'state');
    await initCa({ stateDir, topology: parseTopology(TOPOLOGY_YAML, 'test.yaml'), env: {} });
    const key = readFileSync(path.join(stateDir, 'vault', 'master.key'), 'utf8').trim();
    const other = Buffer.alloc(32, 1).toString('base64');
    await assert.rejects(openVault({ stateDir, env: { GATEHOUSE_MASTER_KEY: other } }), (e: unknown) => e instanceof MasterKeyError && /refusing to start/.test(e.message) && !e.message.includes(other));
    const store = new DatabaseSync(path.join(stateDir, 'vault', 'vault.sqlite'), { readOnly: true });
    assert.equal((store.prepare('select count(*) as n from vault_meta').get() as { n: number }).n, 0, 'the vault store holds nothing sealed');
    store.close();
    const v = await openVault({ stateDir, env: { GATEHOUSE_MASTER_KEY: key } });
    await v.createKey('pii');
    assert.equal((await v.decrypt('pii', await v.encrypt('pii', 'x', 'c'), 'c')).toString(), 'x');
    await v.close();
  } finally {
    tmp.remove();
  }
});
