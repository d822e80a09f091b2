import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { EventFields } from '../monitor/event.ts';
import type { GatewayExchange } from './exchange.ts';
import type { Identity } from './policies/policy.ts';
import { createUsageEvents } from './usage-events.ts';

/** An exchange as respond sees it; the socket is a TLS one when `tls` is given. */
function ex(o: { route?: string; status?: number; source?: string; identity?: Partial<Identity>; error?: boolean; path?: string; tls?: string }): GatewayExchange {
  // o.tls: the client certificate's bytes (a connection without one has no TLS identity)
  const socket = { getPeerCertificate: () => (o.tls ? { raw: Buffer.from(o.tls) } : {}) };
  return {
    routed: o.route !== undefined,
    route: { name: o.route ?? '' },
    status: o.status ?? 200,
    error: o.error ? { code: 'unauthorized' } : undefined,
    clientAddress: o.source ?? '198.51.100.7',
    identity: o.identity ? ({ kind: 'user', sub: 'alice', scopes: new Set(), roles: new Set(), amr: [], ...o.identity } as Identity) : undefined,
    method: 'GET',
    path: o.path ?? '/api/orders/1',
    req: { socket },
  } as unknown as GatewayExchange;
}

function collect() {
  const events: EventFields[] = [];
  return { events, usage: createUsageEvents((e) => events.push(e), { intervalMs: 60_000, maxKeys: 4 }) };
}

test('traffic: requests summed per identity (subject, client, else source) and route, one event each at the interval', () => {
  const { events, usage } = collect();
  for (let i = 0; i < 3; i++) usage.observe(ex({ route: 'orders', identity: { sub: 'alice', clientId: 'web' } }));
  usage.observe(ex({ route: 'orders', identity: { kind: 'client', sub: 'batch', clientId: 'batch' } }));
  usage.observe(ex({ route: 'catalog', source: '203.0.113.9' }));
  usage.observe(ex({ route: 'catalog', source: '203.0.113.9', error: true })); // a refusal is an event of its own
  usage.observe(ex({})); // not routed
  assert.equal(events.filter((e) => e.type === 'traffic').length, 0, 'nothing before the interval ends');
  usage.close();
  const traffic = events.filter((e) => e.type === 'traffic');
  assert.deepEqual(
    traffic.map((e) => [e.route, e.subject, e.client, e.source, e.count]),
    [
      ['orders', 'alice', 'web', '198.51.100.7', 3],
      ['orders', undefined, 'batch', '198.51.100.7', 1],
      ['catalog', undefined, undefined, '203.0.113.9', 1],
    ],
  );
});

test('token_use: once per token, network and client certificate — again from another network or certificate', () => {
  const { events, usage } = collect();
  const alice = { jti: 'jti-1', exp: Math.floor(Date.now() / 1000) + 300, clientId: 'web' };
  usage.observe(ex({ route: 'orders', identity: alice, source: '198.51.100.7' }));
  usage.observe(ex({ route: 'orders', identity: alice, source: '198.51.100.99' })); // same /24
  usage.observe(ex({ route: 'orders', identity: alice, source: '203.0.113.5' }));
  usage.observe(ex({ route: 'orders', identity: alice, source: '203.0.113.5', tls: 'certificate A' }));
  usage.observe(ex({ route: 'orders', identity: alice, source: '203.0.113.5', tls: 'certificate A' }));
  usage.observe(ex({ route: 'orders', identity: alice, source: '203.0.113.5', tls: 'certificate B' }));
  usage.observe(ex({ route: 'orders', identity: { kind: 'consumer', sub: 'acme', consumer: 'acme', jti: 'key-prefix' } })); // an API key is not a token
  const uses = events.filter((e) => e.type === 'token_use');
  assert.deepEqual(
    uses.map((e) => [e.jti, e.subject, e.client, e.source, e.tls === undefined ? undefined : e.tls.startsWith('x5t#S256:')]),
    [
      ['jti-1', 'alice', 'web', '198.51.100.7', undefined],
      ['jti-1', 'alice', 'web', '203.0.113.5', undefined],
      ['jti-1', 'alice', 'web', '203.0.113.5', true],
      ['jti-1', 'alice', 'web', '203.0.113.5', true],
    ],
  );
  assert.notEqual(uses[2].tls, uses[3].tls);
  usage.close();
});

test('bounded: past maxKeys new identities and tokens wait for the next interval', () => {
  const { events, usage } = collect();
  for (let i = 0; i < 10; i++) usage.observe(ex({ route: 'r', identity: { sub: `u${i}`, jti: `j${i}` } }));
  assert.equal(events.filter((e) => e.type === 'token_use').length, 4);
  usage.flush();
  assert.equal(events.filter((e) => e.type === 'traffic').length, 4);
  usage.observe(ex({ route: 'r', identity: { sub: 'u9' } }));
  usage.close();
  assert.equal(events.filter((e) => e.type === 'traffic').length, 5, 'a new interval counts it');
});

test('upstream_status: the upstream answered 403 or 404 (path masked); other statuses and refusals are not', () => {
  const { events, usage } = collect();
  usage.observe(ex({ route: 'orders', status: 404, path: '/api/orders/4111111111111111', identity: { sub: 'mallory' } }));
  usage.observe(ex({ route: 'orders', status: 403, path: '/api/orders/7', identity: { sub: 'mallory' } }));
  usage.observe(ex({ route: 'orders', status: 500 }));
  usage.observe(ex({ route: 'orders', status: 404, error: true }));
  const statuses = events.filter((e) => e.type === 'upstream_status');
  assert.deepEqual(statuses.map((e) => [e.status, e.code, e.subject, e.route]), [
    [404, 'not_found', 'mallory', 'orders'],
    [403, 'forbidden', 'mallory', 'orders'],
  ]);
  assert.ok(!statuses[0].path!.includes('4111111111111111'), statuses[0].path);
  usage.close();
});
