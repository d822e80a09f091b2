// A DPoP proof is good for one request (RFC 9449 §11.1) across every replica
// of a zone's gateway: when the zone's rate limits keep their buckets in
// Redis, so does the gateway's DPoP replay cache. Two gateway replicas behind
// one public name (the proof's htu) share a real Redis (127.0.0.1:6379, or
// GATEHOUSE_TEST_REDIS_URL; skipped with a printed reason when none answers,
// except under CI=true): a proof one accepted is refused at the other. When
// that Redis is gone the proof is refused, 503 replay_check_unavailable (fail
// closed), or, with the store's failOpen, checked by the replica alone.
// Nonces (authentication.dpopNonce) come from one secret the replicas share
// through that Redis: a nonce one replica issued is good at the other, so a
// client behind the load balancer is not sent use_dpop_nonce round after
// round; without a shared Redis each replica has its own (shown too).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { Redis } from 'ioredis';
import { decodeJwt } from 'jose';
import { tempDir, silentLogger } from './support/authority-harness.ts';
import { startUpstream, type Upstream } from './support/gateway-fixture.ts';
import { boundRouteTopology, dpopKey, dpopHeaders, dpopProof, type DpopKey } from './support/dpop.ts';
import { loadTopology } from '../src/topology/load.ts';
import { initCa } from '../src/pki/index.ts';
import { startAuthority, type RunningAuthority } from '../src/authority/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';

const REDIS = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `gatehouse-test:${randomUUID()}:`;
/**
 * The name clients use for the zone's gateway, which every replica answers
 * (the proofs' htu; a load balancer's name in production). Here localhost,
 * without a port: the name the dev certificate carries.
 */
const PUBLIC_HOST = 'localhost';
const TD = 'replay.test';

/** The Redis the replicas share, or why the tests skip (CI=true: they must run). */
async function reachRedis(): Promise<Redis | string> {
  const client = new Redis(REDIS, { lazyConnect: true, connectTimeout: 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => undefined);
  const failure = await client.connect().then(() => client.ping()).then(() => undefined, (error: Error) => error.message);
  if (failure === undefined) return client;
  client.disconnect();
  if (process.env.CI === 'true') throw new Error(`Redis is not reachable at ${REDIS} (${failure}); CI=true requires it`);
  console.log(`# skipping the shared DPoP replay cache tests: Redis is not reachable at ${REDIS} (${failure})`);
  return failure;
}

const reached = await reachRedis();
const admin = typeof reached === 'string' ? undefined : reached;
const skip = typeof reached === 'string' ? reached : undefined;

let tmp: ReturnType<typeof tempDir>;
let stateDir: string;
let auth: RunningAuthority;
let up: Upstream;
let agent: Agent;
const gateways: RunningGateway[] = [];

/** The zone's topology; `limits`: its rate limit, as the zone's default or on a route of its own. */
function topology(limits: { zone?: string; route?: string }): string {
  return boundRouteTopology(TD, up.url, {
    zone: limits.zone ? `\n    policies:\n      rate_limit: ${limits.zone}` : undefined,
    routes: limits.route ? `\n      - { name: limited, path: /limited, service: app, auth: anonymous, policies: { rate_limit: ${limits.route} } }` : undefined,
  });
}

async function gatewayFor(name: string, yaml: string): Promise<RunningGateway> {
  const file = path.join(tmp.dir, `${name}.yaml`);
  writeFileSync(file, yaml);
  const gw = await startGateway({ config: file, zone: 'partner', stateDir, logger: silentLogger(), accessLog: false });
  gateways.push(gw);
  return gw;
}

before(async () => {
  if (skip) return;
  tmp = tempDir();
  stateDir = path.join(tmp.dir, 'state');
  up = await startUpstream();
  const file = path.join(tmp.dir, 'authority.yaml');
  writeFileSync(file, topology({}));
  await initCa({ stateDir, topology: loadTopology(file).topology });
  auth = await startAuthority({ topology: loadTopology(file), zone: 'partner', stateDir, dev: true, logger: silentLogger() });
  agent = new Agent({ connect: { ca: readFileSync(auth.caFile!, 'utf8') } });
});

after(async () => {
  for (const g of gateways) await g.close();
  await auth?.close();
  await up?.close();
  await agent?.close();
  if (admin) {
    const keys = await admin.keys(`${PREFIX}*`);
    if (keys.length > 0) await admin.del(...keys);
    admin.disconnect();
  }
  tmp?.remove();
});

/** A DPoP-bound token of the zone's seeded service client. */
async function boundToken(key: DpopKey): Promise<string> {
  const svc = auth.devCredentials!.clients.find((c) => c.client_id === 'partner-service')!;
  const endpoint = `${auth.issuer}/token`;
  const r = await request(endpoint, {
    dispatcher: agent,
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64'),
      dpop: await dpopProof(key, { htm: 'POST', htu: endpoint }),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'catalog:read' }).toString(),
  });
  const body = (await r.body.json()) as { access_token: string };
  assert.equal(r.statusCode, 200, JSON.stringify(body));
  assert.equal((decodeJwt(body.access_token).cnf as { jkt: string }).jkt, key.jkt);
  return body.access_token;
}

/** One request to a replica, under the public name the proof was made for. */
async function call(gw: RunningGateway, headers: Record<string, string>) {
  const seen = up.seen.length;
  const r = await request(`${gw.url}/bound`, { dispatcher: agent, headers: { ...headers, host: PUBLIC_HOST } });
  const text = await r.body.text();
  return { status: r.statusCode, challenge: String(r.headers['www-authenticate'] ?? ''), body: text, reached: up.seen.length > seen };
}

const proofFor = (key: DpopKey, token: string) => dpopHeaders(key, token, 'GET', `https://${PUBLIC_HOST}/bound`);

/** Two replicas whose zone rate limit keeps its buckets in the shared Redis, a DPoP-bound token and one proof. */
async function replicasAndProof(name: string) {
  const yaml = topology({ zone: `{ limit: 1000, windowSeconds: 60, key: [address], store: { type: redis, url: '${REDIS}', prefix: '${PREFIX}' } }` });
  const [a, b] = [await gatewayFor(`${name}-a`, yaml), await gatewayFor(`${name}-b`, yaml)];
  const key = await dpopKey();
  const token = await boundToken(key);
  return { a, b, key, token, headers: await proofFor(key, token) };
}

test('two replicas sharing the zone’s Redis: a proof accepted at one is refused at the other (and at itself), a fresh one passes at both', { skip }, async () => {
  const { a, b, key, token, headers } = await replicasAndProof('replica');
  const first = await call(a, headers);
  assert.equal(first.status, 200, first.body);
  const atOther = await call(b, headers);
  assert.equal(atOther.status, 401, 'replayed at the second replica');
  assert.match(atOther.challenge, /^DPoP .*error="invalid_dpop_proof"/);
  assert.match(atOther.challenge, /already used/);
  assert.ok(!atOther.reached, 'the replay never reached the upstream');
  assert.equal((await call(a, headers)).status, 401, 'replayed at the first replica');
  for (const gw of [b, a]) assert.equal((await call(gw, await proofFor(key, token))).status, 200, 'a fresh proof passes at either replica');
  // the proof is a key of that Redis, under the store's prefix, that expires
  const keys = await admin!.keys(`${PREFIX}dpop:${key.jkt}:*`);
  assert.equal(keys.length, 3);
  for (const k of keys) assert.ok((await admin!.pttl(k)) > 0, `${k} expires`);
});

test('one proof raced at both replicas at once: exactly one request is served', { skip }, async () => {
  const { a, b, headers } = await replicasAndProof('race');
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => call(i % 2 ? a : b, headers)));
  assert.equal(results.filter((r) => r.status === 200).length, 1, JSON.stringify(results.map((r) => r.status)));
  assert.equal(results.filter((r) => r.status === 401).length, 9);
});

test('the zone’s Redis gone: without failOpen the proof is refused 503 replay_check_unavailable; with failOpen the replica checks alone', { skip }, async () => {
  // nothing listens on port 1 (tcpmux, long unused): every connection is refused
  const dead = 'redis://127.0.0.1:1';
  // the rate limit sits on another route, so only the replay check meets the dead Redis on /bound
  const closed = await gatewayFor('dead-closed', topology({ route: `{ limit: 10, windowSeconds: 60, key: [address], store: { type: redis, url: '${dead}', prefix: '${PREFIX}', timeoutMs: 50 } }` }));
  const open = await gatewayFor('dead-open', topology({ route: `{ limit: 10, windowSeconds: 60, key: [address], store: { type: redis, url: '${dead}', prefix: '${PREFIX}', timeoutMs: 50, failOpen: true } }` }));
  const key = await dpopKey();
  const token = await boundToken(key);
  const refused = await call(closed, await proofFor(key, token));
  assert.equal(refused.status, 503, refused.body);
  const problem = JSON.parse(refused.body) as { code?: string; type?: string; detail?: string };
  assert.match(JSON.stringify(problem), /replay_check_unavailable/);
  assert.ok(!refused.reached, 'fail closed: nothing reached the upstream');
  const headers = await proofFor(key, token);
  assert.equal((await call(open, headers)).status, 200, 'failOpen: served');
  const again = await call(open, headers);
  assert.equal(again.status, 401, 'failOpen: the replica itself still refuses the replay');
  assert.match(again.challenge, /already used/);
});

/** What a replica answers a proof made with `nonce` (none: the first try): status, and the nonce it hands out. */
async function withNonce(gw: RunningGateway, key: DpopKey, token: string, nonce?: string) {
  const seen = up.seen.length;
  const r = await request(`${gw.url}/bound`, { dispatcher: agent, headers: { ...(await dpopHeaders(key, token, 'GET', `https://${PUBLIC_HOST}/bound`, nonce)), host: PUBLIC_HOST } });
  await r.body.text();
  return { status: r.statusCode, challenge: String(r.headers['www-authenticate'] ?? ''), nonce: r.headers['dpop-nonce'] as string | undefined, reached: up.seen.length > seen };
}

test('nonces: replicas sharing the zone’s Redis issue and accept the same nonces — a nonce from one is good at the other; replicas without it each have their own', { skip }, async () => {
  const nonceZone = (store: string) => `\n    authentication: { dpopNonce: true }${store ? `\n    policies:\n      rate_limit: ${store}` : ''}`;
  const shared = boundRouteTopology(TD, up.url, { zone: nonceZone(`{ limit: 1000, windowSeconds: 60, key: [address], store: { type: redis, url: '${REDIS}', prefix: '${PREFIX}' } }`) });
  const [a, b] = [await gatewayFor('nonce-a', shared), await gatewayFor('nonce-b', shared)];
  const key = await dpopKey();
  const token = await boundToken(key);
  const first = await withNonce(a, key, token);
  assert.equal(first.status, 401);
  assert.match(first.challenge, /^DPoP .*error="use_dpop_nonce"/);
  assert.ok(first.nonce, 'a DPoP-Nonce to use');
  const atB = await withNonce(b, key, token, first.nonce);
  assert.equal(atB.status, 200, `the nonce replica a issued is good at replica b: ${atB.challenge}`);
  assert.ok(atB.reached);
  const atA = await withNonce(a, key, token, first.nonce);
  assert.equal(atA.status, 200, 'and at a itself');
  // both hand out the same current nonce; a made-up one is refused at both
  assert.equal((await withNonce(b, key, token)).nonce, first.nonce);
  for (const gw of [a, b]) {
    const forged = await withNonce(gw, key, token, 'AAAAAAAAAAA.bm90LWEtbm9uY2Utb2YtdGhpcy16b25l');
    assert.equal(forged.status, 401);
    assert.match(forged.challenge, /error="use_dpop_nonce"/);
  }
  // the secret is one key of that Redis, under the store's prefix
  assert.equal((await admin!.keys(`${PREFIX}dpop:nonce-secret`)).length, 1);

  // replicas without a shared Redis: the nonce of one is stale at the other (the loop a shared Redis ends)
  const alone = boundRouteTopology(TD, up.url, { zone: nonceZone('') });
  const [c, d] = [await gatewayFor('nonce-c', alone), await gatewayFor('nonce-d', alone)];
  const fromC = await withNonce(c, key, token);
  assert.ok(fromC.nonce);
  const atD = await withNonce(d, key, token, fromC.nonce);
  assert.equal(atD.status, 401);
  assert.notEqual(atD.nonce, fromC.nonce);
  assert.equal((await withNonce(c, key, token, fromC.nonce)).status, 200, 'at its own replica it is good');
});
