// `gatehouse ca init|token|serve|issue|revoke` as an operator runs them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { tempDir, TOPOLOGY_YAML, TD } from './support/pki-fixtures.ts';
import { bootstrapIdentity, renewIdentity, CaRequestError } from '../src/pki/index.ts';

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, '..');
const cli = (args: string[], env: Record<string, string> = {}) =>
  run('sh', [path.join(root, 'scripts/node.sh'), path.join(root, 'src/cli/main.ts'), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
  });

test('ca init, token, serve, issue and revoke from the command line', async (t) => {
  const tmp = tempDir('gh-cli-');
  t.after(tmp.cleanup);
  const config = path.join(tmp.dir, 'gatehouse.yaml');
  writeFileSync(config, TOPOLOGY_YAML);
  const common = ['--config', config, '--state-dir', tmp.dir];

  const init = await cli(['ca', 'init', ...common], { GATEHOUSE_CA_PASSPHRASE: 'an operator passphrase' });
  assert.match(init.stdout, /created the root of test\.local; new zone issuers: public, private/);
  assert.equal(statSync(path.join(tmp.dir, 'pki/root-key.enc.json')).mode & 0o077, 0);

  const out = path.join(tmp.dir, 'gw');
  const issued = await cli(['ca', 'issue', '--gateway', 'public', '--out', out, ...common]);
  assert.match(issued.stdout, /spiffe:\/\/test\.local\/zone\/public\/gateway serial [0-9a-f]+/);
  assert.equal(statSync(path.join(out, 'key.pem')).mode & 0o777, 0o600);
  assert.equal(new X509Certificate(readFileSync(path.join(out, 'cert.pem'))).subjectAltName, `URI:spiffe://${TD}/zone/public/gateway`);
  await assert.rejects(cli(['ca', 'issue', '--service', 'nope', '--out', out, ...common]), /no service "nope"/);

  const token = (await cli(['ca', 'token', '--service', 'orders', ...common])).stdout.trim();
  assert.match(token, /^ghjt_/);

  const serve = spawn('sh', [path.join(root, 'scripts/node.sh'), path.join(root, 'src/cli/main.ts'), 'ca', 'serve', ...common], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.after(() => serve.kill('SIGTERM'));
  const url = await new Promise<string>((resolve, reject) => {
    let err = '';
    serve.stderr.setEncoding('utf8');
    serve.stderr.on('data', (c: string) => {
      err += c;
      const m = /gatehouse ca: ready: ca (https:\/\/127\.0\.0\.1:\d+)/.exec(err);
      if (m) resolve(m[1]);
    });
    serve.on('exit', () => reject(new Error(`ca serve exited: ${err}`)));
  });
  const bundlePem = readFileSync(path.join(tmp.dir, 'pki/bundle.pem'), 'utf8');
  const id = await bootstrapIdentity({ caUrl: url, joinToken: token, service: 'orders', trustDomain: TD, bundlePem });
  assert.equal(id.spiffeId, `spiffe://${TD}/zone/private/svc/orders`);

  const revoked = await cli(['ca', 'revoke', id.serial, ...common]);
  assert.match(revoked.stdout, new RegExp(`revoked ${id.serial}; peers refuse it within \\d+ s`));
  await assert.rejects(renewIdentity({ caUrl: url, trustDomain: TD, current: id }), (e: unknown) => (e as CaRequestError).code === 'certificate_revoked');
  const exited = new Promise((r) => serve.once('exit', r));
  serve.kill('SIGTERM');
  await exited;
});
