import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import client from 'prom-client';
import rateLimit, { needsIdentity, type Config, type State } from './index.ts';
import { RateLimitConfig } from './schema.ts';
import { createRateLimitMetrics, RATE_LIMIT_METRICS, type RateLimitMetrics } from './metrics.ts';
import { createSharedResources, type Exchange, type Identity, type ProvisionContext, type SharedResources } from '../policy.ts';
import { frozenClock } from '../../../shared/clock.ts';
import { GatehouseError } from '../../../shared/errors.ts';
import type { CompiledRoute } from '../../router.ts';
import type { LoadedTopology } from '../../../topology/load.ts';

const clock = frozenClock();

function context(shared: SharedResources = createSharedResources()): ProvisionContext & { lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  return { topology: {} as LoadedTopology, zone: 'public', stateDir: '/nonexistent', clock, logger, shared, lines };
}

async function provision(raw: object, ctx = context()): Promise<State> {
  return rateLimit.provision(RateLimitConfig.parse(raw), ctx);
}

function exchange(o: { address?: string; route?: string; identity?: Partial<Identity> } = {}): Exchange {
  return {
    method: 'GET',
    path: '/',
    query: '',
    host: 'h',
    headers: {},
    clientAddress: o.address ?? '192.0.2.1',
    requestId: 'r',
    zone: 'public',
    route: { name: o.route ?? 'orders' } as CompiledRoute,
    now: clock.now(),
    identity: o.identity && { scopes: new Set(), roles: new Set(), amr: [], kind: 'consumer', sub: 'acme', ...o.identity },
    upstreamHeaders: [],
    responseHeaders: {},
    onDone: [],
    pathParams: () => ({}),
    readBody: async () => Buffer.alloc(0),
  };
}

/** Runs the unit (memory store: synchronous) and returns the exchange and the decision. */
function run(state: State, x: Exchange = exchange()) {
  const d = rateLimit.onRequest(x, state);
  assert.ok(!(d instanceof Promise), 'the memory store decides synchronously');
  return { x, d: d as GatehouseError | undefined };
}

function allowedCount(state: State, n: number, make = () => exchange()): number {
  let allowed = 0;
  for (let i = 0; i < n; i++) if (run(state, make()).d === undefined) allowed++;
  return allowed;
}

test('schema: defaults, limits and strictness', () => {
  const c = RateLimitConfig.parse({ limit: 100 });
  assert.deepEqual(c, {
    key: ['address'],
    limit: 100,
    windowSeconds: 60,
    tiers: {},
    missingIdentity: 'deny',
    ipv6PrefixBits: 64,
    headers: true,
    shadow: false,
    store: { type: 'memory', capacity: 100_000 },
  });
  assert.throws(() => RateLimitConfig.parse({}), 'a limit is required');
  assert.throws(() => RateLimitConfig.parse({ limit: 10, burst: 11 }), 'burst above limit');
  assert.throws(() => RateLimitConfig.parse({ limit: 10, tiers: { gold: { limit: 5, burst: 6 } } }));
  assert.throws(() => RateLimitConfig.parse({ limit: 10, key: ['address', 'address'] }));
  assert.throws(() => RateLimitConfig.parse({ limit: 10, key: [] }));
  assert.throws(() => RateLimitConfig.parse({ limit: 10, key: ['ip'] }));
  assert.throws(() => RateLimitConfig.parse({ limit: 10, windowSecs: 5 }), 'unknown fields are errors');
  assert.throws(() => RateLimitConfig.parse({ limit: 10, store: { type: 'redis', url: 'http://x' } }));
  assert.throws(() => RateLimitConfig.parse({ limit: 10, name: 'has "quotes"' }));
  assert.deepEqual(RateLimitConfig.parse({ limit: 1, store: { type: 'redis' } }).store, {
    type: 'redis',
    url: 'redis://127.0.0.1:6379',
    prefix: 'gatehouse:rl:',
    timeoutMs: 100,
    failOpen: false,
    leaseSeconds: 300,
  });
  assert.equal(rateLimit.id, 'rate_limit');
  assert.equal(rateLimit.phase, 'rate');
});

test('needsIdentity: identity key parts or tiers', () => {
  const n = (raw: object) => needsIdentity(RateLimitConfig.parse({ limit: 1, ...raw }) as Config);
  assert.equal(n({}), false);
  assert.equal(n({ key: ['address', 'route'] }), false);
  assert.equal(n({ key: ['consumer'] }), true);
  assert.equal(n({ key: ['route', 'user'] }), true);
  assert.equal(n({ tiers: { gold: { limit: 5 } } }), true);
});

test('RateLimit-Policy and RateLimit on every response, 429 with Retry-After when spent', async () => {
  const state = await provision({ limit: 10, windowSeconds: 60, burst: 3 });
  const first = run(state);
  assert.equal(first.d, undefined);
  assert.deepEqual(first.x.responseHeaders, {
    'ratelimit-policy': '"address:10/60s:b3";q=10;w=60',
    ratelimit: '"address:10/60s:b3";r=2;t=6',
  });
  run(state);
  assert.equal(run(state).x.responseHeaders.ratelimit, '"address:10/60s:b3";r=0;t=18');
  const refused = run(state);
  assert.ok(refused.d instanceof GatehouseError);
  assert.equal(refused.d.status, 429);
  assert.equal(refused.d.code, 'too_many_requests');
  assert.equal(refused.d.headers['retry-after'], '6');
  assert.deepEqual(refused.x.responseHeaders, {
    'ratelimit-policy': '"address:10/60s:b3";q=10;w=60',
    ratelimit: '"address:10/60s:b3";r=0;t=18',
  });
  clock.advance(5500);
  assert.equal(run(state).d?.headers['retry-after'], '1', 'rounded up, never 0');
  clock.advance(500);
  assert.equal(run(state).d, undefined);
  assert.equal(run(state, exchange({ address: '192.0.2.2' })).d, undefined, 'another address has its own bucket');
});

test('headers: false sends none; two units append to one list', async () => {
  const quiet = await provision({ limit: 5, headers: false });
  assert.deepEqual(run(quiet).x.responseHeaders, {});
  const ctx = context();
  const perAddress = await provision({ limit: 100, name: 'per-address' }, ctx);
  const perConsumer = await provision({ limit: 1000, windowSeconds: 3600, key: ['consumer'], name: 'per-consumer' }, ctx);
  const x = exchange({ address: '192.0.2.77', identity: { kind: 'consumer', sub: 'acme' } });
  run(perAddress, x);
  run(perConsumer, x);
  assert.deepEqual(x.responseHeaders, {
    'ratelimit-policy': '"per-address";q=100;w=60, "per-consumer";q=1000;w=3600',
    ratelimit: '"per-address";r=99;t=1, "per-consumer";r=999;t=4',
  });
});

test('tiers: the identity tier picks its limit and its own bucket; an unknown tier gets the default', async () => {
  const state = await provision({ key: ['consumer'], limit: 2, tiers: { gold: { limit: 5, windowSeconds: 10 } } });
  const gold = () => exchange({ identity: { kind: 'consumer', sub: 'acme', tier: 'gold' } });
  const other = () => exchange({ identity: { kind: 'consumer', sub: 'acme', tier: 'bronze' } });
  const none = () => exchange({ identity: { kind: 'consumer', sub: 'acme' } });
  const g = run(state, gold());
  assert.equal(g.x.responseHeaders['ratelimit-policy'], '"consumer:2/60s:gold";q=5;w=10');
  assert.equal(allowedCount(state, 10, gold), 4);
  assert.equal(allowedCount(state, 10, other), 2);
  assert.equal(allowedCount(state, 10, none), 0, 'no tier shares the default bucket with an unknown tier');
  assert.equal(run(state, none()).x.responseHeaders['ratelimit-policy'], '"consumer:2/60s";q=2;w=60');
});

test('per route: the same settings share buckets across routes unless route is in the key; different settings never share', async () => {
  const ctx = context();
  const zoneDefaultA = await provision({ limit: 3 }, ctx);
  const zoneDefaultB = await provision({ limit: 3 }, ctx);
  assert.equal(run(zoneDefaultA, exchange({ route: 'a' })).d, undefined);
  assert.equal(allowedCount(zoneDefaultB, 5, () => exchange({ route: 'b' })), 2, 'one bucket for the zone default');
  const perRoute = await provision({ limit: 3, key: ['address', 'route'] }, ctx);
  assert.equal(allowedCount(perRoute, 5, () => exchange({ route: 'a' })), 3);
  assert.equal(allowedCount(perRoute, 5, () => exchange({ route: 'b' })), 3);
  const override = await provision({ limit: 2 }, ctx);
  assert.equal(allowedCount(override, 5), 2, 'a route override with other numbers has its own buckets');
});

test('identity keys: a request without the identity is refused (403) or counted by address', async () => {
  const registry = new client.Registry();
  const metrics = createRateLimitMetrics(registry);
  const shared = createSharedResources();
  shared.get(RATE_LIMIT_METRICS, () => metrics);
  const deny = await provision({ key: ['user'], limit: 5 }, context(shared));
  const r = run(deny, exchange());
  assert.ok(r.d instanceof GatehouseError);
  assert.equal(r.d.status, 403);
  assert.equal(r.d.code, 'forbidden');
  assert.deepEqual(r.x.responseHeaders, {});
  assert.ok(run(deny, exchange({ identity: { kind: 'client', sub: 'svc' } })).d instanceof GatehouseError, 'no user in a client token');
  assert.equal(run(deny, exchange({ identity: { kind: 'user', sub: 'u1' } })).d, undefined);
  assert.equal(await counter(metrics, 'user:5/60s', 'missing_identity'), 2);
  const fallback = await provision({ key: ['user'], limit: 2, missingIdentity: 'address' });
  assert.equal(allowedCount(fallback, 5, () => exchange({ address: '198.51.100.1' })), 2);
  assert.equal(allowedCount(fallback, 5, () => exchange({ address: '198.51.100.2' })), 2);
  assert.equal(allowedCount(fallback, 5, () => exchange({ address: '198.51.100.1', identity: { kind: 'user', sub: 'u' } })), 2);
});

async function counter(metrics: RateLimitMetrics, policy: string, result: string): Promise<number | undefined> {
  return (await metrics.decisions.get()).values.find((v) => v.labels.policy === policy && v.labels.result === result)?.value;
}

test('concurrency: in-flight slots are released by exchange.onDone', async () => {
  const state = await provision({ key: ['consumer'], limit: 1000, concurrency: 2 });
  const acme = () => exchange({ identity: { kind: 'consumer', sub: 'acme' } });
  const a = run(state, acme());
  const b = run(state, acme());
  assert.equal(a.d, undefined);
  assert.equal(b.d, undefined);
  assert.equal(a.x.onDone.length, 1);
  const c = run(state, acme());
  assert.ok(c.d instanceof GatehouseError);
  assert.equal(c.d.status, 429);
  assert.equal(c.d.headers['retry-after'], '1');
  assert.match(c.d.message, /in flight/);
  assert.equal(c.x.onDone.length, 0, 'a refused request holds no slot');
  assert.equal(run(state, exchange({ identity: { kind: 'consumer', sub: 'other' } })).d, undefined, 'per consumer');
  for (const done of a.x.onDone) done();
  const d = run(state, acme());
  assert.equal(d.d, undefined, 'a finished request frees its slot');
  assert.ok(run(state, acme()).d instanceof GatehouseError);
  for (const done of [...b.x.onDone, ...d.x.onDone]) done();
  assert.equal(allowedCount(state, 2, acme), 2);
});

test('shadow: the denial is returned for the chain to log, and no headers are sent', async () => {
  const state = await provision({ limit: 1, shadow: true });
  const first = run(state);
  assert.equal(first.d, undefined);
  assert.deepEqual(first.x.responseHeaders, {});
  const second = run(state);
  assert.equal(second.d?.status, 429);
  assert.deepEqual(second.x.responseHeaders, {});
});

test('metrics: decisions are counted per policy on the registry the gateway shares', async () => {
  const registry = new client.Registry();
  const metrics = createRateLimitMetrics(registry);
  const shared = createSharedResources();
  shared.get(RATE_LIMIT_METRICS, () => metrics);
  const state = await provision({ limit: 2, name: 'login' }, context(shared));
  allowedCount(state, 5, () => exchange({ address: '203.0.113.200' }));
  assert.equal(await counter(metrics, 'login', 'allowed'), 2);
  assert.equal(await counter(metrics, 'login', 'limited'), 3);
  assert.match(await registry.metrics(), /gatehouse_gateway_rate_limit_decisions_total\{policy="login",result="limited"\} 3/);
});

test('an IPv6 client is one bucket per /64, and long identity keys are hashed, not truncated', async () => {
  const state = await provision({ limit: 2 });
  assert.equal(allowedCount(state, 10, (() => { let i = 0; return () => exchange({ address: `2001:db8:5:6::${(++i).toString(16)}` }); })()), 2);
  const long = await provision({ key: ['user'], limit: 1 });
  const base = 'u'.repeat(500);
  assert.equal(run(long, exchange({ identity: { kind: 'user', sub: `${base}1` } })).d, undefined);
  assert.equal(run(long, exchange({ identity: { kind: 'user', sub: `${base}2` } })).d, undefined, 'a different long key');
  assert.ok(run(long, exchange({ identity: { kind: 'user', sub: `${base}1` } })).d instanceof GatehouseError);
});

test('the memory store is shared by the units of a gateway and bounded by its capacity', async () => {
  const ctx = context();
  const a = await provision({ limit: 5, store: { type: 'memory', capacity: 50 } }, ctx);
  const b = await provision({ limit: 7, store: { type: 'memory', capacity: 50 } }, ctx);
  assert.equal(a.store, b.store);
  for (let i = 0; i < 500; i++) run(a, exchange({ address: `10.9.${i >> 8}.${i & 255}` }));
  assert.equal((a.store as unknown as { size: number }).size, 50);
});
