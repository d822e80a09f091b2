// A route's methods against its service's allow edges: the gateway passes HEAD
// on every GET route, so a meshed service whose edges for caller `gateway`
// lack HEAD answers 403 to a request the gateway accepted. `gatehouse
// validate` names such a route at its methods field; the example covers HEAD.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseTopology, loadTopology } from '../src/topology/load.ts';
import { routeMethodGaps } from '../src/topology/resolve.ts';
import { compilePolicy, decide } from '../src/mesh/index.ts';

const root = path.resolve(import.meta.dirname, '..');
const example = path.join(root, 'examples/shop/gatehouse.yaml');
const main = path.join(root, 'src/cli/main.ts');

const topology = (routes: string, services: string) => `version: 1
trustDomain: test.local
zones:
  edge:
    gateway:
      listen: 127.0.0.1:0
      admin: { listen: 127.0.0.1:0 }
    routes:
${routes}
services:
${services}
`;

const gaps = (routes: string, services: string) =>
  routeMethodGaps(parseTopology(topology(routes, services))).map((g) => `${g.path.join('.')}: ${g.message}`);

test('the example shop: the orders routes (GET brings HEAD) are allowed by the orders service for the gateway, HEAD included', () => {
  const t = loadTopology(example).topology;
  // no gap left: every service that a GET route reaches takes HEAD as GET
  assert.deepEqual(routeMethodGaps(t).map((g) => g.path.join('.')), []);
  // and the mesh agrees: the private gateway's HEAD on one order and on the list is allowed
  const orders = compilePolicy(t, 'orders');
  const gateway = { kind: 'gateway', zone: 'private' } as Parameters<typeof decide>[1];
  for (const [method, target] of [
    ['HEAD', '/api/orders/6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10'],
    ['HEAD', '/api/orders?limit=5'],
    ['GET', '/api/orders/6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10'],
    ['POST', '/api/orders'],
  ])
    assert.deepEqual(decide(orders, gateway, method, target, {}), { allow: true, caller: 'gateway:private' }, `${method} ${target}`);
  assert.equal(decide(orders, gateway, 'DELETE', '/api/orders', {}).allow, false);
});

test('gatehouse validate: a GET route whose service has no HEAD edge is a warning at the route methods (file:line:column), an error with --strict', () => {
  const run = (args: string[]) => spawnSync(process.execPath, [main, 'validate', ...args], { encoding: 'utf8', cwd: root, timeout: 30_000 });
  const good = run([example]);
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /ok \(.*9 route\(s\)\)/);
  assert.doesNotMatch(good.stdout, /warning/);
  assert.doesNotMatch(good.stderr, /warning/, 'no warning about the example routes');
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-edges-'));
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    topology(
      `      - name: one
        path: /api/orders/{id}
        methods: [GET]
        service: orders
        auth: anonymous`,
      `  orders:
    zone: edge
    run: svc.ts
    allow:
      - caller: gateway
        methods: [GET]
        paths: [{ path: /api/orders, match: prefix }]`,
    ),
  );
  const warned = run([file]);
  assert.equal(warned.status, 0, warned.stderr);
  // line 11 column 18 is the route's `[GET]`
  const message =
    'zones\\.edge\\.routes\\[0\\]\\.methods: service "orders" refuses HEAD from the gateway on /api/orders/\\{id\\}: none of its allow edges for caller gateway lists it for this path; a GET route answers HEAD too: list HEAD in the edge \\(with a handler that takes HEAD as GET\\)';
  assert.match(warned.stderr, new RegExp(`gatehouse\\.yaml:11:18: warning: ${message}\\n$`));
  assert.match(warned.stdout, /; 1 warning\(s\)\)/);
  const strict = run(['--strict', file]);
  assert.equal(strict.status, 2, strict.stdout);
  assert.match(strict.stderr, new RegExp(`gatehouse\\.yaml:11:18: ${message}\\ngatehouse: invalid configuration \\(1 problem\\)`));
  // the example as it was (orders edges without HEAD): its two orders GET routes are named
  const copy = path.join(dir, 'shop.yaml');
  writeFileSync(copy, readFileSync(example, 'utf8').replace(/methods: \[GET, HEAD, POST\]\n(\s+paths: \[\{ path: \/api\/orders \}\])/, 'methods: [GET, POST]\n$1').replace(/methods: \[GET, HEAD\]\n(\s+paths: \[\{ path: \/api\/orders\/)/, 'methods: [GET]\n$1'));
  mkdirSync(path.join(dir, 'openapi'));
  writeFileSync(path.join(dir, 'openapi', 'orders.yaml'), readFileSync(path.join(root, 'examples/shop/openapi/orders.yaml')));
  const old = run([copy]);
  assert.equal(old.status, 0, old.stderr);
  assert.match(old.stderr, /zones\.private\.routes\[0\]\.methods: service "orders" refuses HEAD from the gateway on \/api\/orders:/);
  assert.match(old.stderr, /zones\.private\.routes\[1\]\.methods: service "orders" refuses HEAD from the gateway on \/api\/orders\/\{id\}:/);
});

test('which edges cover a route: caller gateway, the method, and a path both match (templates, prefixes, rewrites)', () => {
  const route = (p: string, methods: string, extra = '') => `      - { path: '${p}', methods: ${methods}, service: s, auth: anonymous${extra} }`;
  const svc = (edges: string, extra = 'run: s.ts') => `  s:\n    zone: edge\n    ${extra}\n    allow:\n${edges}`;
  const edge = (methods: string, paths: string, caller = 'gateway') => `      - { caller: ${caller}, methods: ${methods}, paths: ${paths} }`;
  // covered: a prefix edge over a template route; an exact edge on an exact route
  assert.deepEqual(gaps(route('/a/{id}', '[GET]'), svc(edge('[GET, HEAD]', '[{ path: /a/, match: prefix }]'))), []);
  assert.deepEqual(gaps(route('/a', '[POST]'), svc(edge('[POST]', '[{ path: /a }]'))), []);
  // an edge for another caller does not count; neither does an exact edge on the template's parent
  assert.deepEqual(gaps(route('/a', '[POST]'), `${svc(edge('[POST]', '[{ path: /a }]', 'other'))}\n  other: { zone: edge, run: o.ts }`), [
    'zones.edge.routes.0.methods: service "s" refuses POST from the gateway on /a: none of its allow edges for caller gateway lists it for this path; list it in the edge, or drop it from the route',
  ]);
  assert.equal(gaps(route('/a/{id}', '[DELETE]'), svc(edge('[DELETE]', '[{ path: /a }]'))).length, 1);
  assert.equal(gaps(route('/a/{id}', '[DELETE]'), svc(edge('[DELETE]', '[{ path: /a/x }]'))).length, 0, 'an edge on one id narrows, and still overlaps');
  assert.equal(gaps(route('/a/{id}', '[DELETE]'), svc(edge('[DELETE]', '[{ path: /a/x/y }]'))).length, 1);
  assert.equal(gaps(route('/a/{id}', '[DELETE]'), svc(edge('[DELETE]', '[{ path: /b, match: prefix }]'))).length, 1);
  // the method must be on an edge that reaches the path, not on any edge
  assert.equal(gaps(route('/a/{id}', '[PUT]'), svc(`${edge('[PUT]', '[{ path: /b }]')}\n${edge('[GET]', '[{ path: /, match: prefix }]')}`)).length, 1);
  // '*' is every method; a GET route brings HEAD
  const star = gaps(route('/e/', "'*'", ", match: prefix"), svc(edge('[GET, HEAD, POST]', '[{ path: /e, match: prefix }]')));
  assert.deepEqual(star.map((s) => /refuses ([A-Z, ]+) from/.exec(s)?.[1]), ['PUT, PATCH, DELETE, OPTIONS']);
  assert.match(gaps(route('/a', '[GET]'), svc(edge('[GET]', '[{ path: /a }]')))[0], /refuses HEAD .*a GET route answers HEAD too: list HEAD in the edge/);
  assert.match(gaps(route('/a', '[GET, PUT]'), svc(edge('[GET]', '[{ path: /a }]')))[0], /refuses PUT, HEAD .*list them in the edge, or drop them from the route \(a GET route answers HEAD too\)$/);
  assert.doesNotMatch(gaps(route('/a', '[GET, HEAD]'), svc(edge('[GET]', '[{ path: /a }]')))[0], /answers HEAD too/);
  // a rewrite: the edge sees the rewritten path
  const rewrite = ", match: prefix, rewrite: { prefix: /internal }";
  assert.deepEqual(gaps(route('/public', '[POST]', rewrite), svc(edge('[POST]', '[{ path: /internal, match: prefix }]'))), []);
  assert.equal(gaps(route('/public', '[POST]', rewrite), svc(edge('[POST]', '[{ path: /public, match: prefix }]'))).length, 1);
  // exact paths: a trailing slash is another path
  assert.equal(gaps(route('/a/', '[POST]'), svc(edge('[POST]', '[{ path: /a }]'))).length, 1);
  // a service with only an upstream and no edges is not meshed by Gatehouse: not checked; with edges it is
  assert.deepEqual(gaps(route('/a', '[POST]'), "  s: { zone: edge, upstream: 'http://127.0.0.1:9' }"), []);
  assert.equal(gaps(route('/a', '[POST]'), svc(edge('[GET]', '[{ path: /a }]'), "upstream: 'http://127.0.0.1:9'")).length, 1);
  // a meshed service with no edges at all refuses every method
  assert.equal(gaps(route('/a', '[GET]'), '  s: { zone: edge, run: s.ts }').length, 1);
});
