// The admin listener off loopback (for Prometheus scrapers): health, readiness
// and metrics answer anyone who reaches it, a reload only this machine.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkInterfaces } from 'node:os';
import { request } from 'undici';
import { createAdminServer } from '../src/gateway/admin.ts';

/** A non-loopback IPv4 address of this machine, to listen and connect on. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

test('POST /reload from another address is 403 and reloads nothing; GET /metrics and /healthz still answer; from loopback it reloads', { skip: external === undefined && 'this machine has no non-loopback IPv4 address' }, async () => {
  let reloads = 0;
  const options = {
    metrics: async () => 'gatehouse_up 1\n',
    contentType: 'text/plain; version=0.0.4',
    ready: () => true,
    reload: async () => ({ ok: true as const, generation: ++reloads }),
  };
  const outside = await createAdminServer({ ...options, listen: `${external}:0` });
  const inside = await createAdminServer({ ...options, listen: '127.0.0.1:0' });
  try {
    const refused = await request(`${outside.url}/reload`, { method: 'POST' });
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.headers['content-type'], 'application/problem+json');
    const body = (await refused.body.json()) as { code: string; detail: string };
    assert.equal(body.code, 'forbidden');
    assert.match(body.detail, /this machine only/);
    assert.equal(reloads, 0);
    const metrics = await request(`${outside.url}/metrics`);
    assert.equal(metrics.statusCode, 200);
    assert.equal(await metrics.body.text(), 'gatehouse_up 1\n');
    assert.equal((await request(`${outside.url}/healthz`)).statusCode, 200);
    const ok = await request(`${inside.url}/reload`, { method: 'POST' });
    assert.equal(ok.statusCode, 200);
    assert.deepEqual(await ok.body.json(), { status: 'reloaded', generation: 1 });
  } finally {
    await outside.close();
    await inside.close();
  }
});
