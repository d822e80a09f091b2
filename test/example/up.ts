// `gatehouse up` as a new user runs it (a part of the shared example run:
// test/example-services.test.ts): what endpoints.json and dev-credentials.json
// hold, the zones' tokens at their gateways, and a token revoked at an
// authority refused by the gateway within the revocation feed's poll interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { type Agent, request } from 'undici';
import { privateGatewayAgent, sharedExample } from '../support/example-up.ts';
import { dpopHeaders, dpopKey, dpopProof, type DpopKey } from '../support/dpop.ts';

const example = path.join(import.meta.dirname, '..', '..', 'examples/shop/gatehouse.yaml');
const ex = await sharedExample('127.0.1.1');

interface Client {
  client_id: string;
  client_secret: string;
}

/** POSTs a form to an authority endpoint as a confidential client (client_secret_basic); `dpop`: a DPoP proof header. */
function postAsClient(agent: Agent, url: string, client: Client, form: Record<string, string>, dpop?: string) {
  return request(url, {
    dispatcher: agent,
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64'),
      ...(dpop ? { dpop } : {}),
    },
    body: new URLSearchParams(form).toString(),
  });
}

/** A client-credentials token; with `key`, DPoP-bound to it (what the private zone requires: senderConstrained). */
async function clientCredentialsToken(agent: Agent, authority: string, client: Client, scope: string, key?: DpopKey): Promise<string> {
  const proof = key ? await dpopProof(key, { htm: 'POST', htu: authority + '/token' }) : undefined;
  const res = await postAsClient(agent, authority + '/token', client, { grant_type: 'client_credentials', scope }, proof);
  assert.equal(res.statusCode, 200);
  return ((await res.body.json()) as { access_token: string }).access_token;
}

/** The Authorization (and DPoP) headers presenting `token` for one request. */
const present = async (token: string, key: DpopKey | undefined, method: string, url: string): Promise<Record<string, string>> =>
  key ? dpopHeaders(key, token, method, url) : { authorization: `Bearer ${token}` };

/** The example's zones poll their authority's revocation feed every pollSeconds (examples/shop/gatehouse.yaml). */
const POLL_MS = 5_000;

/**
 * Calls `url` with `token` until the gateway has verified (and cached) it,
 * revokes the token at the authority (RFC 7009) and returns how long the
 * gateway kept accepting it.
 */
async function msUntilRevokedTokenRefused(agent: Agent, o: { url: string; authority: string; client: Client; token: string; key?: DpopKey }): Promise<number> {
  const call = async () => {
    const res = await request(o.url, { dispatcher: agent, headers: await present(o.token, o.key, 'GET', o.url) });
    await res.body.dump();
    return res;
  };
  for (let i = 0; i < 2; i++) assert.equal((await call()).statusCode, 200, `${o.url} accepts the token before it is revoked`);
  const revoked = await postAsClient(agent, o.authority + '/token/revocation', o.client, { token: o.token, token_type_hint: 'access_token' });
  assert.equal(revoked.statusCode, 200);
  await revoked.body.dump();
  const since = Date.now();
  for (;;) {
    const res = await call();
    const waited = Date.now() - since;
    if (res.statusCode === 401) {
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/);
      return waited;
    }
    assert.equal(res.statusCode, 200);
    assert.ok(waited < 3 * POLL_MS, `${o.url} still accepts the revoked token after ${waited} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('up: the example comes up as a new user sees it and writes endpoints.json (it stops on SIGINT: the file’s last check)', async () => {
  const dir = ex.stateDir;
  {
    const endpoints = JSON.parse(readFileSync(path.join(dir, 'endpoints.json'), 'utf8'));
    assert.equal(endpoints.trustDomain, 'shop.local');
    assert.equal(endpoints.caBundle, path.join(dir, 'tls/dev-ca.pem'));
    // the four trust zones, and corp (the enterprise SSO's stand-in: an authority only)
    assert.deepEqual(Object.keys(endpoints.zones).sort(), ['corp', 'internal', 'partner', 'private', 'public']);
    for (const [name, z] of Object.entries(endpoints.zones) as [string, { gateway?: string; admin?: string; authority: string }][]) {
      assert.match(z.authority, /^https:\/\/127\.0\.0\.1:\d+$/);
      if (name === 'corp') {
        assert.equal(z.gateway, undefined, 'corp has no gateway');
        continue;
      }
      assert.match(z.gateway!, /^https:\/\/127\.0\.0\.1:\d+$/);
      assert.match(z.admin!, /^http:\/\/127\.0\.0\.1:\d+$/);
    }
    assert.deepEqual(Object.keys(endpoints.services).sort(), ['backoffice', 'bff', 'catalog', 'echo', 'orders', 'partner-catalog']);
    assert.equal(endpoints.services.orders.zone, 'private');
    const agent = ex.edge;
    const gw = endpoints.zones.public.gateway;
    const catalog = await request(gw + '/api/catalog', { dispatcher: agent });
    assert.equal(catalog.statusCode, 200);
    assert.ok(((await catalog.body.json()) as { products: unknown[] }).products.length > 0);
    const tokens: Record<string, string> = {};
    const devCreds = JSON.parse(readFileSync(path.join(dir, 'dev-credentials.json'), 'utf8'));
    // the private zone takes sender-constrained tokens only: its token is DPoP-bound
    const key = await dpopKey();
    for (const zone of ['public', 'private']) {
      const service = devCreds.zones[zone].clients.find((c: { grant_types: string[]; client_secret?: string }) => c.grant_types.includes('client_credentials') && c.client_secret);
      tokens[zone] = await clientCredentialsToken(agent, endpoints.zones[zone].authority, service, 'orders:read', zone === 'private' ? key : undefined);
    }
    const echo = await request(gw + '/api/echo/any/path?q=1', {
      dispatcher: agent,
      method: 'PATCH',
      body: '{}',
      headers: { 'x-real-ip': '1.2.3.4', authorization: `Bearer ${tokens.public}` },
    });
    const seen = (await echo.body.json()) as { method: string; path: string; headers: Record<string, string> };
    assert.equal(seen.method, 'PATCH');
    assert.equal(seen.path, '/api/echo/any/path?q=1');
    assert.equal(seen.headers['x-real-ip'], undefined);
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    // the private gateway's ingress is locked: a client needs the BFF's workload certificate
    const ordersUrl = endpoints.zones.private.gateway + '/api/orders';
    await assert.rejects(request(ordersUrl, { dispatcher: agent, headers: await dpopHeaders(key, tokens.private, 'GET', ordersUrl) }));
    const privateAgent = await privateGatewayAgent(dir, endpoints.caBundle);
    const anonymousOrders = await request(ordersUrl, { dispatcher: privateAgent });
    assert.equal(anonymousOrders.statusCode, 401);
    await anonymousOrders.body.dump();
    const orders = await request(ordersUrl, { dispatcher: privateAgent, headers: await dpopHeaders(key, tokens.private, 'GET', ordersUrl) });
    assert.equal(orders.statusCode, 200);
    await orders.body.dump();
    // a private token that is not sender-constrained is refused, even over the BFF's certificate
    const privateService = devCreds.zones.private.clients.find((c: { grant_types: string[]; client_secret?: string }) => c.grant_types.includes('client_credentials') && c.client_secret);
    const unbound = await request(ordersUrl, { dispatcher: privateAgent, headers: { authorization: `Bearer ${await clientCredentialsToken(agent, endpoints.zones.private.authority, privateService, 'orders:read')}` } });
    assert.equal(unbound.statusCode, 401);
    assert.match(String(unbound.headers['www-authenticate']), /error="invalid_token"/);
    await unbound.body.dump();
    await privateAgent.close();
    // every zone has an authority; the seeded service client gets a short-lived JWT from it
    const credsFile = path.join(dir, 'dev-credentials.json');
    assert.equal(statSync(credsFile).mode & 0o777, 0o600);
    const creds = JSON.parse(readFileSync(credsFile, 'utf8'));
    for (const zone of ['public', 'private']) {
      const z = creds.zones[zone];
      const service = z.clients.find((c: { grant_types: string[] }) => c.grant_types.includes('client_credentials'));
      assert.ok(service?.client_secret, `${zone}: a confidential client-credentials client`);
      assert.ok(z.clients.some((c: { grant_types: string[]; redirect_uris?: string[] }) => c.grant_types.includes('authorization_code') && c.redirect_uris?.length));
      assert.match(z.users[0].totp_secret, /^[A-Z2-7]+=*$/);
      const authority = endpoints.zones[zone].authority;
      const token = await postAsClient(agent, authority + '/token', service, { grant_type: 'client_credentials', scope: 'orders:read' });
      assert.equal(token.statusCode, 200, zone);
      const { access_token, expires_in } = (await token.body.json()) as { access_token: string; expires_in: number };
      assert.ok(expires_in <= 300);
      const [header] = access_token.split('.');
      assert.equal(JSON.parse(Buffer.from(header, 'base64url').toString()).typ, 'at+jwt');
    }
  }
});

test('up: a token revoked at the authority is refused by the gateway within the poll interval, cached ones included', async (t) => {
  const dir = ex.stateDir;
  const endpoints = ex.endpoints;
  const agent = ex.edge;
  const publicAgent = agent;
  {
    const creds = JSON.parse(readFileSync(path.join(dir, 'dev-credentials.json'), 'utf8'));
    const routes = { public: '/api/echo/revoked', private: '/api/orders' };
    // the private gateway's ingress is locked: it admits the BFF's certificate only
    const privateAgent = await privateGatewayAgent(dir, endpoints.caBundle);
    const waited = await Promise.all(
      Object.entries(routes).map(async ([zone, route]) => {
        const agent = zone === 'private' ? privateAgent : publicAgent;
        const authority = endpoints.zones[zone].authority!;
        const gateway = endpoints.zones[zone].gateway!;
        const client = creds.zones[zone].clients.find((c: { grant_types: string[]; client_secret?: string }) => c.grant_types.includes('client_credentials') && c.client_secret);
        // the private zone takes sender-constrained tokens only: DPoP-bound there
        const key = zone === 'private' ? await dpopKey() : undefined;
        const token = await clientCredentialsToken(agent, authority, client, 'orders:read', key);
        const ms = await msUntilRevokedTokenRefused(agent, { url: gateway + route, authority, client, token, key });
        // only the revoked token: a new one of the same client passes
        const freshToken = await clientCredentialsToken(agent, authority, client, 'orders:read', key);
        const fresh = await request(gateway + route, { dispatcher: agent, headers: await present(freshToken, key, 'GET', gateway + route) });
        assert.equal(fresh.statusCode, 200, zone);
        await fresh.body.dump();
        return ms;
      }),
    );
    await privateAgent.close();
    t.diagnostic(`revoked tokens refused after ${waited.join(' and ')} ms`);
    for (const ms of waited) assert.ok(ms <= POLL_MS + 2_000, `refused ${ms} ms after the revocation`);

    // the gateway's feed client: its secret only in a 0600 file of the state dir
    // (and the gateway's environment), never in a log or another file; it reads
    // the feed and can do nothing else
    for (const zone of ['public', 'private']) {
      const file = path.join(dir, 'gateway', zone, 'revocation-feed.secret');
      assert.equal(statSync(file).mode & 0o777, 0o600);
      const feedClient = { client_id: `gateway-${zone}`, client_secret: readFileSync(file, 'utf8').trim() };
      for (const f of [...readdirSync(path.join(dir, 'logs')).map((l) => path.join(dir, 'logs', l)), path.join(dir, 'dev-credentials.json'), path.join(dir, 'endpoints.json'), example])
        assert.ok(!readFileSync(f, 'utf8').includes(feedClient.client_secret), `${f} does not hold the feed secret`);
      const authority = endpoints.zones[zone].authority!;
      const feed = await request(authority + '/revocations', { dispatcher: agent, headers: { authorization: 'Basic ' + Buffer.from(`${feedClient.client_id}:${feedClient.client_secret}`).toString('base64') } });
      assert.equal(feed.statusCode, 200);
      await feed.body.dump();
      for (const [endpoint, form] of [
        ['/token', { grant_type: 'client_credentials' }],
        ['/token/introspection', { token: 'x' }],
        ['/token/revocation', { token: 'x' }],
      ] as const) {
        const refused = await postAsClient(agent, authority + endpoint, feedClient, form);
        assert.equal(refused.statusCode, 401, `${zone}: the feed client is refused at ${endpoint}`);
        await refused.body.dump();
      }
    }
  }
});
