// createService against hostile peers over raw node:tls: every certificate that
// is not a valid X509-SVID of a known workload is refused at the connection,
// every request outside the caller's allow edge is refused, each refusal is
// counted and logged, and none reaches the handler.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair as genKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import { SignJWT } from 'jose';
import { makeCaDir, captureLogger, rogueCa, forge, realIssuer, uri, dns, TD, x509, type ForgeIssuer } from './support/pki-fixtures.ts';
import { rawHttps, get, type RawAnswer } from './support/pki-tls.ts';
import { issueWorkloadIdentity, localRevocations, revokeCertificate, type WorkloadIdentity } from '../src/pki/index.ts';
import { createService, type MeshService, type RequestContext } from '../src/mesh/index.ts';

const id = (zone: string, svc: string) => `spiffe://${TD}/zone/${zone}/svc/${svc}`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let orders: MeshService;
let bundle: string;
let priv: ForgeIssuer;
const ids: Record<string, WorkloadIdentity> = {};
const seen: RequestContext[] = [];
const logs = captureLogger('mesh');
let tokenKeys: { publicKey: import('node:crypto').KeyObject; privateKey: import('node:crypto').KeyObject };

before(async () => {
  env = await makeCaDir();
  priv = await realIssuer(env.stateDir, 'private');
  for (const [name, zone] of [['orders', 'private'], ['checkout', 'public'], ['reporting', 'private'], ['payments', 'private']])
    ids[name] = await issueWorkloadIdentity(env.stateDir, id(zone, name), { topology: env.topology });
  ids['gw-public'] = await issueWorkloadIdentity(env.stateDir, `spiffe://${TD}/zone/public/gateway`);
  bundle = ids.orders.bundlePem;
  tokenKeys = await promisify(genKeyPair)('ec', { namedCurve: 'P-256' });
  orders = await createService({
    name: 'orders',
    topology: env.topology,
    identity: ids.orders,
    revocations: localRevocations(env.stateDir, 0), // re-read on every check: the bound under test is 0
    identityToken: { keys: tokenKeys.publicKey, issuer: 'https://gateway.test' },
    logger: logs.logger,
    handler(_req, res, ctx) {
      seen.push(ctx);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ caller: ctx.caller.name, user: ctx.user?.sub ?? null }));
    },
  });
});
after(async () => {
  await orders.close();
  env.cleanup();
});

const as = (name: string, requests: string[] | string) =>
  rawHttps(orders.url, { cert: ids[name].certPem, key: ids[name].keyPem, ca: bundle, requests });

async function denials(reason: string): Promise<number> {
  const m = await orders.registry.getSingleMetric('gatehouse_mesh_denials_total')!.get();
  return m.values.filter((v) => v.labels.reason === reason).reduce((n, v) => n + v.value, 0);
}

/** Runs `attempt`, asserts the connection was refused with `reason`, counted, and the handler never ran. */
async function refusedConnection(reason: string, attempt: () => Promise<RawAnswer[]>) {
  const before = await denials(reason);
  const handled = seen.length;
  const [a] = await attempt();
  assert.equal(a.status, undefined, `expected no HTTP answer (${reason}), got ${a.head}`);
  assert.equal(await denials(reason), before + 1, `denial ${reason} not counted`);
  assert.equal(seen.length, handled, 'the handler ran');
}

async function refusedRequest(name: string, request: string, status: number, reason: string) {
  const before = await denials(reason);
  const handled = seen.length;
  const [a] = await as(name, request);
  assert.equal(a.status, status, `${request.split('\r\n')[0]}: ${a.head}`);
  assert.match(a.head, /content-type: application\/problem\+json/i);
  const body = JSON.parse(a.body);
  assert.match(body.request_id, /^[0-9a-f-]{36}$/);
  assert.ok(!a.body.includes(reason) || reason === 'forbidden', 'the denial reason leaked to the caller');
  assert.equal(await denials(reason), before + 1, `denial ${reason} not counted`);
  assert.equal(seen.length, handled, 'the handler ran');
}

test('an allowed caller reaches the handler, which sees its verified identity', async () => {
  const [a] = await as('checkout', get('/orders/42'));
  assert.equal(a.status, 200, a.head);
  assert.deepEqual(JSON.parse(a.body), { caller: 'checkout', user: null });
  const [b] = await as('reporting', get('/orders/summary'));
  assert.equal(b.status, 200);
  const m = await orders.registry.getSingleMetric('gatehouse_mesh_requests_total')!.get();
  assert.ok(m.values.some((v) => v.labels.caller === 'checkout' && v.labels.outcome === 'allowed'));
});

test('connections without a valid X509-SVID of a known workload are refused', async () => {
  await refusedConnection('no_client_certificate', () => rawHttps(orders.url, { ca: bundle, requests: get('/orders/1') }));
  const rogue = await rogueCa('public');
  const fake = await forge({ issuer: rogue.issuer, sans: [uri(id('public', 'checkout'))] });
  await refusedConnection('untrusted_chain', () => rawHttps(orders.url, { cert: fake.certPem, key: fake.keyPem, ca: bundle, requests: get("/orders/1") }));
  const checkoutIssuer = await realIssuer(env.stateDir, 'public');
  const cases: [string, Parameters<typeof forge>[0]][] = [
    ['expired', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout'))], notBefore: new Date(Date.now() - 7200_000), notAfter: new Date(Date.now() - 3600_000) }],
    ['not_yet_valid', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout'))], notBefore: new Date(Date.now() + 3600_000), notAfter: new Date(Date.now() + 7200_000) }],
    ['lifetime_above_policy', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout'))], notAfter: new Date(Date.now() + 90 * 86400_000) }],
    ['multiple_uri_sans', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout')), uri(id('private', 'reporting'))] }],
    ['no_uri_san', { issuer: checkoutIssuer, sans: [dns(id('public', 'checkout'))] }],
    ['no_uri_san', { issuer: checkoutIssuer, sans: [], subjectCn: id('public', 'checkout') }],
    ['not_a_leaf', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout'))], ca: true }],
    ['wrong_issuer', { issuer: priv, sans: [uri(id('public', 'checkout'))] }],
    ['unknown_workload', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout-evil'))] }],
    ['unknown_workload', { issuer: priv, sans: [uri(id('private', 'orders-evil'))] }],
    ['bad_spiffe_id', { issuer: checkoutIssuer, sans: [uri(id('public', 'checkout') + '/')] }],
    ['bad_spiffe_id', { issuer: checkoutIssuer, sans: [uri(id('public', 'Checkout'))] }],
    ['bad_spiffe_id', { issuer: checkoutIssuer, sans: [uri(id('public', '%63heckout'))] }],
    ['bad_spiffe_id', { issuer: checkoutIssuer, sans: [uri(`spiffe://${TD}/zone/public/svc/x/../checkout`)] }],
    ['bad_spiffe_id', { issuer: checkoutIssuer, sans: [uri(`spiffe://${TD.toUpperCase()}/zone/public/svc/checkout`)] }],
  ];
  for (const [reason, o] of cases) {
    const c = await forge(o);
    await refusedConnection(reason, () => rawHttps(orders.url, { cert: c.certPem, key: c.keyPem, ca: bundle, requests: get('/orders/1') }));
  }
  // A leaf signed by a (real, valid) leaf.
  const checkout = ids.checkout;
  const leafIssuer: ForgeIssuer = {
    cert: new x509.X509Certificate(checkout.certPem),
    key: await crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(checkout.keyPem), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']),
    chainPem: checkout.certPem,
  };
  const child = await forge({ issuer: leafIssuer, sans: [uri(id('public', 'checkout'))] });
  // OpenSSL refuses the chain (the issuing leaf is not a CA and may not sign certificates).
  await refusedConnection('untrusted_chain', () => rawHttps(orders.url, { cert: child.certPem, key: child.keyPem, ca: bundle, requests: get('/orders/1') }));
});

test('requests outside the caller\'s allow edge are refused', async () => {
  await refusedRequest('checkout', get('/orders/1', {}, 'DELETE'), 403, 'method_not_allowed');
  await refusedRequest('checkout', get('/orders/1', {}, 'OPTIONS'), 403, 'method_not_allowed');
  await refusedRequest('checkout', get('/admin'), 403, 'path_not_allowed');
  await refusedRequest('checkout', get('/orders-archive'), 403, 'path_not_allowed');
  await refusedRequest('checkout', get('/orders/1', { 'x-http-method-override': 'DELETE' }, 'POST'), 403, 'method_override');
  await refusedRequest('checkout', get('/orders/1', { 'x-method-override': 'DELETE' }), 403, 'method_override');
  await refusedRequest('checkout', get('/orders/../admin'), 400, 'ambiguous_path');
  await refusedRequest('checkout', get('/orders/%2e%2e/admin'), 400, 'ambiguous_path');
  await refusedRequest('checkout', get('/orders//1'), 400, 'ambiguous_path');
  await refusedRequest('checkout', get('https://evil/orders/1'), 400, 'ambiguous_path');
  await refusedRequest('reporting', get('/orders/1'), 403, 'path_not_allowed');
  await refusedRequest('reporting', get('/orders/summary', {}, 'POST'), 403, 'method_not_allowed');
  await refusedRequest('payments', get('/orders/1'), 403, 'no_edge');
  await refusedRequest('gw-public', get('/orders/1'), 403, 'no_edge');
});

test('identity claimed through headers is refused, never believed', async () => {
  const xfcc = `By=${id('private', 'orders')};URI=${id('public', 'checkout')}`;
  await refusedRequest('payments', get('/orders/1', { 'x-forwarded-client-cert': xfcc }), 403, 'identity_header');
  await refusedRequest('checkout', get('/orders/1', { 'x-forwarded-client-cert': `URI=${id('private', 'reporting')}` }), 403, 'identity_header');
  await refusedRequest('payments', get('/orders/1', { 'x-spiffe-id': id('public', 'checkout') }), 403, 'identity_header');
  await refusedRequest('payments', get('/orders/1', { 'x-ssl-client-cert': 'x' }), 403, 'identity_header');
});

test('a revoked serial is refused on new and on open connections', async () => {
  const extra = await issueWorkloadIdentity(env.stateDir, id('private', 'reporting'));
  const before = await denials('revoked');
  // One keep-alive connection: a request passes, the serial is revoked, the next request is refused.
  const answers = await rawHttps(orders.url, {
    cert: extra.certPem,
    key: extra.keyPem,
    ca: bundle,
    requests: [get('/orders/summary'), get('/orders/summary')],
    between: () => void revokeCertificate({ stateDir: env.stateDir, serial: extra.serial }),
  });
  assert.deepEqual(answers.map((a) => a.status), [200, 403]);
  assert.equal(await denials('revoked'), before + 1);
  await refusedConnection('revoked', () => rawHttps(orders.url, { cert: extra.certPem, key: extra.keyPem, ca: bundle, requests: get('/orders/summary') }));
});

test('the gateway identity token is verified with aud = this service', async () => {
  const sign = (aud: string, extra: Record<string, unknown> = {}) =>
    new SignJWT({ ...extra })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('https://gateway.test')
      .setSubject('alice')
      .setAudience(aud)
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(tokenKeys.privateKey);
  const [ok] = await as('checkout', get('/orders/1', { 'x-gatehouse-identity': await sign('orders') }));
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).user, 'alice');
  const [ok2] = await as('checkout', get('/orders/1', { 'x-gatehouse-identity': await sign(id('private', 'orders')) }));
  assert.equal(ok2.status, 200);
  await refusedRequest('checkout', get('/orders/1', { 'x-gatehouse-identity': await sign('payments') }), 401, 'identity_token_invalid');
  await refusedRequest('checkout', get('/orders/1', { 'x-gatehouse-identity': 'not.a.jwt' }), 401, 'identity_token_invalid');
  const other = await promisify(genKeyPair)('ec', { namedCurve: 'P-256' });
  const forged = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setIssuer('https://gateway.test').setSubject('mallory').setAudience('orders').setExpirationTime('2m').sign(other.privateKey);
  await refusedRequest('checkout', get('/orders/1', { 'x-gatehouse-identity': forged }), 401, 'identity_token_invalid');
});

test('denials are security events in the log, without secrets', async () => {
  await new Promise((r) => setTimeout(r, 50));
  const events = logs.lines.map((l) => JSON.parse(l)).filter((e) => e.event === 'security' && e.kind === 'mesh_denied');
  assert.ok(events.length >= 20, `only ${events.length} security events`);
  assert.ok(events.some((e) => e.reason === 'identity_header' && e.peer === id('private', 'payments')));
  const text = logs.text();
  assert.ok(!text.includes('PRIVATE KEY') && !/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(text), 'a key or token reached the log');
});
