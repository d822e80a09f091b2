// The CLI verbs: `gatehouse authority` announces ready (with dev credentials)
// over IPC, and the admin verbs work against its state while it runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import * as oidc from 'openid-client';
import { tempDir, trustingFetch, writeTopology } from './support/authority-harness.ts';
import { loadTopology } from '../src/topology/load.ts';
import { openZoneStores } from '../src/authority/index.ts';

const root = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);
const gatehouse = (args: string[]) => run('sh', [path.join(root, 'scripts/node.sh'), path.join(root, 'src/cli/main.ts'), ...args], { cwd: root });

test('gatehouse authority + clients/users/keys admin verbs', async () => {
  const tmp = tempDir();
  const file = writeTopology(tmp.dir, { public: 'authority:\n  scopes: [orders:read, orders:write, catalog:read]\n' });
  const state = path.join(tmp.dir, 'state');
  const child = spawn('sh', [path.join(root, 'scripts/node.sh'), path.join(root, 'src/cli/main.ts'), 'authority', '--config', file, '--zone', 'public', '--state-dir', state, '--dev'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, GATEHOUSE_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  try {
    const ready = await new Promise<any>((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`authority exited ${code}: ${stderr}`)));
    });
    assert.equal(ready.type, 'gatehouse:ready');
    assert.equal(ready.component, 'authority');
    assert.equal(ready.zone, 'public');
    assert.match(ready.endpoints.authority, /^https:\/\/127\.0\.0\.1:\d+$/);
    const creds = ready.devCredentials;
    assert.equal(creds.clients.length, 2);
    assert.equal(creds.users.length, 1);
    assert.ok(!stderr.includes(creds.users[0].password), 'no secret on stderr');

    const common = ['--config', file, '--state-dir', state, '--zone', 'public'];
    const added = JSON.parse((await gatehouse(['clients', 'add', ...common, '--id', 'reports', '--grant', 'client_credentials', '--scope', 'orders:read'])).stdout);
    assert.equal(added.client_id, 'reports');
    assert.match(added.client_secret, /^[\w-]{43}$/);
    const list = JSON.parse((await gatehouse(['clients', 'list', ...common])).stdout);
    assert.ok(list.some((c: any) => c.client_id === 'reports' && c.scope === 'orders:read'));
    assert.ok(!JSON.stringify(list).includes(added.client_secret), 'list never shows a secret');

    const tf = trustingFetch(path.join(state, 'tls', 'dev-ca.pem'));
    try {
      const config = await oidc.discovery(new URL(ready.endpoints.authority), 'reports', undefined, oidc.ClientSecretBasic(added.client_secret), {
        [oidc.customFetch]: tf.fetch as any,
      });
      const t = await oidc.clientCredentialsGrant(config, { scope: 'orders:read' });
      assert.ok(t.access_token, 'a client added by the CLI works at the running authority');

      // the gateway's client reads the revocation feed; others may not
      const gw = JSON.parse((await gatehouse(['clients', 'add', ...common, '--id', 'public-gateway', '--grant', 'client_credentials', '--revocation-feed'])).stdout);
      const feed = (secretOf: string, id: string) =>
        tf.fetch(`${ready.endpoints.authority}/revocations`, { headers: { authorization: 'Basic ' + Buffer.from(`${id}:${secretOf}`).toString('base64') } });
      assert.equal((await feed(gw.client_secret, 'public-gateway')).status, 200);
      assert.equal((await feed(added.client_secret, 'reports')).status, 401);
      assert.ok(JSON.parse((await gatehouse(['clients', 'list', ...common])).stdout).find((c: any) => c.client_id === 'public-gateway').revocation_feed);
      // without --grant, --revocation-feed registers a client that only reads the feed
      const feedOnly = JSON.parse((await gatehouse(['clients', 'add', ...common, '--id', 'feed-only', '--revocation-feed'])).stdout);
      assert.equal((await feed(feedOnly.client_secret, 'feed-only')).status, 200);
      assert.deepEqual(JSON.parse((await gatehouse(['clients', 'list', ...common])).stdout).find((c: any) => c.client_id === 'feed-only').grant_types, []);
      const noToken = await tf.fetch(`${ready.endpoints.authority}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Basic ' + Buffer.from(`feed-only:${feedOnly.client_secret}`).toString('base64') },
        body: 'grant_type=client_credentials',
      });
      assert.equal(noToken.status, 401, 'the feed-only client gets no token');

      const before = (await (await tf.fetch(`${ready.endpoints.authority}/jwks`)).json()) as any;
      const rotated = JSON.parse((await gatehouse(['keys', 'rotate', ...common])).stdout);
      assert.ok(rotated.kid);
      let published = false;
      for (let i = 0; i < 40 && !published; i++) {
        await new Promise((r) => setTimeout(r, 250));
        const now = (await (await tf.fetch(`${ready.endpoints.authority}/jwks`)).json()) as any;
        published = now.keys.some((k: any) => k.kid === rotated.kid) && now.keys.length === before.keys.length + 1;
      }
      assert.ok(published, 'the running authority publishes the rotated key without a restart');

      assert.match((await gatehouse(['clients', 'remove', ...common, 'reports'])).stdout, /removed reports/);
      const after = await tf.fetch(`${ready.endpoints.authority}/token/introspection`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: 'Basic ' + Buffer.from(`reports:${added.client_secret}`).toString('base64'),
        },
        body: new URLSearchParams({ token: t.access_token }).toString(),
      });
      assert.equal(after.status, 401);
      assert.equal(((await after.json()) as any).error, 'invalid_client', 'a removed client cannot authenticate');
    } finally {
      await tf.close();
    }

    const user = JSON.parse((await gatehouse(['users', 'add', ...common, 'bob', '--email', 'bob@test.local'])).stdout);
    assert.equal(user.username, 'bob');
    assert.ok(user.password.length >= 16);
    assert.match(user.otpauth_uri, /^otpauth:\/\/totp\//);
    const users = JSON.parse((await gatehouse(['users', 'list', ...common])).stdout);
    assert.deepEqual(users.find((u: any) => u.username === 'bob'), { id: user.id, username: 'bob', locked: false, mfa: true, totp: true, passkeys: 0, roles: [] });

    // passkeys: listed (public data only) and removed by an administrator
    const stores = await openZoneStores(loadTopology(file), 'public', state);
    try {
      for (const id of ['cred-one', 'cred-two'])
        await stores.users.addPasskey(user.id, { id, name: id, publicKey: new Uint8Array([1, 2, 3]), counter: 7, transports: ['usb'], deviceType: 'singleDevice', backedUp: false, aaguid: '00000000-0000-0000-0000-000000000000' });
    } finally {
      await stores.storage.close();
    }
    const keys = JSON.parse((await gatehouse(['users', 'passkeys', ...common, 'bob'])).stdout);
    assert.deepEqual(keys.map((k: any) => [k.id, k.amr, k.counter]), [['cred-one', 'hwk', 7], ['cred-two', 'hwk', 7]]);
    assert.ok(!('publicKey' in keys[0]) && !('public_key' in keys[0]));
    assert.match((await gatehouse(['users', 'remove-passkey', ...common, 'bob', 'cred-one'])).stdout, /removed 1 passkey/);
    await assert.rejects(gatehouse(['users', 'remove-passkey', ...common, 'bob', 'cred-one']), /has no passkey cred-one/);
    assert.match((await gatehouse(['users', 'remove-passkey', ...common, 'bob', '--all'])).stdout, /removed 1 passkey/);
    assert.equal(JSON.parse((await gatehouse(['users', 'list', ...common])).stdout).find((u: any) => u.username === 'bob').passkeys, 0);
    assert.match((await gatehouse(['users', 'lock', ...common, 'bob'])).stdout, /locked bob/);
    const reset = JSON.parse((await gatehouse(['users', 'reset-mfa', ...common, 'bob'])).stdout);
    assert.notEqual(reset.totp_secret, user.totp_secret);
    const locked = JSON.parse((await gatehouse(['users', 'list', ...common])).stdout).find((u: any) => u.username === 'bob');
    assert.equal(locked.locked, true);
    await assert.rejects(gatehouse(['users', 'lock', ...common, 'nobody']), /no user nobody/);
  } finally {
    child.kill('SIGTERM');
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, 'SIGTERM shuts down cleanly');
    tmp.remove();
  }
});

test('users: roles given at `users add --role` and changed with `users roles --add/--remove`; bad role names are usage (2), an unknown user a refusal (1)', async () => {
  const tmp = tempDir();
  const file = writeTopology(tmp.dir, { corp: 'authority:\n  scopes: [directory:read]\n' });
  const common = ['--config', file, '--state-dir', path.join(tmp.dir, 'state'), '--zone', 'corp'];
  const exitOf = (args: string[]) =>
    gatehouse(args).then(
      () => 0,
      (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
    );
  try {
    const added = JSON.parse((await gatehouse(['users', 'add', ...common, 'carol', '--email', 'carol@test.local', '--role', 'corp-admins', '--role', 'staff', '--role', 'staff'])).stdout);
    assert.deepEqual(added.roles, ['corp-admins', 'staff']);
    const listed = () => JSON.parse(execFileSyncJson(['users', 'list', ...common])).find((u: any) => u.username === 'carol').roles;
    assert.deepEqual(listed(), ['corp-admins', 'staff']);
    assert.deepEqual(JSON.parse((await gatehouse(['users', 'roles', ...common, 'carol'])).stdout), { username: 'carol', roles: ['corp-admins', 'staff'] }, 'without --add/--remove: shown');
    const changed = JSON.parse((await gatehouse(['users', 'roles', ...common, 'Carol', '--add', 'auditors', '--remove', 'staff', '--remove', 'never-had'])).stdout);
    assert.deepEqual(changed.roles, ['corp-admins', 'auditors']);
    assert.deepEqual(listed(), ['corp-admins', 'auditors']);
    // the claims the authority issues from: the e-mail kept beside the roles
    const stores = await openZoneStores(loadTopology(file), 'corp', path.join(tmp.dir, 'state'));
    try {
      assert.deepEqual((await stores.users.byUsername('carol'))!.claims, { email: 'carol@test.local', roles: ['corp-admins', 'auditors'] });
    } finally {
      await stores.storage.close();
    }
    assert.deepEqual(JSON.parse((await gatehouse(['users', 'roles', ...common, 'carol', '--remove', 'corp-admins', '--remove', 'auditors'])).stdout).roles, []);

    for (const bad of ['', 'has space', '-leading', 'x'.repeat(65), 'rôle', 'a/b', 'a"b']) {
      const r = await exitOf(['users', 'roles', ...common, 'carol', '--add', bad]);
      assert.equal(typeof r === 'object' && r.code, 2, `${JSON.stringify(bad)} is no role name`);
      assert.match((r as { stderr: string }).stderr, /is not 1-64 letters/);
    }
    const badAdd = await exitOf(['users', 'add', ...common, 'dave', '--role', 'no way']);
    assert.equal(typeof badAdd === 'object' && badAdd.code, 2);
    assert.equal(JSON.parse(execFileSyncJson(['users', 'list', ...common])).some((u: any) => u.username === 'dave'), false, 'nothing added on a usage error');
    const nobody = await exitOf(['users', 'roles', ...common, 'nobody', '--add', 'staff']);
    assert.equal(typeof nobody === 'object' && nobody.code, 1);
    assert.match((nobody as { stderr: string }).stderr, /no user nobody in zone corp/);
    const many = Array.from({ length: 33 }, (_, i) => ['--add', `r${i}`]).flat();
    const tooMany = await exitOf(['users', 'roles', ...common, 'carol', ...many]);
    assert.equal(typeof tooMany === 'object' && tooMany.code, 1, 'more than 32 roles is refused');
    assert.match((tooMany as { stderr: string }).stderr, /at most 32 roles/);
  } finally {
    tmp.remove();
  }
});

function execFileSyncJson(args: string[]): string {
  return execFileSync('sh', [path.join(root, 'scripts/node.sh'), path.join(root, 'src/cli/main.ts'), ...args], { cwd: root, encoding: 'utf8' });
}
