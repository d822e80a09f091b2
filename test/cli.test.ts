// The gatehouse command as a user runs it: validate, gateway with workers,
// and `up` on the example topology.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, statSync, existsSync, readdirSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startUpstream, tempDir } from './support/gateway-fixture.ts';
import { privateGatewayAgent } from './support/example-up.ts';
import { dpopHeaders, dpopKey, dpopProof, type DpopKey } from './support/dpop.ts';

const root = path.join(import.meta.dirname, '..');
const main = path.join(root, 'src/cli/main.ts');
const example = path.join(root, 'examples/shop/gatehouse.yaml');

function run(args: string[]) {
  return spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', cwd: root, timeout: 30_000 });
}

/** Start a long-running verb; resolves when `marker` appears on stdout or stderr. */
function start(args: string[], marker: RegExp): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [main, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${marker}:\n${output}`)), 60_000);
    const on = (d: Buffer) => {
      output += d;
      if (marker.test(output)) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before ${marker}:\n${output}`));
    });
  });
}

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

function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
    child.kill(signal);
  });
}

test('validate: ok for the example, exit 2 with positioned errors for a bad file', () => {
  const good = run(['validate', example]);
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /ok \(trust domain shop\.local; 5 zone\(s\): public, private, partner, internal, corp/);
  const dir = tempDir();
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(bad, readFileSync(example, 'utf8').replace('    routes:\n', '    routez:\n'));
  const result = run(['validate', bad]);
  assert.equal(result.status, 2);
  assert.match(result.stderr, /bad\.yaml:\d+:5: zones\.public\.routez: unknown key "routez" \(did you mean "routes"\?\)/);
  assert.match(result.stderr, /gatehouse: invalid configuration \(1 problem\)/);
  assert.doesNotMatch(result.stderr, /at .*\.ts:\d+/, 'no stack trace');
});

test('validate compiles the contracts the topology names: a broken OpenAPI document is reported with its own line', () => {
  const dir = tempDir();
  const copy = path.join(dir, 'gatehouse.yaml');
  writeFileSync(copy, readFileSync(example, 'utf8'));
  mkdirSync(path.join(dir, 'openapi'));
  const doc = readFileSync(path.join(path.dirname(example), 'openapi', 'orders.yaml'), 'utf8');
  writeFileSync(path.join(dir, 'openapi', 'orders.yaml'), doc.replace('minimum: 1, maximum: 1000', 'minimum: one, maximum: 1000'));
  const result = run(['validate', copy]);
  assert.equal(result.status, 2, result.stdout);
  assert.match(result.stderr, /openapi\/orders\.yaml:\d+:\d+: components\.schemas\.Line: the schema is invalid: Line\/properties\/quantity\/minimum must be number\ngatehouse: invalid configuration \(1 problem\)/, 'once, though three routes use it');
  // the same document fine, a route naming an operation it lacks
  writeFileSync(path.join(dir, 'openapi', 'orders.yaml'), doc.replace(/\n  \/api\/orders\/\{id\}:[\s\S]*?(?=\ncomponents:)/, ''));
  const missing = run(['validate', copy]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /gatehouse\.yaml:\d+:\d+: zones\.private\.routes\[1\]\.validate\.openapi: openapi\/orders\.yaml describes no get operation at \/api\/orders\/\{id\}/);
});

test('every verb has --help', () => {
  for (const verb of ['up', 'gateway', 'validate']) {
    const r = run([verb, '--help']);
    assert.equal(r.status, 0, verb);
    assert.match(r.stdout, new RegExp(`Usage: gatehouse ${verb}`));
  }
});

test('gateway --workers 2: serves, metrics are aggregated across workers, SIGHUP reloads, SIGTERM stops', async () => {
  const upstream = await startUpstream();
  const dir = tempDir();
  const file = path.join(dir, 'g.yaml');
  const yaml = (extra: string) => `version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    routes:
      - { path: /a, service: s, auth: anonymous }${extra}
services:
  s: { zone: edge, upstream: '${upstream.url}' }
`;
  writeFileSync(file, yaml(''));
  const { child, output } = await start(['gateway', '--config', file, '--zone', 'edge', '--state-dir', dir, '--workers', '2'], /ready: gateway (\S+), admin (\S+)/);
  const [, url, admin] = /ready: gateway (\S+), admin (\S+)/.exec(output())!;
  const agent = new Agent({ connect: { ca: readFileSync(path.join(dir, 'tls/dev-ca.pem')) }, pipelining: 0, allowH2: false });
  try {
    for (let i = 0; i < 20; i++) {
      const r = await request(url + '/a', { dispatcher: agent, reset: true });
      assert.equal(r.statusCode, 200);
      await r.body.dump();
    }
    const metrics = await (await fetch(admin + '/metrics')).text();
    assert.match(metrics, /gatehouse_gateway_requests_total\{route="a",method="GET",status_class="2xx",zone="edge"\} 20/);
    writeFileSync(file, yaml('\n      - { path: /b, service: s, auth: anonymous }'));
    child.kill('SIGHUP');
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const r = await request(url + '/b', { dispatcher: agent, reset: true });
      status = r.statusCode;
      await r.body.dump();
    }
    assert.equal(status, 200, 'the new route serves after SIGHUP');
    writeFileSync(file, yaml('\n      - { path: /c, service: nope, auth: anonymous }'));
    const refused = await fetch(admin + '/reload', { method: 'POST' });
    assert.equal(refused.status, 422);
    assert.match(((await refused.json()) as { detail: string }).detail, /routes\[1\]\.service: unknown service "nope"/);
  } finally {
    await agent.close();
    assert.equal(await stop(child), 0);
    await upstream.close();
  }
});

test('up: the example comes up as a new user sees it, writes endpoints.json, and stops on SIGINT', async () => {
  const dir = tempDir('gh-up-');
  const { child } = await start(['up', '--ephemeral-ports', '--state-dir', dir], /gatehouse: ready/);
  try {
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
    const agent = new Agent({ connect: { ca: readFileSync(endpoints.caBundle) } });
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
    await agent.close();
  } finally {
    assert.equal(await stop(child, 'SIGINT'), 0);
  }
});

test('up: a token revoked at the authority is refused by the gateway within the poll interval, cached ones included', async (t) => {
  const dir = tempDir('gh-up-revoke-');
  const { child } = await start(['up', '--ephemeral-ports', '--state-dir', dir], /gatehouse: ready/);
  const endpoints = JSON.parse(readFileSync(path.join(dir, 'endpoints.json'), 'utf8'));
  const agent = new Agent({ connect: { ca: readFileSync(endpoints.caBundle) } });
  const publicAgent = agent;
  try {
    const creds = JSON.parse(readFileSync(path.join(dir, 'dev-credentials.json'), 'utf8'));
    const routes = { public: '/api/echo/revoked', private: '/api/orders' };
    // the private gateway's ingress is locked: it admits the BFF's certificate only
    const privateAgent = await privateGatewayAgent(dir, endpoints.caBundle);
    const waited = await Promise.all(
      Object.entries(routes).map(async ([zone, route]) => {
        const agent = zone === 'private' ? privateAgent : publicAgent;
        const { authority, gateway } = endpoints.zones[zone];
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
      const { authority } = endpoints.zones[zone];
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
  } finally {
    await agent.close();
    assert.equal(await stop(child, 'SIGINT'), 0);
  }
});

test('up --no-dev: without the secret of a revocation-feed client it refuses to start and says what to do', () => {
  const dir = tempDir('gh-up-nodev-');
  const env = { ...process.env };
  delete env.GATEHOUSE_PUBLIC_FEED_SECRET;
  delete env.GATEHOUSE_PRIVATE_FEED_SECRET;
  const r = spawnSync(process.execPath, [main, 'up', '--no-dev', '--ephemeral-ports', '--state-dir', dir], { encoding: 'utf8', cwd: root, timeout: 30_000, env });
  assert.equal(r.status, 1, r.stderr);
  for (const zone of ['public', 'private']) {
    assert.match(r.stderr, new RegExp(`zone ${zone}: .*GATEHOUSE_${zone.toUpperCase()}_FEED_SECRET is not set`));
    assert.match(r.stderr, new RegExp(`gatehouse clients add .*--zone ${zone} --id gateway-${zone} --revocation-feed`));
  }
  assert.ok(!existsSync(path.join(dir, 'logs')), 'nothing was started');
});

test('keys api add | list | revoke: the key is printed once, only its prefix is listed', () => {
  const dir = tempDir('gh-keys-');
  const add = run(['keys', 'api', 'add', '--zone', 'public', '--consumer', 'acme', '--scopes', 'orders:read,catalog:read', '--tier', 'gold', '--state-dir', dir, '--config', example]);
  assert.equal(add.status, 0, add.stderr);
  const created = JSON.parse(add.stdout.slice(0, add.stdout.lastIndexOf('}') + 1));
  assert.match(created.key, /^gh_[a-z0-9]{8}_[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(created.scopes, ['orders:read', 'catalog:read']);
  const list = run(['keys', 'api', 'list', '--zone', 'public', '--state-dir', dir, '--config', example]);
  assert.equal(list.status, 0, list.stderr);
  // the secret part is everything after gh_<prefix>_ (base64url: it may itself contain '_')
  const secret = created.key.slice(created.key.indexOf('_', 3) + 1);
  assert.equal(secret.length, 43);
  assert.ok(!list.stdout.includes(secret), 'the secret part is never listed');
  assert.equal(JSON.parse(list.stdout)[0].prefix, created.prefix);
  // the hashes are for the owner only
  for (const f of readdirSync(path.join(dir, 'gateway', 'public')).filter((n) => n.startsWith('api-keys.db')))
    assert.equal(statSync(path.join(dir, 'gateway', 'public', f)).mode & 0o777, 0o600, f);
  assert.equal(run(['keys', 'api', 'revoke', '--zone', 'public', '--prefix', created.prefix, '--state-dir', dir, '--config', example]).status, 0);
  const again = run(['keys', 'api', 'revoke', '--zone', 'public', '--prefix', created.prefix, '--state-dir', dir, '--config', example]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /no active key with prefix/);
  // a --zone the topology gives no gateway is a usage error (DESIGN.md: exit 2), named as such
  const noGateway = run(['keys', 'api', 'add', '--zone', 'nowhere', '--consumer', 'x', '--state-dir', dir, '--config', example]);
  assert.equal(noGateway.status, 2);
  assert.match(noGateway.stderr, /^gatehouse keys: zone "nowhere" has no gateway/m);
});
