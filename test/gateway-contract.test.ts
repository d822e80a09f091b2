// Path templates and request contracts as a client sees them: routes like
// /api/orders/{id}, parameters and bodies checked against an OpenAPI 3.1
// document or JSON Schemas in the topology, and config errors that name the
// file, line and field when a contract cannot be compiled.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { Agent, request } from 'undici';
import { startUpstream, startFixture, type Upstream, type Fixture } from './support/gateway-fixture.ts';

const openapi = `openapi: 3.1.0
info: { title: orders, version: '1' }
paths:
  /api/orders:
    get:
      parameters:
        - { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 100 } }
        - { name: status, in: query, schema: { type: array, items: { enum: [open, shipped] } } }
        - $ref: '#/components/parameters/Tenant'
      responses: { '200': { description: ok } }
    post:
      parameters:
        - $ref: '#/components/parameters/Tenant'
      requestBody:
        required: true
        content:
          application/json:
            schema: { $ref: '#/components/schemas/NewOrder' }
          text/plain: {}
      responses: { '201': { description: created } }
  /api/orders/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: integer, minimum: 1 }, example: 42 }
    get:
      parameters:
        - { name: expand, in: query, explode: false, schema: { type: array, items: { enum: [items, customer] } } }
        - { name: session, in: cookie, schema: { type: string, pattern: '^[a-z]{4}$' } }
      responses: { '200': { description: ok } }
    delete:
      parameters:
        - { name: X-Confirm, in: header, required: true, schema: { const: 'yes' } }
      responses: { '204': { description: gone } }
components:
  parameters:
    Tenant: { name: X-Tenant, in: header, schema: { type: string, pattern: '^[a-z]{2,8}$' } }
  schemas:
    NewOrder:
      type: object
      required: [items]
      additionalProperties: false
      properties:
        items: { type: array, minItems: 1, items: { $ref: '#/components/schemas/Line' } }
        note: { type: string, maxLength: 40, x-internal: true }
    Line:
      type: object
      required: [sku, quantity]
      additionalProperties: false
      properties:
        sku: { type: string, format: uuid }
        quantity: { type: integer, format: int32, minimum: 1 }
        price: { type: string, format: decimal }
`;

const topology = (upstream: string, routes: string) => `version: 1
trustDomain: test.local
zones:
  edge:
    gateway:
      listen: 127.0.0.1:0
      admin: { listen: 127.0.0.1:0 }
    routes:
${routes}
services:
  app: { zone: edge, upstream: '${upstream}' }
`;

const routes = `      - { name: orders, path: /api/orders, methods: [GET, POST], service: app, auth: anonymous, validate: { openapi: openapi.yaml } }
      - name: order
        path: /api/orders/{id}
        methods: [GET, HEAD, DELETE]
        service: app
        auth: anonymous
        validate: { openapi: { document: openapi.yaml, unknownQuery: refuse } }
      - { name: mine, path: /api/orders/mine, methods: [GET], service: app, auth: anonymous, policies: { ip_rules: { deny: [127.0.0.0/8] } } }
      - name: item
        path: /api/shops/{shop}/items/{sku}
        methods: [GET]
        service: app
        auth: anonymous
        validate: { path: { type: object, properties: { sku: { type: string, pattern: '^[A-Z]{3}-[0-9]{3}$' } } } }
      - { name: v2, path: '/v2/orders/{id}', methods: [GET], service: app, auth: anonymous, validate: { openapi: { document: openapi.yaml, path: '/api/orders/{id}' } } }
      - { name: loose, path: '/api/loose/{id}', methods: [GET], service: app, auth: anonymous }`;

let up: Upstream;
let fx: Fixture;
let agent: Agent;

before(async () => {
  up = await startUpstream();
  fx = await startFixture(topology(up.url, routes), {}, { 'openapi.yaml': openapi });
  agent = new Agent({ connect: { ca: fx.ca } });
});
after(async () => {
  await agent?.close();
  await fx?.close();
  await up?.close();
});

const call = async (p: string, o: Parameters<typeof request>[1] = {}) => {
  const res = await request(fx.gateway.url + p, { dispatcher: agent, ...o });
  const text = await res.body.text();
  const json = res.headers['content-type']?.toString().includes('json') && text ? (JSON.parse(text) as Record<string, unknown>) : {};
  return { status: res.statusCode, json, headers: res.headers };
};
const detail = (r: { json: Record<string, unknown> }) => String(r.json.detail);

test('path templates: {id} matches one segment, a literal route wins, and the upstream gets the canonical path', async () => {
  const seen = up.seen.length;
  const one = await call('/api/orders/42');
  assert.equal(one.status, 200);
  assert.equal(one.json.path, '/api/orders/42');
  // percent-encoded unreserved characters are decoded once, before routing
  const encoded = await call('/api/orders/%34%32');
  assert.equal(encoded.status, 200);
  assert.equal(encoded.json.path, '/api/orders/42');
  assert.equal((await call('/api/orders/mine')).status, 403, 'the literal route (with its own rules) wins over {id}');
  assert.equal((await call('/api/orders/42/items')).status, 404);
  assert.equal((await call('/api/orders/')).status, 404);
  assert.equal((await call('/api/loose/anything-at-all')).status, 200);
  const wrongMethod = await call('/api/orders/42', { method: 'PUT' });
  assert.equal(wrongMethod.status, 405);
  assert.deepEqual(String(wrongMethod.headers.allow).split(/, */).sort(), ['DELETE', 'GET', 'HEAD']);
  assert.equal(up.seen.length, seen + 3);
});

test('a variant of a literal path (encoding, slashes, dot segments) never reaches the template route beside it', async () => {
  const { port } = new URL(fx.gateway.url);
  const raw = (target: string) =>
    new Promise<number>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: Number(port), ca: fx.ca, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () =>
        socket.write(`GET ${target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n`),
      );
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
      socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
      socket.on('error', reject);
    });
  const variants = [
    '/api/orders/mine',
    '/api/orders/m%69ne',
    '/api/orders/%6Dine',
    '/api/orders//mine',
    '/api//orders/mine',
    '/api/orders/./mine',
    '/api/orders/x/../mine',
    '/api/orders/%2e/mine',
    '/api/orders/mine%2F',
    '/api/orders/mine/.',
    '/api/orders/mine;x=1',
    '/api/orders/..%2fmine',
    '/api/orders/%252e%252e/mine',
  ];
  for (const v of variants) {
    const before = up.seen.length;
    const status = await raw(v);
    const reached = up.seen.slice(before).map((x) => x.url);
    assert.ok([403, 400, 404].includes(status), `${v}: ${status}`);
    assert.deepEqual(reached, [], `${v} reached the upstream`);
  }
});

test('OpenAPI path and query parameters: typed as the document says, 422 naming the parameter, nothing reaches the upstream', async () => {
  const seen = up.seen.length;
  for (const [p, field] of [
    ['/api/orders/abc', 'path/id: must be integer'],
    ['/api/orders/0', 'path/id: must be >= 1'],
    ['/api/orders/1.5', 'path/id: must be integer'],
    ['/api/orders?limit=abc', 'query/limit: must be integer'],
    ['/api/orders?limit=101', 'query/limit: must be <= 100'],
    ['/api/orders?limit=', 'query/limit: must be integer'],
    ['/api/orders?status=open&status=lost', 'query/status/1: must be equal to one of the allowed values'],
    ['/api/orders/7?expand=items,orders', 'query/expand/1: must be equal to one of the allowed values'],
    ['/api/orders/7?admin=1', 'query: unknown field "admin"'],
  ]) {
    const r = await call(p);
    assert.equal(r.status, 422, p);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.equal(detail(r), field, p);
  }
  assert.equal(up.seen.length, seen, 'no refused request reached the upstream');
  // hostile: a repeated scalar, an empty name, a name of 4000 characters (echoed clipped, not whole)
  assert.equal(detail(await call('/api/orders?limit=5&limit=6')), 'query/limit: must be integer');
  assert.equal(detail(await call('/api/orders/7?=x')), 'query: unknown field ""');
  const long = 'a'.repeat(4000);
  const clipped = await call(`/api/orders/7?${long}=1`);
  assert.equal(clipped.status, 422);
  assert.equal(detail(clipped), `query: unknown field "${'a'.repeat(64)}…"`);
  assert.equal(up.seen.length, seen);
  // valid ones pass, and the upstream gets the query exactly as sent (coercion is for checking only)
  const ok = await call('/api/orders?limit=5&status=open&status=shipped');
  assert.equal(ok.status, 200);
  assert.equal(ok.json.path, '/api/orders?limit=5&status=open&status=shipped');
  assert.equal((await call('/api/orders/7?expand=items,customer')).status, 200);
  assert.equal((await call('/api/orders/7', { method: 'HEAD' })).status, 200);
  // a route may take its contract from another path of the document
  assert.equal(detail(await call('/v2/orders/x')), 'path/id: must be integer');
  assert.equal((await call('/v2/orders/5')).status, 200);
});

test('OpenAPI header and cookie parameters, through $ref and path-level parameters', async () => {
  assert.equal(detail(await call('/api/orders', { headers: { 'x-tenant': 'ACME!' } })), 'headers/x-tenant: must match pattern "^[a-z]{2,8}$"');
  assert.equal((await call('/api/orders', { headers: { 'x-tenant': 'acme' } })).status, 200);
  const noConfirm = await call('/api/orders/9', { method: 'DELETE' });
  assert.equal(noConfirm.status, 422);
  assert.equal(detail(noConfirm), "headers: must have required property 'x-confirm'");
  assert.equal((await call('/api/orders/9', { method: 'DELETE', headers: { 'x-confirm': 'no' } })).status, 422);
  assert.equal((await call('/api/orders/9', { method: 'DELETE', headers: { 'x-confirm': 'yes' } })).status, 200);
  assert.equal((await call('/api/orders/0', { method: 'DELETE', headers: { 'x-confirm': 'yes' } })).status, 422);
  assert.equal(detail(await call('/api/orders/7', { headers: { cookie: 'a=b; session=TOOLONG' } })), 'cookies/session: must match pattern "^[a-z]{4}$"');
  assert.equal((await call('/api/orders/7', { headers: { cookie: 'a=b; session=abcd' } })).status, 200);
  // the first of two cookies of one name decides (as browsers send the most specific first); junk parts are skipped
  assert.equal((await call('/api/orders/7', { headers: { cookie: 'session=abcd; session=NOT-OK' } })).status, 200);
  assert.equal((await call('/api/orders/7', { headers: { cookie: 'session=NOT-OK; session=abcd' } })).status, 422);
  assert.equal((await call('/api/orders/7', { headers: { cookie: ';;=x; ;session' } })).status, 200);
});

test('OpenAPI request bodies: required, media types, JSON schema with $refs and formats; the upstream gets the checked bytes', async () => {
  const post = (body: string | undefined, type = 'application/json') =>
    call('/api/orders', { method: 'POST', body, headers: body === undefined ? {} : { 'content-type': type } });
  const seen = up.seen.length;
  const missing = await post(undefined);
  assert.deepEqual([missing.status, detail(missing)], [422, 'body: is required']);
  const xml = await post('<order/>', 'application/xml');
  assert.deepEqual([xml.status, detail(xml)], [415, 'This operation takes application/json, text/plain.']);
  assert.equal((await post('{"items": [')).status, 400);
  const cases: [string, string][] = [
    ['{"items": []}', 'body/items: must NOT have fewer than 1 items'],
    ['{"items": [{"sku": "not-a-uuid", "quantity": 1}]}', 'body/items/0/sku: must match format "uuid"'],
    ['{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 0}]}', 'body/items/0/quantity: must be >= 1'],
    ['{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": "1"}]}', 'body/items/0/quantity: must be integer'],
    ['{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 1}], "admin": true}', 'body: unknown field "admin"'],
    ['[]', 'body: must be object'],
    [`{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 1}], "${'k'.repeat(500)}": 1}`, `body: unknown field "${'k'.repeat(64)}…"`],
    ['{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 1e400}]}', 'body/items/0/quantity: must be integer'],
    ['null', 'body: must be object'],
  ];
  for (const [body, field] of cases) {
    const r = await post(body);
    assert.deepEqual([r.status, detail(r)], [422, field], body);
  }
  assert.equal(up.seen.length, seen);
  const good = '{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 2, "price": "9.90"}], "note": "gift"}';
  const ok = await post(good, 'application/json; charset=utf-8');
  assert.equal(ok.status, 200);
  assert.equal(ok.json.bodyBytes, Buffer.byteLength(good));
  // a media type the operation lists without a schema is passed on unchecked
  assert.equal((await post('two apples', 'text/plain')).status, 200);
  // an operation without a requestBody takes none
  const stray = await call('/api/orders/7', { method: 'DELETE', headers: { 'x-confirm': 'yes', 'content-type': 'application/json' }, body: '{}' });
  assert.deepEqual([stray.status, detail(stray)], [415, 'This operation takes no request body.']);
});

test('bodies and numbers that parsers read differently never reach the upstream: duplicate keys, other charsets, non-JSON numbers', async () => {
  const line = '{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 1}';
  const post = (body: string | Buffer, type = 'application/json') => call('/api/orders', { method: 'POST', body, headers: { 'content-type': type } });
  const seen = up.seen.length;
  // a first-key-wins parser upstream would act on quantity 1000000, never checked
  const dup = await post(`{"items": [{"sku": "6f1c2a56-0f6e-4a43-9a55-3b1e0c2f7d10", "quantity": 1000000, "quantity": 1}]}`);
  assert.deepEqual([dup.status, detail(dup)], [422, 'body/items/0: duplicate key "quantity"']);
  assert.equal(dup.headers['content-type'], 'application/problem+json');
  const escaped = await post(`{"items": [${line}], "\\u0069tems": []}`);
  assert.deepEqual([escaped.status, detail(escaped)], [422, 'body: duplicate key "items"']);
  assert.equal((await post(`{"items": [${line}]}`, 'application/json; charset=latin1')).status, 415);
  assert.equal((await post(Buffer.from(`{"items": [${line}]}`, 'utf16le'), 'application/json')).status, 400);
  assert.equal((await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`{"items": [${line}]}`)]))).status, 400);
  for (const q of ['limit=1e2', 'limit=0x10', 'limit=%2B5', 'limit=5.0', 'limit=05']) {
    const r = await call(`/api/orders?${q}`);
    assert.deepEqual([r.status, detail(r)], [422, 'query/limit: must be integer'], q);
  }
  assert.deepEqual(detail(await call('/api/orders/1e1')), 'path/id: must be integer');
  assert.equal(up.seen.length, seen, 'nothing refused reached the upstream');
  assert.equal((await post(`{"items": [${line}]}`, 'application/json; charset=UTF-8')).status, 200);
  assert.equal((await call('/api/orders?limit=10')).status, 200);
});

test('JSON Schema path parameters in the topology (values are strings)', async () => {
  assert.equal((await call('/api/shops/s1/items/ABC-123')).status, 200);
  const bad = await call('/api/shops/s1/items/abc-123');
  assert.deepEqual([bad.status, detail(bad)], [422, 'path/sku: must match pattern "^[A-Z]{3}-[0-9]{3}$"']);
  // a segment that decodes to something else is still checked decoded
  assert.equal((await call('/api/shops/s1/items/ABC%2D123')).status, 200);
});

// -- config errors: the file, the line and the field ------------------------------------

const refused = async (routeYaml: string, files: Record<string, string> = { 'openapi.yaml': openapi }) => {
  try {
    const f = await startFixture(topology('http://127.0.0.1:9', routeYaml), {}, files);
    await f.close();
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail('the gateway started');
};

test('contract config errors name the topology field with its line, or the document with its line', async () => {
  const route = (extra: string, p = '/api/orders/{id}', methods = '[GET]') =>
    `      - name: r\n        path: ${p}\n        methods: ${methods}\n        service: app\n        auth: anonymous\n${extra}`;
  // line 14 of the topology is the validate block of the route
  assert.match(
    await refused(route('        validate: { openapi: openapi.yaml }', '/api/orders/{id}', '[GET, PUT]')),
    /gatehouse\.yaml:14:\d+: zones\.edge\.routes\[0\]\.validate\.openapi: openapi\.yaml describes no put operation at \/api\/orders\/\{id\}/,
  );
  assert.match(
    await refused(route("        validate: { openapi: { document: openapi.yaml, path: '/api/orders/{id}' } }", '/v2/orders/{order}')),
    /gatehouse\.yaml:14:\d+: zones\.edge\.routes\[0\]\.validate\.openapi: the route's path parameters \{order\} differ from the document path \/api\/orders\/\{id\}'s \{id\}/,
  );
  assert.match(await refused(route("        validate: { openapi: openapi.yaml }", '/api/orders/{id}', "'*'")), /routes\[0\]\.methods: a route validated by an OpenAPI document lists its methods/);
  assert.match(await refused(route('        validate: { openapi: missing.yaml }')), /missing\.yaml:1:1: cannot read the OpenAPI document \(ENOENT\)/);
  assert.match(
    await refused(route('        validate: { openapi: openapi.yaml, path: { type: object } }')),
    /routes\[0\]\.validate\.openapi: openapi takes the whole contract from the document/,
  );
  assert.match(await refused(route('        validate: { path: { type: object } }', '/api/plain')), /routes\[0\]\.validate\.path: needs a route path with \{parameters\}/);
  assert.match(await refused(route('        validate: { path: { type: object, properties: { id: { type: strin } } } }')), /routes\[0\]\.validate\.path: the JSON Schema does not compile/);

  const doc = (text: string) => ({ 'openapi.yaml': text });
  const op = (params: string) =>
    `openapi: 3.1.1\ninfo: { title: t, version: '1' }\npaths:\n  /api/orders/{id}:\n    get:\n      parameters:\n${params}\n      responses: {}\n`;
  const withId = "        - { name: id, in: path, required: true, schema: { type: string } }\n";
  const v = route('        validate: { openapi: openapi.yaml }');
  assert.match(await refused(v, doc(op(withId + "        - { name: q, in: query, style: deepObject, schema: { type: object } }"))), /openapi\.yaml:8:\d+: paths\["\/api\/orders\/\{id\}"\]\.get\.parameters\[1\]\.style: style "deepObject" is not supported/);
  assert.match(await refused(v, doc(op(withId + "        - { name: q, in: query, content: { application/json: {} } }"))), /openapi\.yaml:8:\d+: .*parameters\[1\]\.content: parameters described by `content` are not supported/);
  assert.match(await refused(v, doc(op(withId + "        - { name: q, in: query, schema: { $ref: 'other.yaml#/X' } }"))), /openapi\.yaml:8:\d+: .*\$ref: \$ref "other\.yaml#\/X" is not supported/);
  assert.match(await refused(v, doc(op(withId + "        - $ref: '#/components/parameters/Nope'"))), /openapi\.yaml:8:\d+: .*parameters\[1\]\.\$ref: \$ref "#\/components\/parameters\/Nope" points at nothing/);
  assert.match(await refused(v, doc(op(withId + "        - { name: q, in: query, schema: { type: integr } }"))), /openapi\.yaml:6:\d+: paths\["\/api\/orders\/\{id\}"\]\.get: GET \/api\/orders\/\{id\}: the query parameters schema does not compile/);
  assert.match(await refused(v, doc(op(withId).replace('3.1.1', '3.0.3'))), /openapi\.yaml:1:\d+: openapi: only OpenAPI 3\.1 documents are supported \(found "3\.0\.3"\)/);
  assert.match(await refused(v, doc('openapi: 3.1.0\npaths: [\n')), /openapi\.yaml:\d+:\d+: YAML( structure)?:/);
  assert.match(await refused(v, doc('a: &a [1]\nb: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n')), /openapi\.yaml:1:1: YAML: .*alias/i);
  assert.match(await refused(v, doc('openapi: 3.1.0\nopenapi: 3.1.0\n')), /openapi\.yaml:2:\d+: YAML( structure)?:/);
  assert.match(await refused(v, doc('x'.repeat(4 * 1024 * 1024 + 1))), /openapi\.yaml:1:1: the document is \d+ bytes; the limit is 4194304/);
});

test('path templates: malformed or ambiguous templates are topology errors at their line', async () => {
  const one = (p: string, extra = '') => `      - { name: r, path: '${p}', methods: [GET], service: app, auth: anonymous${extra} }`;
  assert.match(await refused(one('/a/x{id}')), /gatehouse\.yaml:9:\d+: zones\.edge\.routes\[0\]\.path: path segment "x\{id\}": a parameter is a whole segment/);
  assert.match(await refused(one('/a/{id')), /routes\[0\]\.path: path segment "\{id": a parameter is a whole segment/);
  assert.match(await refused(one('/a/{1x}')), /routes\[0\]\.path: path segment "\{1x\}"/);
  assert.match(await refused(one('/a/{id}/b/{id}')), /routes\[0\]\.path: path parameter \{id\} appears twice/);
  assert.match(await refused(one('/a/{id}/', ", match: prefix")), /routes\[0\]\.match: a path with \{parameters\} needs match: 'exact'/);
  assert.match(
    await refused(one('/a/{id}') + '\n' + one('/a/{other}').replace('name: r', 'name: s')),
    /routes\[1\]\.path: duplicates routes\[0\]/,
  );
});
