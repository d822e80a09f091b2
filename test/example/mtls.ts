// The example as a new user runs it (`gatehouse up`): every service speaks
// mTLS with its own certificate from the trust domain's CA, deny by default.
// Through the gateways everything works; around them nothing does; and the
// BFF reaches the private zone only through the private gateway, with the
// user's token exchanged for a private one naming the BFF as actor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { request, fetch as undiciFetch, type Agent } from 'undici';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import { decodeJwt } from 'jose';
import { sharedExample, meshAgent, certificateFor } from '../support/example-up.ts';
import { signIn, codeTokens } from '../support/authority-flows.ts';
import type { Harness, TestFetch } from '../support/authority-harness.ts';
import { serviceSpiffeId, gatewaySpiffeId } from '../../src/pki/index.ts';
import { demoServiceToken, dpopKey, dpopHeaders, type DpopKey } from '../support/dpop.ts';

const TD = 'shop.local';
const svc = (zone: string, name: string) => serviceSpiffeId(TD, zone, name);
const ex = await sharedExample('127.0.1.2');

interface Problem {
  status: number;
  title: string;
  request_id: string;
}

async function json<T>(r: Awaited<ReturnType<typeof request>>): Promise<T> {
  return (await r.body.json()) as T;
}

test('endpoints.json lists the workload CA and every service at an https URL', () => {
  assert.match(ex.endpoints.ca!, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(Object.keys(ex.endpoints.services).sort(), ['backoffice', 'bff', 'catalog', 'echo', 'orders', 'partner-catalog']);
  for (const s of Object.values(ex.endpoints.services)) assert.match(s.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(ex.endpoints.services.bff.zone, 'public');
});

test('catalog (SDK) and echo (plain app behind the sidecar) work through the public gateway, over mTLS', async () => {
  const gw = ex.endpoints.zones.public.gateway!;
  const catalog = await request(gw + '/api/catalog', { dispatcher: ex.edge });
  assert.equal(catalog.statusCode, 200);
  assert.ok((await json<{ products: unknown[] }>(catalog)).products.length > 0);
  // echo needs any valid token of the zone, and shows the identity the gateway signed for it
  const noToken = await request(gw + '/api/echo/any/path', { dispatcher: ex.edge });
  assert.equal(noToken.statusCode, 401);
  await noToken.body.dump();
  const token = await serviceToken('public');
  const echo = await request(gw + '/api/echo/any/path?q=1', {
    dispatcher: ex.edge,
    method: 'POST',
    body: '{}',
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(echo.statusCode, 200);
  const seen = await json<{ method: string; path: string; headers: Record<string, string> }>(echo);
  assert.equal(seen.method, 'POST');
  assert.equal(seen.path, '/api/echo/any/path?q=1');
  // the sidecar verified the gateway's certificate and says so to the application
  assert.equal(seen.headers['x-gatehouse-caller'], gatewaySpiffeId(TD, 'public'));
  assert.equal(seen.headers.authorization, undefined, 'the client credential stays at the gateway');
  // the sidecar verified the gateway's identity token (aud = echo) and names the caller's subject
  const client = ex.credentials.zones.public.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  assert.equal(seen.headers['x-gatehouse-user'], client.client_id);
  assert.equal(seen.headers['x-gatehouse-identity'], undefined, 'the token is consumed by the sidecar');
});

// Before the tests below that call services directly with the BFF's certificate: three
// distinct peers refusing the BFF is lateral movement to the control plane, which then
// quarantines the BFF (detector lateral) and the shop's orders answer 403 quarantined.
test('BFF: a signed-in user places and lists orders; orders sees the user as subject and the BFF as actor', async () => {
  const zone = ex.credentials.zones.public;
  const web = zone.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const user = zone.users[0];
  const issuer = ex.endpoints.zones.public.authority!;
  const edgeFetch = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: ex.edge })) as unknown as TestFetch;
  const config = await oidc.discovery(new URL(issuer), web.client_id, { redirect_uris: web.redirect_uris }, oidc.ClientSecretBasic(web.client_secret!), {
    [oidc.customFetch]: edgeFetch as any,
  });
  const h = { auth: { issuer }, fetch: edgeFetch, totp: async (secret: string) => generate({ secret }) } as unknown as Harness;
  const tokens = await codeTokens(config, await signIn(h, config, user, { scope: 'openid orders:read orders:write' }));
  const userToken = tokens.access_token;
  const sub = decodeJwt(userToken).sub;
  assert.ok(sub);

  const shop = ex.endpoints.zones.public.gateway + '/api/shop/orders';
  const bearer = { authorization: `Bearer ${userToken}` };
  const placed = await request(shop, {
    dispatcher: ex.edge,
    method: 'POST',
    headers: { ...bearer, 'content-type': 'application/json' },
    body: JSON.stringify({ items: [{ sku: 'tea-001', quantity: 2 }] }),
  });
  const order = await json<{ id: string; customer: string; placedBy: string; items: unknown[] }>(placed);
  assert.equal(placed.statusCode, 201, JSON.stringify(order));
  assert.equal(order.customer, sub, 'orders saw the user as the subject of its private-zone token');
  assert.equal(order.placedBy, 'bff', 'and the BFF as the actor');
  placedOrder = order.id;

  // the private gateway checks the orders contract (openapi/orders.yaml) before orders sees the body
  for (const [body, detail] of [
    [{ items: [] }, 'body/items: must NOT have fewer than 1 items'],
    [{ items: [{ sku: 'tea-001', quantity: 2, price: 0 }] }, 'body/items/0: unknown field "price"'],
    [{ items: [{ sku: '../etc', quantity: 1 }] }, 'body/items/0/sku: must match pattern "^[A-Za-z0-9-]{1,64}$"'],
  ] as const) {
    const refused = await request(shop, { dispatcher: ex.edge, method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(refused.statusCode, 422);
    assert.equal((await json<{ detail: string }>(refused)).detail, detail);
  }

  // one W3C trace through public gateway → BFF → private gateway → orders: the private gateway logs it
  const traceId = randomBytes(16).toString('hex');
  const listed = await request(shop, { dispatcher: ex.edge, headers: { ...bearer, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
  assert.equal(listed.statusCode, 200);
  const privateLog = path.join(ex.stateDir, 'logs', 'gateway-private.log');
  let traced = false;
  for (let i = 0; i < 40 && !traced; i++) {
    traced = readFileSync(privateLog, 'utf8').split('\n').some((l) => l.includes(`"trace_id":"${traceId}"`) && l.includes('"path":"/api/orders"'));
    if (!traced) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(traced, 'the private gateway saw the trace the client started');
  const { orders } = await json<{ orders: { id: string; items: { sku: string; name?: string }[] }[] }>(listed);
  const mine = orders.find((o) => o.id === order.id);
  assert.ok(mine, 'the new order is listed');
  assert.equal(mine.items[0].name, 'Sencha green tea', 'names come from the catalog over the BFF → catalog edge');
  // HEAD, which the gateway passes on every GET route, is allowed by the BFF's and the orders' edges and answered as GET
  const head = await request(shop, { dispatcher: ex.edge, method: 'HEAD', headers: bearer });
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers['content-type'], 'application/json');
  assert.equal(await head.body.text(), '');

  // the user's public-zone token is no key to the private gateway (even over the BFF's certificate)
  const direct = await request(ex.endpoints.zones.private.gateway + '/api/orders', { dispatcher: await bffEdge(), headers: bearer });
  assert.equal(direct.statusCode, 401);
  await direct.body.dump();
  // no token, no orders
  const anonymous = await request(shop, { dispatcher: ex.edge });
  assert.equal(anonymous.statusCode, 401);
  await anonymous.body.dump();
});

test('BFF: a service token without MFA, or a forged bearer, gets no orders', async () => {
  const access_token = await serviceToken('public');
  const shop = ex.endpoints.zones.public.gateway + '/api/shop/orders';
  const r = await request(shop, { dispatcher: ex.edge, headers: { authorization: `Bearer ${access_token}` } });
  assert.equal(r.statusCode, 403, 'the route needs a user who signed in with a second factor');
  await r.body.dump();
  const [h, p] = access_token.split('.');
  const forged = await request(shop, { dispatcher: ex.edge, headers: { authorization: `Bearer ${h}.${p}.${'A'.repeat(86)}` } });
  assert.equal(forged.statusCode, 401);
  await forged.body.dump();
});

test('a direct call to a service without a client certificate never gets an answer', async () => {
  for (const [name, s] of Object.entries(ex.endpoints.services)) {
    const agent = meshAgent(ex.stateDir, svc(s.zone, name));
    try {
      // TLS 1.3: the handshake completes, then the service closes the connection unanswered
      await assert.rejects(request(s.url + '/', { dispatcher: agent }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'UND_ERR_SOCKET', `${name}: ${e.message}`);
        return true;
      });
    } finally {
      await agent.close();
    }
  }
});

test("another service's certificate is refused with a 403 problem unless an allow edge names it", async () => {
  const { services } = ex.endpoints;
  const catalogCert = await certificateFor(ex.stateDir, svc('public', 'catalog'));
  const bffCert = await certificateFor(ex.stateDir, svc('public', 'bff'));
  const asCatalog = meshAgent(ex.stateDir, svc('public', 'echo'), catalogCert);
  const bffToCatalog = meshAgent(ex.stateDir, svc('public', 'catalog'), bffCert);
  const bffToEcho = meshAgent(ex.stateDir, svc('public', 'echo'), bffCert);
  try {
    // no edge: catalog may not call echo (the sidecar refuses)
    const refused = await request(services.echo.url + '/api/echo/x', { dispatcher: asCatalog });
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.headers['content-type'], 'application/problem+json');
    const p = await json<Problem>(refused);
    assert.equal(p.status, 403);
    assert.match(p.request_id, /^[0-9a-f-]{36}$/);
    const refused2 = await request(services.echo.url + '/api/echo/x', { dispatcher: bffToEcho });
    assert.equal(refused2.statusCode, 403);
    await refused2.body.dump();
    // an edge: the BFF may GET the catalog — only GET, only that path
    const allowed = await request(services.catalog.url + '/api/catalog', { dispatcher: bffToCatalog });
    assert.equal(allowed.statusCode, 200);
    assert.ok((await json<{ products: unknown[] }>(allowed)).products.length > 0);
    const wrongMethod = await request(services.catalog.url + '/api/catalog', { dispatcher: bffToCatalog, method: 'POST', body: '{}' });
    assert.equal(wrongMethod.statusCode, 403);
    await wrongMethod.body.dump();
  } finally {
    await Promise.all([asCatalog.close(), bffToCatalog.close(), bffToEcho.close()]);
  }
});

test("the private orders service refuses the public gateway's certificate, and the BFF's", async () => {
  const url = ex.endpoints.services.orders.url + '/api/orders';
  for (const id of [gatewaySpiffeId(TD, 'public'), svc('public', 'bff')]) {
    const agent = meshAgent(ex.stateDir, svc('private', 'orders'), await certificateFor(ex.stateDir, id));
    try {
      const r = await request(url, { dispatcher: agent });
      assert.equal(r.statusCode, 403, id);
      assert.equal((await json<Problem>(r)).title, 'Forbidden');
    } finally {
      await agent.close();
    }
  }
  // even the private gateway's own certificate gets nothing without a user behind it
  const agent = meshAgent(ex.stateDir, svc('private', 'orders'), await certificateFor(ex.stateDir, gatewaySpiffeId(TD, 'private')));
  try {
    const r = await request(url, { dispatcher: agent });
    assert.equal(r.statusCode, 401);
    await r.body.dump();
  } finally {
    await agent.close();
  }
});

/** A client-credentials token of the zone's demo service; with `key`, DPoP-bound to it (a proof at the token endpoint). */
async function serviceToken(zoneName: string, key?: DpopKey): Promise<string> {
  const r = await demoServiceToken({ dispatcher: ex.edge, authority: ex.endpoints.zones[zoneName].authority!, clients: ex.credentials.zones[zoneName].clients, scope: 'orders:read', key });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  if (key) {
    assert.equal(r.body.token_type, 'DPoP');
    assert.equal((decodeJwt(r.token!).cnf as { jkt?: string } | undefined)?.jkt, key.jkt, 'the token is bound to the proof key');
  }
  return r.token!;
}

let placedOrder: string | undefined;

/** The private gateway's ingress is locked: only the BFF's workload certificate gets past TLS. */
let bff: Promise<Agent> | undefined;
const bffEdge = () => (bff ??= ex.edgeAs(serviceSpiffeId('shop.local', 'public', 'bff')));

test('the private gateway is locked: a valid private token without a client certificate, or over another workload’s, is refused at TLS; over the BFF’s it is served', async () => {
  // the private zone takes sender-constrained tokens only: this one is DPoP-bound
  const key = await dpopKey();
  const token = await serviceToken('private', key);
  const url = ex.endpoints.zones.private.gateway + '/api/orders?limit=10';
  await assert.rejects(request(url, { dispatcher: ex.edge, headers: await dpopHeaders(key, token, 'GET', url) }), 'no client certificate: the handshake fails');
  const catalog = await ex.edgeAs(serviceSpiffeId('shop.local', 'public', 'catalog'));
  await assert.rejects(request(url, { dispatcher: catalog, headers: await dpopHeaders(key, token, 'GET', url) }), 'catalog has no egress to gateway:private');
  const r = await request(url, { dispatcher: await bffEdge(), headers: await dpopHeaders(key, token, 'GET', url) });
  assert.equal(r.statusCode, 200);
  await r.body.dump();
  // the public gateway is not locked: any client reaches it
  const open = await request(ex.endpoints.zones.public.gateway + '/api/catalog', { dispatcher: ex.edge });
  assert.equal(open.statusCode, 200);
  await open.body.dump();
});

test('a private-zone token reads orders through the private gateway: only its own subject’s (none)', async () => {
  const key = await dpopKey();
  const token = await serviceToken('private', key);
  const privateEdge = await bffEdge();
  const at = (p: string) => ex.endpoints.zones.private.gateway + p;
  const get = async (p: string) => request(at(p), { dispatcher: privateEdge, headers: await dpopHeaders(key, token, 'GET', at(p)) });
  const r = await get('/api/orders?limit=10');
  assert.equal(r.statusCode, 200);
  assert.deepEqual(await json(r), { orders: [] });
  const head = await request(at('/api/orders?limit=10'), { dispatcher: privateEdge, method: 'HEAD', headers: await dpopHeaders(key, token, 'HEAD', at('/api/orders')) });
  assert.equal(head.statusCode, 200, 'HEAD on a GET route reaches orders and is answered as GET');
  await head.body.dump();
  // GET /api/orders/{id}: a user's order is not found under another subject
  assert.ok(placedOrder, 'the BFF test placed an order');
  const other = await get(`/api/orders/${placedOrder}`);
  assert.equal(other.statusCode, 404);
  await other.body.dump();
  // the contract: ids are uuids, limit is 1..100, no undeclared query parameters
  for (const [p, detail] of [
    ['/api/orders/42', 'path/id: must match format "uuid"'],
    ['/api/orders?limit=0', 'query/limit: must be >= 1'],
    ['/api/orders?customer=someone-else', 'query: unknown field "customer"'],
  ]) {
    const refused = await get(p);
    assert.equal(refused.statusCode, 422, p);
    assert.equal((await json<{ detail: string }>(refused)).detail, detail);
  }
  const deeper = await get(`/api/orders/${placedOrder}/items`);
  assert.equal(deeper.statusCode, 404);
  await deeper.body.dump();
});
