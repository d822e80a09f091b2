// Hardening item 6 in the example, as `gatehouse up` runs it: the echo
// application (sidecar: true) is reachable only through its sidecar. A local
// process that connects straight to where the application listens — forging
// x-gatehouse-user and the caller — is refused; through the gateway and the
// sidecar it works, and the sidecar's secret never reaches the client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { lstatSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { sharedExample } from '../support/example-up.ts';
import { gatewaySpiffeId } from '../../src/pki/index.ts';

const ex = await sharedExample('127.0.1.3');

/** Where the echo application said it listens (its ready line in its log). */
function echoAppAddress(): string {
  const log = readFileSync(path.join(ex.stateDir, 'logs', 'service-echo.log'), 'utf8');
  const m = /gatehouse service: ready: service (\S+)/.exec(log);
  assert.ok(m, `no ready line in the echo application's log:\n${log.slice(-2000)}`);
  return m[1];
}

function direct(address: string, headers: Record<string, string>): Promise<{ status: number; type: string; body: string }> {
  const to = address.startsWith('unix:') ? { socketPath: address.slice(5) } : { host: new URL(address).hostname, port: Number(new URL(address).port) };
  return new Promise((resolve, reject) => {
    const req = http.request({ ...to, path: '/api/echo/x', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the echo application listens on an owner-only Unix socket in its 0700 run folder, not on a port', () => {
  const address = echoAppAddress();
  const socket = path.join(ex.stateDir, 'run', 'echo', 'app.sock');
  assert.equal(address, `unix:${socket}`);
  assert.ok(lstatSync(socket).isSocket());
  assert.equal(lstatSync(socket).mode & 0o777, 0o600);
  assert.equal(lstatSync(path.dirname(socket)).mode & 0o777, 0o700);
  assert.equal(lstatSync(path.join(ex.stateDir, 'run', 'echo', 'sidecar.secret')).mode & 0o777, 0o600);
});

test('a local process that reaches the echo application directly, forging who calls, is refused', async () => {
  const r = await direct(echoAppAddress(), {
    'x-gatehouse-user': 'admin',
    'x-gatehouse-caller': gatewaySpiffeId('shop.local', 'public'),
  });
  assert.equal(r.status, 403, r.body);
  assert.equal(r.type, 'application/problem+json');
  assert.ok(!r.body.includes('admin'));
});

test('through the gateway and the sidecar it works, and the shared secret never reaches the client', async () => {
  const client = ex.credentials.zones.public.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  const authority = ex.endpoints.zones.public.authority!;
  const t = await request(`${authority}/token`, {
    dispatcher: ex.edge,
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret!)}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read' }).toString(),
  });
  assert.equal(t.statusCode, 200);
  const { access_token } = (await t.body.json()) as { access_token: string };
  const r = await request(`${ex.endpoints.zones.public.gateway}/api/echo/hello`, { dispatcher: ex.edge, headers: { authorization: `Bearer ${access_token}` } });
  assert.equal(r.statusCode, 200);
  const text = await r.body.text();
  const seen = JSON.parse(text) as { headers: Record<string, string> };
  assert.equal(seen.headers['x-gatehouse-caller'], gatewaySpiffeId('shop.local', 'public'));
  assert.equal(seen.headers['x-gatehouse-user'], client.client_id);
  assert.equal(seen.headers['x-gatehouse-sidecar'], undefined);
  for (const secret of readFileSync(path.join(ex.stateDir, 'run', 'echo', 'sidecar.secret'), 'utf8').split('\n').filter(Boolean))
    assert.ok(!text.includes(secret), 'the sidecar secret reached the client');
});
