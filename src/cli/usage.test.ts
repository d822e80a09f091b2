import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { GatehouseError, problemBody } from '../shared/errors.ts';
import { usage, refused, exitCodeOf } from './usage.ts';

const main = path.join(import.meta.dirname, 'main.ts');
const EXAMPLE = path.join(import.meta.dirname, '../../examples/shop/gatehouse.yaml');
const run = (args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 60_000 });

test('verb errors come from the one registry: usage exits 2, a refusal 1, a config error 2', () => {
  const u = usage('gateway', '--workers must be a whole number from 1 to 256');
  assert.ok(u instanceof GatehouseError);
  assert.equal(u.verb, 'gateway');
  assert.deepEqual([u.code, u.status, exitCodeOf(u)], ['usage', 400, 2]);
  const r = refused('keys', 'no active key with prefix gh_x');
  assert.deepEqual([r.code, exitCodeOf(r)], ['refused', 1]);
  assert.equal(exitCodeOf(new GatehouseError('invalid_config', 'x')), 2);
  assert.equal(exitCodeOf(new GatehouseError('vault_not_allowed', 'x')), 1);
  // the same shape any HTTP surface would answer with
  assert.equal(problemBody(u, 'id').type, 'urn:gatehouse:problem:usage');
});

test('gatehouse prints a usage error once with its verb and exits 2 (a bad --workers, a bad audit --format)', () => {
  const workers = run(['gateway', '--config', EXAMPLE, '--zone', 'public', '--workers', '0']);
  assert.equal(workers.status, 2, workers.stderr);
  assert.equal(workers.stderr, 'gatehouse gateway: --workers must be a whole number from 1 to 256\n');
  const format = run(['audit', '--config', EXAMPLE, '--format', 'xml']);
  assert.equal(format.status, 2);
  assert.match(format.stderr, /^gatehouse audit: --format must be one of text, json, sarif\n$/);
});

test('gatehouse authority --ca-url: without a join token, or without --control, a usage error naming what is missing (exit 2)', () => {
  const env = { ...process.env, GATEHOUSE_JOIN_TOKEN: '', GATEHOUSE_CONTROL_URL: '' };
  const args = ['authority', '--config', EXAMPLE, '--zone', 'public', '--ca-url', 'https://127.0.0.1:1'];
  const noToken = spawnSync(process.execPath, [main, ...args, '--control', 'https://127.0.0.1:2/v1/bundles'], { encoding: 'utf8', timeout: 60_000, env });
  assert.equal(noToken.status, 2, noToken.stderr);
  assert.match(noToken.stderr, /^gatehouse authority: --ca-url needs GATEHOUSE_JOIN_TOKEN/);
  const noControl = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...env, GATEHOUSE_JOIN_TOKEN: 'file:/nonexistent' } });
  assert.equal(noControl.status, 2, noControl.stderr);
  assert.match(noControl.stderr, /^gatehouse authority: --ca-url is for the identity an authority following the control plane needs: give --control too/);
});
