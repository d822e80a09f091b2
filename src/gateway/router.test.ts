import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileRoutes, normaliseHost, pathParams, upstreamPath } from './router.ts';
import { Route } from '../topology/schema.ts';

const r = (o: Record<string, unknown>) => Route.parse({ service: 's', auth: 'anonymous', ...o });

test('exact beats prefix, the longest prefix wins, and prefixes match whole segments only', () => {
  const router = compileRoutes([
    r({ name: 'api', path: '/api', match: 'prefix' }),
    r({ name: 'public', path: '/api/public', match: 'prefix' }),
    r({ name: 'public-exact', path: '/api/public/health' }),
    r({ name: 'echo', path: '/api/echo/', match: 'prefix' }),
  ]);
  const name = (p: string) => router.match('h', p)?.byMethod.get('GET')?.name;
  assert.equal(name('/api/public'), 'public');
  assert.equal(name('/api/public/'), 'public');
  assert.equal(name('/api/public/x/y'), 'public');
  assert.equal(name('/api/public/health'), 'public-exact');
  assert.equal(name('/api/public/health/x'), 'public');
  assert.equal(name('/api/publicx'), 'api');
  assert.equal(name('/api/echo/'), 'echo');
  assert.equal(name('/api/echo/a/b'), 'echo');
  assert.equal(name('/api/echo'), 'api');
  assert.equal(name('/apix'), undefined);
  assert.equal(name('/'), undefined);
});

test('exact routes match only themselves', () => {
  const router = compileRoutes([r({ path: '/api/admin' })]);
  assert.ok(router.match('h', '/api/admin'));
  assert.equal(router.match('h', '/api/admin/'), undefined);
  assert.equal(router.match('h', '/API/admin'), undefined);
  assert.equal(router.match('h', '/api/admin/x'), undefined);
});

test('hosts: exact, then wildcard, then any-host routes', () => {
  const router = compileRoutes([
    r({ name: 'shop', hosts: ['Shop.Example.'], path: '/', match: 'prefix' }),
    r({ name: 'wild', hosts: ['*.example'], path: '/', match: 'prefix' }),
    r({ name: 'any', path: '/', match: 'prefix' }),
  ]);
  const name = (h: string) => router.match(h, '/x')?.byMethod.get('GET')?.name;
  assert.equal(name('shop.example'), 'shop');
  assert.equal(name('api.example'), 'wild');
  assert.equal(name('example'), 'any');
  assert.equal(name('other.test'), 'any');
});

test('host normalisation: case, port and trailing dot; garbage is refused', () => {
  assert.equal(normaliseHost('Shop.Example.:8443'), 'shop.example');
  assert.equal(normaliseHost('[::1]:8443'), '[::1]');
  assert.equal(normaliseHost('127.0.0.1'), '127.0.0.1');
  for (const bad of ['', 'a b', 'a:b', '[::1', '[::1]x', 'a/b', 'ex@mple', 'a:99999999']) assert.equal(normaliseHost(bad), undefined, bad);
});

test('host grammar: brackets hold an IPv6 address only, never IPvFuture or a name', () => {
  assert.equal(normaliseHost('[2001:DB8::1]'), '[2001:db8::1]');
  assert.equal(normaliseHost('[::ffff:127.0.0.1]:443'), '[::ffff:127.0.0.1]');
  for (const bad of ['[example.com]', '[127.0.0.1]', '[]', '[x";for=6.6.6.6;by="y]', '[v1.fe80::a+en1]', '[vF.addr]', '[::1]]', '[::1]:', '[[::1]]'])
    assert.equal(normaliseHost(bad), undefined, bad);
});

test(
  'host grammar: an IPv6 zone id is no part of the Host grammar (RFC 3986 IP-literal, RFC 9110 §7.2)',
  () => {
    for (const bad of ['[fe80::1%eth0]', '[fe80::1%25eth0]:8443']) assert.equal(normaliseHost(bad), undefined, bad);
  },
);

test('host grammar: a port is 0-65535 in at most five digits', () => {
  assert.equal(normaliseHost('example.com:65535'), 'example.com');
  assert.equal(normaliseHost('example.com:0'), 'example.com');
  assert.equal(normaliseHost('[::1]:65535'), '[::1]');
  for (const bad of ['example.com:65536', '[::1]:65536', 'example.com:99999', 'example.com:000443', 'example.com:-1', 'example.com:+80', 'example.com:8 0', 'example.com:80:80', 'example.com:0x50'])
    assert.equal(normaliseHost(bad), undefined, bad);
});

test('host grammar: DNS labels of 1-63 letters, digits and inner hyphens', () => {
  const label63 = 'a'.repeat(63);
  assert.equal(normaliseHost(`${label63}.example`), `${label63}.example`);
  assert.equal(normaliseHost('a-b.x-1.example'), 'a-b.x-1.example');
  assert.equal(normaliseHost('xn--bcher-kva.example'), 'xn--bcher-kva.example');
  const long = Array.from({ length: 4 }, () => 'a'.repeat(63)).join('.'); // 255 characters
  for (const bad of [
    `${'a'.repeat(64)}.example`,
    `x.${'a'.repeat(64)}`,
    long,
    '-leading.example',
    'trailing-.example',
    'a.-b.example',
    'a..example',
    '.example',
    'example..',
    'under_score.example',
    'ex ample.com',
    'exämple.com',
  ])
    assert.equal(normaliseHost(bad), undefined, bad);
});

test('host grammar: all-numeric labels are an IPv4 address and must be a valid one', () => {
  assert.equal(normaliseHost('192.0.2.1:8443'), '192.0.2.1');
  assert.equal(normaliseHost('10.0.0.1.'), '10.0.0.1');
  for (const bad of ['999.1.1.1', '256.0.0.1', '1.2.3', '1.2.3.4.5', '127.1', '2130706433', '01.02.03.04', '1.2.3.4..'])
    assert.equal(normaliseHost(bad), undefined, bad);
});

test('methods: GET implies HEAD, "*" means every proxied method', () => {
  const router = compileRoutes([r({ path: '/a' }), r({ path: '/b', methods: '*' }), r({ path: '/c', methods: ['POST'] })]);
  assert.deepEqual([...router.match('h', '/a')!.byMethod.keys()].sort(), ['GET', 'HEAD']);
  assert.deepEqual([...router.match('h', '/b')!.byMethod.keys()].sort(), ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT']);
  assert.deepEqual(router.match('h', '/c')!.allow, ['POST']);
});

test('routes on one path split by method: each method finds its own route, Allow lists them all', () => {
  const router = compileRoutes([
    r({ name: 'list', path: '/orders', methods: ['GET'] }),
    r({ name: 'create', path: '/orders', methods: ['POST'] }),
  ]);
  const group = router.match('h', '/orders')!;
  assert.equal(group.byMethod.get('GET')?.name, 'list');
  assert.equal(group.byMethod.get('HEAD')?.name, 'list');
  assert.equal(group.byMethod.get('POST')?.name, 'create');
  assert.equal(group.byMethod.get('DELETE'), undefined);
  assert.deepEqual(group.allow, ['GET', 'HEAD', 'POST']);
});

test('prefix rewrite keeps exactly one slash at the joint', () => {
  const [a] = compileRoutes([r({ path: '/api/echo/', match: 'prefix', rewrite: { prefix: '/echo/' } })]).routes;
  assert.equal(upstreamPath(a, '/api/echo/x/y'), '/echo/x/y');
  assert.equal(upstreamPath(a, '/api/echo/'), '/echo/');
  const [b] = compileRoutes([r({ path: '/api/v1', match: 'prefix', rewrite: { prefix: '/' } })]).routes;
  assert.equal(upstreamPath(b, '/api/v1'), '/');
  assert.equal(upstreamPath(b, '/api/v1/items'), '/items');
  const [c] = compileRoutes([r({ path: '/api/v1', match: 'prefix', rewrite: { prefix: '/v2' } })]).routes;
  assert.equal(upstreamPath(c, '/api/v1/items'), '/v2/items');
  assert.equal(upstreamPath(c, '/api/v1'), '/v2');
});

test('path templates: a {param} takes one whole non-empty segment; literal routes and literal segments win', () => {
  const router = compileRoutes([
    r({ name: 'one', path: '/api/orders/{id}', methods: ['GET', 'DELETE'] }),
    r({ name: 'mine', path: '/api/orders/mine' }),
    r({ name: 'items', path: '/api/orders/{id}/items/{item}' }),
    r({ name: 'latest-items', path: '/api/orders/latest/items/{item}' }),
    r({ name: 'fallback', path: '/api/', match: 'prefix' }),
  ]);
  const name = (p: string) => router.match('h', p)?.byMethod.get('GET')?.name;
  assert.equal(name('/api/orders/42'), 'one');
  assert.equal(name('/api/orders/mine'), 'mine');
  assert.equal(name('/api/orders/42/items/7'), 'items');
  assert.equal(name('/api/orders/latest/items/7'), 'latest-items');
  // backtracking: the literal branch fails further down, the parameter branch matches
  assert.equal(name('/api/orders/latest/items'), 'fallback');
  assert.equal(name('/api/orders/mine/items/3'), 'items');
  // not one segment: the template does not match, the prefix route does
  assert.equal(name('/api/orders/'), 'fallback');
  assert.equal(name('/api/orders/42/'), 'fallback');
  assert.equal(name('/api/orders/42/x'), 'fallback');
  assert.equal(name('/api/orders'), 'fallback');
  assert.deepEqual(router.match('h', '/api/orders/1')?.allow.sort(), ['DELETE', 'GET', 'HEAD']);
});

test('path parameters are read from the canonical path and percent-decoded once', () => {
  const [route] = compileRoutes([r({ path: '/t/{tenant}/orders/{id}' })]).routes;
  assert.deepEqual(route.params, [
    { name: 'tenant', segment: 1 },
    { name: 'id', segment: 3 },
  ]);
  assert.deepEqual(pathParams(route, '/t/acme/orders/a%2Fb'), { tenant: 'acme', id: 'a/b' });
  assert.deepEqual(pathParams(route, '/t/%E2%82%AC/orders/%ZZ'), { tenant: '€', id: '%ZZ' });
  const [plain] = compileRoutes([r({ path: '/plain' })]).routes;
  assert.equal(plain.params, undefined);
  assert.deepEqual(pathParams(plain, '/plain'), {});
});
