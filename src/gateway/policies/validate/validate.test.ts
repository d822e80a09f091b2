// The validate unit on its own: provisioned from a topology contract or an
// OpenAPI document in a temp dir, asked about requests built by hand. These are
// the hostile bodies and parameters of the hardening run: duplicate keys,
// charsets other than UTF-8, numbers in forms JSON would not write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import validate, { type Config } from './index.ts';
import { ValidateConfig } from './schema.ts';
import { GatehouseError } from '../../../shared/errors.ts';
import { frozenClock } from '../../../shared/clock.ts';
import { createLogger } from '../../../shared/logger.ts';
import { createSharedResources, type Exchange, type ProvisionContext } from '../policy.ts';
import { pathParams, type CompiledRoute } from '../../router.ts';
import { templateParams } from '../../../topology/resolve.ts';
import type { LoadedTopology } from '../../../topology/load.ts';

const openapi = `openapi: 3.1.0
info: { title: t, version: '1' }
paths:
  /items/{id}:
    parameters:
      - { name: id, in: path, required: true, schema: { type: integer, minimum: 1 } }
    get:
      parameters:
        - { name: limit, in: query, schema: { type: integer } }
        - { name: price, in: query, schema: { type: number } }
        - { name: ids, in: query, explode: false, schema: { type: array, items: { type: integer } } }
        - { name: each, in: query, schema: { type: array, items: { $ref: '#/components/schemas/Count' } } }
        - { name: code, in: query, schema: { type: string } }
        - { name: maybe, in: query, schema: { type: [integer, 'null'] } }
        - { name: ref, in: query, schema: { $ref: '#/components/schemas/Count' } }
        - { name: X-Count, in: header, schema: { type: integer } }
        - { name: n, in: cookie, schema: { type: number } }
      responses: { '200': { description: ok } }
    post:
      requestBody:
        required: true
        content:
          application/json: { schema: { $ref: '#/components/schemas/Order' } }
          application/vnd.shop+json: { schema: { type: object } }
      responses: { '200': { description: ok } }
components:
  schemas:
    Count: { type: integer, minimum: 0 }
    Order:
      type: object
      properties:
        quantity: { type: integer }
        amount: { type: number }
`;

const dir = mkdtempSync(path.join(tmpdir(), 'gh-validate-'));
writeFileSync(path.join(dir, 'api.yaml'), openapi);

function context(): ProvisionContext {
  return {
    topology: { file: path.join(dir, 'gatehouse.yaml'), dir, topology: {} } as LoadedTopology,
    zone: 'edge',
    stateDir: dir,
    clock: frozenClock(),
    logger: createLogger({ name: 'test', level: 'silent' }),
    shared: createSharedResources(),
  };
}

type Ask = (o: { method?: string; path?: string; query?: string; headers?: Record<string, string>; body?: string | Buffer }) => Promise<GatehouseError | undefined>;

async function unit(contract: unknown, route: { path: string; methods: string[] }): Promise<Ask> {
  const config: Config = { contract: ValidateConfig.parse(contract), route };
  const state = await validate.provision(config, context());
  const compiled = { name: 'r', params: templateParams(route.path) } as CompiledRoute;
  return async (o) => {
    const body = o.body === undefined ? Buffer.alloc(0) : Buffer.from(o.body);
    const ex = {
      method: o.method ?? 'GET',
      path: o.path ?? route.path,
      query: o.query ?? '',
      host: 'test',
      headers: { ...o.headers },
      clientAddress: '203.0.113.7',
      requestId: 'req-1',
      zone: 'edge',
      route: compiled,
      now: 0,
      upstreamHeaders: [],
      responseHeaders: {},
      onDone: [],
      pathParams: () => pathParams(compiled, o.path ?? route.path),
      readBody: async () => body,
    } as Exchange;
    return (await validate.onRequest(ex, state)) ?? undefined;
  };
}

const api = () => unit({ openapi: 'api.yaml' }, { path: '/items/{id}', methods: ['GET', 'POST'] });
/** status and detail of a refusal; [0, ''] when it passed. */
const answer = (e: GatehouseError | undefined) => (e === undefined ? [0, ''] : [e.status, e.message]);
const json = { 'content-type': 'application/json' };

// -- duplicate keys -----------------------------------------------------------------------

test('a JSON body with a duplicate key is refused with 422 naming the key and where it is, at any depth and after unescaping', async () => {
  const ask = await unit({ body: { type: 'object' } }, { path: '/orders', methods: ['POST'] });
  const post = async (body: string | Buffer) => answer(await ask({ method: 'POST', headers: json, body }));
  assert.deepEqual(await post('{"a": 1, "a": 2}'), [422, 'body: duplicate key "a"']);
  assert.deepEqual(await post('{"items": [{"sku": "x"}, {"sku": "y", "qty": 1, "sku": "z"}]}'), [422, 'body/items/1: duplicate key "sku"']);
  // equal once unescaped: \u0061 is "a", \/ is "/", a surrogate pair is the character it encodes
  assert.deepEqual(await post('{"a": 1, "\\u0061": 2}'), [422, 'body: duplicate key "a"']);
  assert.deepEqual(await post('{"a/b": 1, "a\\/b": 2}'), [422, 'body: duplicate key "a/b"']);
  assert.deepEqual(await post('{"x": {"😀": 1, "\\ud83d\\ude00": 2}}'), [422, 'body/x: duplicate key "😀"']);
  assert.deepEqual(await post('{"é": 1, "\\u00E9": 2}'), [422, 'body: duplicate key "é"']);
  // a path segment holding "/" or "~" is written as a JSON Pointer writes it
  assert.deepEqual(await post('{"a/b~": {"k": 1, "k": 1}}'), [422, 'body/a~1b~0: duplicate key "k"']);
  // the same key in different objects, or as a value, is no duplicate
  assert.deepEqual(await post('{"a": {"a": "a"}, "b": [{"a": 1}, {"a": 2}], "c": "a"}'), [0, '']);
  assert.deepEqual(await post('{"a\\u0062": 1, "ab ": 2, "Ab": 3}'), [0, '']);
  // a key the client chose is echoed clipped
  const long = 'k'.repeat(5000);
  assert.deepEqual(await post(`{"${long}": 1, "${long}": 2}`), [422, `body: duplicate key "${'k'.repeat(64)}…"`]);
  const quote = await post('{"\\"\\n": 1, "\\"\\n": 2}');
  assert.deepEqual(quote, [422, 'body: duplicate key "\\"\\n"']);
});

test('an unpaired surrogate escape (not Unicode text, and read differently by other parsers) is refused naming the field', async () => {
  const ask = await unit({ body: {} }, { path: '/orders', methods: ['POST'] });
  const post = async (body: string) => answer(await ask({ method: 'POST', headers: json, body }));
  assert.deepEqual(await post('{"name": "\\ud800"}'), [422, 'body/name: holds an unpaired surrogate (\\ud800-\\udfff escape)']);
  assert.deepEqual(await post('["ok", "a\\udc00b"]'), [422, 'body/1: holds an unpaired surrogate (\\ud800-\\udfff escape)']);
  assert.deepEqual(await post('{"\\udbff": 1}'), [422, 'body: a key holds an unpaired surrogate (\\ud800-\\udfff escape)']);
  assert.deepEqual(await post('{"pair": "\\ud83d\\ude00", "raw": "😀"}'), [0, '']);
});

test('hostile shapes: deep nesting, 100k keys, 1 MB bodies, empty and null bodies get precise answers in bounded time', async () => {
  const ask = await unit({ body: {} }, { path: '/orders', methods: ['POST'] });
  // bounded time means linear: each answer is timed against JSON.parse of the same bytes, measured just before,
  // so a busy machine slows both (a quadratic scan of 100k keys would take minutes, not a few parses' time)
  const post = async (body: string) => {
    const p0 = performance.now();
    try {
      JSON.parse(body);
    } catch {
      // the depth cases are refused before any parse; their baseline is the failed parse
    }
    const parse = performance.now() - p0;
    const t0 = performance.now();
    const r = answer(await ask({ method: 'POST', headers: json, body }));
    return { r, ms: performance.now() - t0, parse };
  };
  // a duplicate at depth 1000 (the deepest nesting taken): named, with the path shortened
  const deep = (depth: number, inner: string) => '{"a":'.repeat(depth - 1) + inner + '}'.repeat(depth - 1);
  const dupDeep = await post(deep(1000, '{"k": 1, "k": 2}'));
  assert.deepEqual(dupDeep.r, [422, 'body/a/a/a/a/a/a/…/a/a/a/a: duplicate key "k"']);
  assert.deepEqual((await post(deep(1000, '{"k": 1}'))).r, [0, '']);
  assert.deepEqual((await post(deep(1001, '{"k": 1}'))).r, [422, 'body: nests deeper than 1000 objects and arrays']);
  const arrays = await post('['.repeat(200_000) + ']'.repeat(200_000));
  assert.deepEqual(arrays.r, [422, 'body: nests deeper than 1000 objects and arrays']);
  // 100k distinct keys pass; one repeated at the end is found
  const keys = Array.from({ length: 100_000 }, (_, i) => `"k${i}": ${i}`);
  const many = await post(`{${keys.join(',')}}`);
  assert.deepEqual(many.r, [0, '']);
  const manyDup = await post(`{${keys.join(',')}, "k0": 0}`);
  assert.deepEqual(manyDup.r, [422, 'body: duplicate key "k0"']);
  // 100k keys that are all escapes (each unescaped): still found
  const escaped = Array.from({ length: 100_000 }, (_, i) => `"\\u006b${i}": 1`);
  const escapedDup = await post(`{${escaped.join(',')}, "k99999": 2}`);
  assert.deepEqual(escapedDup.r, [422, 'body: duplicate key "k99999"']);
  // 1 MB of small objects
  const small = `[${Array.from({ length: 60_000 }, (_, i) => `{"id":${i},"v":"x"}`).join(',')}]`;
  assert.ok(small.length > 1_000_000);
  const mb = await post(small);
  assert.deepEqual(mb.r, [0, '']);
  const mbDup = await post(`${small.slice(0, -1)},{"id":1,"id":2}]`);
  assert.deepEqual(mbDup.r, [422, 'body/60000: duplicate key "id"']);
  const times = { dupDeep, arrays, many, manyDup, escapedDup, mb, mbDup };
  for (const [name, t] of Object.entries(times)) assert.ok(t.ms < 250 + 40 * t.parse, `${name}: ${t.ms.toFixed(1)} ms (JSON.parse alone: ${t.parse.toFixed(1)} ms)`);
  if (process.env.GATEHOUSE_TIMINGS) console.log(Object.entries(times).map(([n, t]) => `${n} ${t.ms.toFixed(1)} ms (parse ${t.parse.toFixed(1)} ms)`).join('\n'));
  // empty, whitespace, null, numbers beyond a double
  const required = await unit({ body: { type: 'object', properties: { n: { type: 'number' } } }, bodyRequired: true }, { path: '/o', methods: ['POST'] });
  const req = async (body: string) => answer(await required({ method: 'POST', headers: json, body }));
  assert.deepEqual(await req(''), [422, 'body: is required']);
  assert.deepEqual(await req(' '), [400, 'The body is not valid JSON.']);
  assert.deepEqual(await req('null'), [422, 'body: must be object']);
  assert.deepEqual(await req('{"n": 1e400}'), [422, 'body/n: must be number']);
  assert.deepEqual(await req('{"n": -1e400}'), [422, 'body/n: must be number']);
  assert.deepEqual(await req('{"n": 1e-400}'), [0, '']);
});

// -- charsets ----------------------------------------------------------------------------

test('a JSON body is UTF-8: another declared charset is 415, a BOM or bytes that are not UTF-8 are 400', async () => {
  const ask = await api();
  const post = async (body: string | Buffer, type: string) => answer(await ask({ method: 'POST', path: '/items/1', headers: { 'content-type': type }, body }));
  const body = '{"quantity": 1}';
  for (const type of ['application/json; charset=latin1', 'application/json; charset=utf-16', 'application/json;charset="ISO-8859-1"', 'application/json; charset=utf-8; charset=latin1', 'application/vnd.shop+json; charset=utf-32'])
    assert.equal((await post(body, type))[0], 415, type);
  assert.deepEqual(await post(body, 'application/json; charset=latin1'), [415, 'JSON bodies are UTF-8 (RFC 8259); charset "latin1" is not taken.']);
  for (const type of ['application/json', 'application/json; charset=utf-8', 'application/json;charset="UTF-8"', 'Application/JSON; Charset=UTF8'])
    assert.deepEqual(await post(body, type), [0, ''], type);
  // a UTF-8 byte order mark
  assert.deepEqual(await post(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]), 'application/json'), [400, 'The body starts with a byte order mark; a JSON body is UTF-8 without one.']);
  // UTF-16, with and without a BOM, undeclared
  assert.deepEqual(await post(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(body, 'utf16le')]), 'application/json'), [400, 'The body is not UTF-8 (it looks like UTF-16 or UTF-32).']);
  assert.deepEqual(await post(Buffer.from(body, 'utf16le'), 'application/json'), [400, 'The body is not UTF-8 (it looks like UTF-16 or UTF-32).']);
  // bytes that are not UTF-8: a stray 0xff, an overlong quote (C0 A2), a surrogate encoded in UTF-8 (CESU)
  for (const bad of [[0xff], [0xc0, 0xa2], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
    const bytes = Buffer.concat([Buffer.from('{"quantity": 1, "note": "'), Buffer.from(bad), Buffer.from('"}')]);
    assert.deepEqual(await post(bytes, 'application/json'), [400, 'The body is not valid UTF-8.'], String(bad));
  }
});

// -- numbers in parameters ----------------------------------------------------------------

test('integer parameters follow the JSON integer grammar -?(0|[1-9][0-9]*): 1e2, 0x10, +5, " 5", 5.0, 05 … are refused', async () => {
  const ask = await api();
  const q = async (query: string) => answer(await ask({ path: '/items/1', query }));
  for (const raw of ['1e2', '0x10', '%2B5', '+5', '%205', '5%20', '%095', '5.0', '05', '00', '0b1', '0o7', 'Infinity', '-Infinity', 'NaN', '1_000', '', '-', '1e400', '١٢'])
    assert.deepEqual(await q(`limit=${raw}`), [422, 'query/limit: must be integer'], raw);
  for (const raw of ['0', '5', '-7', '1234567890'])
    assert.deepEqual(await q(`limit=${raw}`), [0, ''], raw);
  // -0 is in the grammar (JSON writes it); it is checked as 0
  assert.deepEqual(await q('limit=-0'), [0, '']);
  // digits beyond a double are in the grammar but no finite integer
  assert.deepEqual(await q(`limit=1${'0'.repeat(400)}`), [422, 'query/limit: must be integer']);
  // through a $ref, in arrays (repeated and comma-separated), with a null alternative
  assert.deepEqual(await q('ref=1e1'), [422, 'query/ref: must be integer']);
  assert.deepEqual(await q('ref=-1'), [422, 'query/ref: must be >= 0']);
  assert.deepEqual(await q('ids=1,0x2'), [422, 'query/ids/1: must be integer']);
  assert.deepEqual(await q('ids=1,2'), [0, '']);
  assert.deepEqual(await q('each=1&each=2&each=3.0'), [422, 'query/each/2: must be integer']);
  assert.deepEqual(await q('each=1e0'), [422, 'query/each/0: must be integer']);
  assert.deepEqual(await q('each=4'), [0, '']);
  assert.deepEqual(await q('maybe='), [0, '']);
  assert.deepEqual(await q('maybe=0x1'), [422, 'query/maybe: must be integer,null']);
  // a string parameter keeps whatever the client wrote
  assert.deepEqual(await q('code=0x10'), [0, '']);
  // the path, a header and a cookie follow the same grammar
  assert.deepEqual(answer(await ask({ path: '/items/1e1' })), [422, 'path/id: must be integer']);
  assert.deepEqual(answer(await ask({ path: '/items/0x1' })), [422, 'path/id: must be integer']);
  assert.deepEqual(answer(await ask({ path: '/items/01' })), [422, 'path/id: must be integer']);
  assert.deepEqual(answer(await ask({ path: '/items/12' })), [0, '']);
  assert.deepEqual(answer(await ask({ path: '/items/1', headers: { 'x-count': '0x10' } })), [422, 'headers/x-count: must be integer']);
  assert.deepEqual(answer(await ask({ path: '/items/1', headers: { 'x-count': '16' } })), [0, '']);
  assert.deepEqual(answer(await ask({ path: '/items/1', headers: { cookie: 'n=0x1' } })), [422, 'cookies/n: must be number']);
  assert.deepEqual(answer(await ask({ path: '/items/1', headers: { cookie: 'n=-1.5e-3' } })), [0, '']);
});

test('number parameters follow the JSON number grammar', async () => {
  const ask = await api();
  const q = async (query: string) => answer(await ask({ path: '/items/1', query }));
  for (const raw of ['1.5', '-0.25', '0', '-0', '1e2', '1E%2B2', '2.5e-3', '10'])
    assert.deepEqual(await q(`price=${raw}`), [0, ''], raw);
  for (const raw of ['.5', '5.', '%2B1', '0x10', '01', '1e', '1e%2B', '1.5.2', 'NaN', 'Infinity', '%201', '1,5', '1e400', '-1e400'])
    assert.deepEqual(await q(`price=${raw}`), [422, 'query/price: must be number'], raw);
});
