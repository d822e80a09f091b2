import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import cedar, { type Config, type State } from './index.ts';
import { CedarConfig, isPolicyFile } from './schema.ts';
import { GatehouseError } from '../../../shared/errors.ts';
import { frozenClock } from '../../../shared/clock.ts';
import { createLogger } from '../../../shared/logger.ts';
import { ConfigError } from '../../../topology/config-error.ts';
import { createSharedResources, type Exchange, type Identity, type ProvisionContext } from '../policy.ts';
import type { CompiledRoute } from '../../router.ts';
import type { LoadedTopology } from '../../../topology/load.ts';

const clock = frozenClock(Date.UTC(2026, 0, 1, 12, 0, 0));

function context(dir = tmpdir(), lines: string[] = [], level = 'info'): ProvisionContext {
  return {
    topology: { file: path.join(dir, 'gatehouse.yaml'), dir, topology: {} } as LoadedTopology,
    zone: 'public',
    stateDir: dir,
    clock,
    logger: createLogger({ name: 'test', level, destination: { write: (s: string) => void lines.push(s) } }),
    shared: createSharedResources(),
  };
}

function identity(kind: Identity['kind'], sub: string, extra: Partial<Identity> = {}): Identity {
  return { kind, sub, scopes: new Set(), roles: new Set(), amr: [], ...extra };
}

function exchange(o: { method?: string; route?: string; path?: string; ip?: string; identity?: Identity } = {}): Exchange {
  return {
    method: o.method ?? 'GET',
    path: o.path ?? '/api/orders',
    query: '',
    host: 'shop.test',
    headers: {},
    clientAddress: o.ip ?? '203.0.113.7',
    requestId: 'req-42',
    zone: 'public',
    route: { name: o.route ?? 'orders', config: { service: 'orders-api' } } as CompiledRoute,
    // the request's one instant, read from the gateway's clock when the request arrived
    now: clock.now(),
    identity: o.identity,
    upstreamHeaders: [],
    responseHeaders: {},
    onDone: [],
    pathParams: () => ({}),
    readBody: async () => Buffer.alloc(0),
  };
}

async function unit(policies: string, ctx = context()) {
  const config: Config = CedarConfig.parse({ policies });
  const state: State = await cedar.provision(config, ctx);
  return (ex: Exchange) => cedar.onRequest(ex, state);
}

const admitted = (d: unknown) => d === undefined;
function refused(d: unknown) {
  assert.ok(d instanceof GatehouseError, 'a refusal');
  assert.equal(d.status, 403);
  assert.equal(d.code, 'forbidden');
  assert.equal(d.message, 'denied by policy');
  return true;
}

test('schema: defaults, strictness, shadow round-trips, file or inline', () => {
  assert.deepEqual(CedarConfig.parse({ policies: 'authz.cedar' }), { policies: 'authz.cedar', shadow: false });
  assert.deepEqual(CedarConfig.parse({ policies: 'authz.cedar', shadow: true }), { policies: 'authz.cedar', shadow: true });
  const again = CedarConfig.parse(JSON.parse(JSON.stringify(CedarConfig.parse({ policies: 'a.cedar', shadow: true }))));
  assert.equal(again.shadow, true);
  assert.throws(() => CedarConfig.parse({}), 'policies is required');
  assert.throws(() => CedarConfig.parse({ policies: '' }));
  assert.throws(() => CedarConfig.parse({ policies: 'a.cedar', shdow: true }), 'a typo is an error');
  assert.equal(isPolicyFile('policies/authz.cedar'), true);
  assert.equal(isPolicyFile('permit(principal, action, resource);'), false);
  assert.equal(isPolicyFile('permit(principal, action, resource);\n// see x.cedar'), false);
  assert.equal(isPolicyFile('// a.cedar\nx.cedar'), false, 'a newline makes it inline text');
  assert.equal(cedar.id, 'cedar');
  assert.equal(cedar.phase, 'cedar');
});

test('permit by scope', async () => {
  const check = await unit('permit(principal, action, resource) when { principal.scopes.contains("orders:read") };');
  assert.ok(admitted(check(exchange({ identity: identity('user', 'alice', { scopes: new Set(['orders:read']) }) }))));
  assert.ok(refused(check(exchange({ identity: identity('user', 'alice', { scopes: new Set(['orders:write']) }) }))));
  assert.ok(refused(check(exchange({ identity: identity('client', 'svc', { scopes: new Set() }) }))));
});

test('forbid wins over permit', async () => {
  const check = await unit(`
    permit(principal, action, resource);
    forbid(principal, action == Gatehouse::Action::"DELETE", resource == Gatehouse::Route::"orders")
      unless { principal.roles.contains("admin") };`);
  const bob = identity('user', 'bob');
  assert.ok(admitted(check(exchange({ identity: bob }))));
  assert.ok(refused(check(exchange({ method: 'DELETE', identity: bob }))));
  assert.ok(admitted(check(exchange({ method: 'DELETE', identity: identity('user', 'root', { roles: new Set(['admin']) }) }))));
  assert.ok(admitted(check(exchange({ method: 'DELETE', route: 'catalog', identity: bob }))), 'another route');
});

test('no matching permit denies; a set with no policies denies everything', async () => {
  const check = await unit('permit(principal, action == Gatehouse::Action::"POST", resource == Gatehouse::Route::"orders");');
  assert.ok(admitted(check(exchange({ method: 'POST' }))));
  assert.ok(refused(check(exchange({ method: 'GET' }))));
  assert.ok(refused(check(exchange({ method: 'POST', route: 'catalog' }))));
  const empty = await unit('// nothing permitted yet\n');
  assert.ok(refused(empty(exchange())));
  assert.ok(refused(empty(exchange({ identity: identity('user', 'root', { roles: new Set(['admin']) }) }))));
});

test('a rule on context.ip ranges (IPv4-mapped IPv6 is the IPv4 address; no address, no entry)', async () => {
  const check = await unit(`
    permit(principal, action, resource) when { context.ip.isInRange(ip("10.0.0.0/8")) || context.ip.isInRange(ip("2001:db8::/32")) };`);
  assert.ok(admitted(check(exchange({ ip: '10.1.2.3' }))));
  assert.ok(admitted(check(exchange({ ip: '::ffff:10.1.2.3' }))));
  assert.ok(admitted(check(exchange({ ip: '2001:db8::5' }))));
  assert.ok(refused(check(exchange({ ip: '192.168.1.1' }))));
  assert.ok(refused(check(exchange({ ip: '11.0.0.1' }))));
  for (const bad of ['', 'unknown', '10.0.0.300']) assert.ok(refused(check(exchange({ ip: bad }))), JSON.stringify(bad));
});

test('a rule on context.mfa (and principal.mfa): only users with a second factor', async () => {
  const check = await unit(`
    permit(principal, action, resource);
    forbid(principal, action == Gatehouse::Action::"POST", resource) unless { context.mfa };
    forbid(principal, action == Gatehouse::Action::"PUT", resource) unless { principal.mfa };`);
  const otp = identity('user', 'alice', { amr: ['pwd', 'otp'] });
  const acr = identity('user', 'alice', { acr: 'urn:gatehouse:acr:mfa' });
  const pwd = identity('user', 'alice', { amr: ['pwd'] });
  for (const method of ['POST', 'PUT']) {
    assert.ok(admitted(check(exchange({ method, identity: otp }))), method);
    assert.ok(admitted(check(exchange({ method, identity: acr }))), method);
    assert.ok(refused(check(exchange({ method, identity: pwd }))), method);
    assert.ok(refused(check(exchange({ method, identity: identity('client', 'svc', { amr: ['otp'] }) }))), 'clients never count as MFA');
    assert.ok(refused(check(exchange({ method }))), 'anonymous');
  }
  assert.ok(admitted(check(exchange({ identity: pwd }))), 'GET needs no second factor');
});

test('rules on context.hour and context.time read the injected clock', async (t) => {
  const check = await unit(`
    permit(principal, action, resource) when { context.hour >= 9 && context.hour < 17 };
    forbid(principal, action, resource) when { context.time >= ${Date.UTC(2026, 5, 1) / 1000} };`);
  // the hour is UTC whatever the process time zone
  const tz = process.env.TZ;
  process.env.TZ = 'Asia/Kolkata';
  t.after(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
    clock.set(Date.UTC(2026, 0, 1, 12, 0, 0));
  });
  clock.set(Date.UTC(2026, 0, 1, 10, 30));
  assert.ok(admitted(check(exchange())));
  clock.set(Date.UTC(2026, 0, 1, 17, 0));
  assert.ok(refused(check(exchange())), '17:00 UTC is out of hours');
  clock.set(Date.UTC(2026, 0, 1, 8, 59, 59));
  assert.ok(refused(check(exchange())));
  clock.set(Date.UTC(2026, 4, 31, 16, 59, 59));
  assert.ok(admitted(check(exchange())));
  clock.set(Date.UTC(2026, 5, 1, 10, 0));
  assert.ok(refused(check(exchange())), 'after the cut-off time');
});

test('anonymous principal', async () => {
  const check = await unit(`
    permit(principal == Gatehouse::Anonymous::"anonymous",
           action in [Gatehouse::Action::"GET", Gatehouse::Action::"HEAD"],
           resource == Gatehouse::Route::"catalog");
    permit(principal is Gatehouse::User, action, resource);`);
  assert.ok(admitted(check(exchange({ route: 'catalog' }))));
  assert.ok(admitted(check(exchange({ route: 'catalog', method: 'HEAD' }))));
  assert.ok(refused(check(exchange({ route: 'catalog', method: 'POST' }))));
  assert.ok(refused(check(exchange({ route: 'orders' }))));
  assert.ok(admitted(check(exchange({ route: 'orders', identity: identity('user', 'alice') }))));
  assert.ok(refused(check(exchange({ route: 'catalog', identity: identity('client', 'svc') }))), 'a client is not anonymous');
});

test('consumer principal with roles, named by consumer', async () => {
  const check = await unit(`
    permit(principal is Gatehouse::Consumer, action, resource) when { principal.roles.contains("partner") };
    permit(principal == Gatehouse::Consumer::"acme", action == Gatehouse::Action::"GET", resource);`);
  const partner = identity('consumer', 'key-1', { consumer: 'globex', roles: new Set(['partner']) });
  assert.ok(admitted(check(exchange({ method: 'POST', identity: partner }))));
  assert.ok(refused(check(exchange({ method: 'POST', identity: { ...partner, roles: new Set(['reader']) } }))));
  assert.ok(refused(check(exchange({ method: 'POST', identity: identity('user', 'u', { roles: new Set(['partner']) }) }))), 'a user is not a consumer');
  const acme = identity('consumer', 'key-2', { consumer: 'acme' });
  assert.ok(admitted(check(exchange({ identity: acme }))));
  assert.ok(refused(check(exchange({ method: 'POST', identity: acme }))));
});

test('user, client and resource attributes: client id, issuer, service, path and zone', async () => {
  const check = await unit(`
    permit(principal is Gatehouse::User, action, resource)
      when { principal has client && principal.client == "shop-bff" && principal.issuer == "https://auth.test" };
    permit(principal == Gatehouse::Client::"reporting", action, resource)
      when { resource.service == "orders-api" && resource.zone == "public" && resource.path like "/api/orders/*" && context.path == resource.path };`);
  const bffUser = identity('user', 'alice', { clientId: 'shop-bff', issuer: 'https://auth.test' });
  assert.ok(admitted(check(exchange({ identity: bffUser }))));
  assert.ok(refused(check(exchange({ identity: { ...bffUser, clientId: 'other' } }))));
  assert.ok(refused(check(exchange({ identity: { ...bffUser, clientId: undefined } }))));
  assert.ok(refused(check(exchange({ identity: { ...bffUser, issuer: 'https://evil.test' } }))));
  const reporting = identity('client', 'ignored-sub', { clientId: 'reporting' });
  assert.ok(admitted(check(exchange({ path: '/api/orders/7', identity: reporting }))));
  assert.ok(refused(check(exchange({ path: '/api/other', identity: reporting }))));
});

test('a syntax error at provision names the policy file, line and column', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cedar-'));
  try {
    writeFileSync(path.join(dir, 'broken.cedar'), 'permit(principal, action, resource);\npermit(principal, action resource);\n');
    await assert.rejects(unit('broken.cedar', context(dir)), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, new RegExp(`${path.join(dir, 'broken.cedar').replace(/[.\\]/g, '\\$&')}:2:\\d+: `));
      return true;
    });
    await assert.rejects(unit('permit(principal, action, resource)\nforbid(', context(dir)), /inline Cedar policies \d+:\d+: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a policy that does not fit the entity model is refused at provision (a misspelt forbid would never apply)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cedar-'));
  try {
    writeFileSync(path.join(dir, 'typo.cedar'), 'permit(principal, action, resource);\nforbid(principal, action, resource) unless { context.MFA };\n');
    await assert.rejects(unit('typo.cedar', context(dir)), /typo\.cedar:2:\d+: .*MFA/);
    await assert.rejects(unit('permit(principal, action, resource) when { principal.client == "x" };'), /inline Cedar policies 1:44: .*attribute `client`/);
    await assert.rejects(unit('permit(principal, action == Gatehouse::Action::"TRACE", resource);'), /TRACE/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a policy file is read relative to the topology directory; a missing one is a config error', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-cedar-'));
  try {
    mkdirSync(path.join(dir, 'policies'));
    writeFileSync(path.join(dir, 'policies', 'authz.cedar'), 'permit(principal, action == Gatehouse::Action::"GET", resource);\n');
    const check = await unit('policies/authz.cedar', context(dir));
    assert.ok(admitted(check(exchange())));
    assert.ok(refused(check(exchange({ method: 'POST' }))));
    await assert.rejects(unit('policies/authz.cedar', context(tmpdir())), /cannot read the Cedar policy file \(ENOENT\)/);
    await assert.rejects(unit('policies/missing.cedar', context(dir)), (e: Error) =>
      e instanceof ConfigError && e.message.includes(path.join(dir, 'policies', 'missing.cedar')),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a policy that fails to evaluate refuses, though Cedar would skip it (a skipped forbid would allow)', async () => {
  const lines: string[] = [];
  const check = await unit(
    'permit(principal, action, resource);\nforbid(principal, action, resource) when { context.method == "POST" && context.time * 9223372036854775807 > 0 };',
    context(tmpdir(), lines),
  );
  assert.ok(admitted(check(exchange({ method: 'GET' }))), 'the && short-circuits: no error');
  assert.ok(refused(check(exchange({ method: 'POST' }))), 'the overflow refuses');
  await new Promise((r) => setImmediate(r));
  assert.ok(lines.some((l) => /policy1: .*overflow/.test(JSON.parse(l).errors?.join(' ') ?? '')), 'the log names the policy');
});

test('shadow mode: the config carries it and the unit still returns the denial (the chain lets it pass)', async () => {
  const config = CedarConfig.parse({ policies: 'forbid(principal, action, resource);', shadow: true });
  assert.equal(config.shadow, true);
  const state = await cedar.provision(config, context());
  assert.ok(refused(cedar.onRequest(exchange(), state)));
});

test('a denial never names the policy; the debug log does, with the request id', async () => {
  const lines: string[] = [];
  const check = await unit(
    'permit(principal, action, resource);\nforbid(principal, action, resource) when { context.method == "DELETE" };',
    context(tmpdir(), lines, 'debug'),
  );
  const d = check(exchange({ method: 'DELETE' })) as GatehouseError;
  assert.ok(refused(d));
  assert.doesNotMatch(JSON.stringify({ ...d, message: d.message }), /policy\d|context|DELETE/);
  await new Promise((r) => setImmediate(r));
  const entry = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'cedar decision');
  assert.ok(entry, 'a debug line');
  assert.equal(entry.requestId, 'req-42');
  assert.equal(entry.decision, 'deny');
  assert.deepEqual(entry.policies, ['policy1']);
});

test('the same text provisions to the same pre-parsed set (a reload does not pile up copies)', async () => {
  const text = 'permit(principal, action, resource);';
  const a = await cedar.provision(CedarConfig.parse({ policies: text }), context());
  const b = await cedar.provision(CedarConfig.parse({ policies: text }), context());
  const c = await cedar.provision(CedarConfig.parse({ policies: text + '\n' }), context());
  assert.equal(a.policySetId, b.policySetId);
  assert.notEqual(a.policySetId, c.policySetId);
  assert.ok(admitted(cedar.onRequest(exchange(), a)));
});
