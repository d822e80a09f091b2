// The CA server end to end: join-token bootstrap, mTLS renewal, revocation, and
// the hostile cases (token reuse/expiry/other service, CSR for another identity
// or a CA, certificates from another CA), each refused with problem+json,
// counted, logged without secrets, and changing nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { X509Certificate, webcrypto } from 'node:crypto';
import { makeCaDir, captureLogger, rogueCa, forge, uri, TD, x509, realIssuer } from './support/pki-fixtures.ts';
import {
  startCaServer,
  createJoinToken,
  bootstrapIdentity,
  renewIdentity,
  revokeCertificate,
  fetchRevocations,
  CaRequestError,
  type CaServer,
  type WorkloadIdentity,
} from '../src/pki/index.ts';
import { newKeyAndCsr } from '../src/pki/lib/workload-key.ts';

const ORDERS = `spiffe://${TD}/zone/private/svc/orders`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let server: CaServer;
let offset = 0; // the CA's clock runs `offset` ms ahead of real time
const logs = captureLogger('ca');

before(async () => {
  env = await makeCaDir();
  server = await startCaServer({
    topology: env.topology,
    stateDir: env.stateDir,
    clock: { now: () => Date.now() + offset },
    logger: logs.logger,
  });
});
after(async () => {
  await server.close();
  env.cleanup();
});

const token = (service = 'orders', ttlSeconds?: number) =>
  createJoinToken({ stateDir: env.stateDir, topology: env.topology, service, ttlSeconds }).token;
const boot = (joinToken: string, service = 'orders') =>
  bootstrapIdentity({ caUrl: server.url, joinToken, service, trustDomain: TD, bundlePem: server.bundlePem });

interface Raw {
  status: number;
  type: string;
  body: Record<string, unknown>;
  text: string;
}
function raw(path: string, body: unknown, opts: { token?: string; cert?: string; key?: string; ca?: string; type?: string } = {}): Promise<Raw> {
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(path, server.url),
      {
        method: 'POST',
        ca: opts.ca ?? server.bundlePem,
        cert: opts.cert,
        key: opts.key,
        agent: false,
        checkServerIdentity: () => undefined,
        headers: {
          'content-type': opts.type ?? 'application/json',
          ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function refusedCount(reason: string): Promise<number> {
  const m = await server.registry.getSingleMetric('gatehouse_pki_requests_refused_total')!.get();
  return m.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

function assertProblem(r: Raw, status: number, code: string, secret?: string) {
  assert.equal(r.status, status, r.text);
  assert.equal(r.type, 'application/problem+json');
  assert.equal(r.body.code, code);
  assert.match(String(r.body.request_id), /^[0-9a-f-]{36}$/);
  assert.ok(!/at .*\.ts:|node_modules|peculiar|Error:/.test(r.text), r.text);
  if (secret) assert.ok(!r.text.includes(secret));
}

test('bootstrap with a join token, then renew over mTLS', async () => {
  const id = await boot(token());
  assert.equal(id.spiffeId, ORDERS);
  const leaf = new X509Certificate(id.certPem);
  assert.equal(leaf.subjectAltName, `URI:${ORDERS}`);
  assert.ok(id.notAfter.getTime() - Date.now() <= 3600_000);

  const renewed = await renewIdentity({ caUrl: server.url, trustDomain: TD, current: id });
  assert.equal(renewed.spiffeId, ORDERS);
  assert.notEqual(renewed.serial, id.serial);
  assert.notEqual(renewed.keyPem, id.keyPem);
  const m = await server.registry.getSingleMetric('gatehouse_pki_certificates_issued_total')!.get();
  assert.ok(m.values.some((v) => v.labels.via === 'renew' && v.labels.zone === 'private' && v.value >= 1));
});

test('a join token is single use', async () => {
  const t = token();
  await boot(t);
  const before = await refusedCount('token_invalid');
  await assert.rejects(boot(t), (e: unknown) => e instanceof CaRequestError && e.status === 401 && e.code === 'token_invalid');
  assert.equal(await refusedCount('token_invalid'), before + 1);
  // Two concurrent redemptions of one token: exactly one wins.
  const t2 = token();
  const results = await Promise.allSettled([boot(t2), boot(t2), boot(t2)]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
});

test('a token for another service is refused and stays usable for its own', async () => {
  const t = token('payments');
  const before = await refusedCount('token_wrong_service');
  await assert.rejects(boot(t, 'orders'), (e: unknown) => e instanceof CaRequestError && e.code === 'token_wrong_service');
  assert.equal(await refusedCount('token_wrong_service'), before + 1);
  assert.equal((await boot(t, 'payments')).spiffeId, `spiffe://${TD}/zone/private/svc/payments`);
});

test('an expired token is refused', async () => {
  const t = token('orders', 60);
  offset = 61_000;
  try {
    await assert.rejects(boot(t), (e: unknown) => e instanceof CaRequestError && e.code === 'token_expired');
  } finally {
    offset = 0;
  }
});

test('a CSR for another identity or a CA certificate is refused and does not burn the token', async () => {
  const t = token();
  const evilKeys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const other = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: evilKeys as never,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as never,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${TD}/zone/private/svc/payments` }])],
  });
  let r = await raw('/v1/bootstrap', { service: 'orders', csr: other.toString('pem') }, { token: t });
  assertProblem(r, 403, 'csr_identity_mismatch', t);
  const caCsr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: evilKeys as never,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as never,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true)],
  });
  r = await raw('/v1/bootstrap', { service: 'orders', csr: caCsr.toString('pem') }, { token: t });
  assertProblem(r, 403, 'csr_requests_ca', t);
  r = await raw('/v1/bootstrap', { service: 'orders', csr: (await newKeyAndCsr()).csrPem, ttlSeconds: 86401 }, { token: t });
  assertProblem(r, 400, 'ttl_out_of_policy', t);
  // still unused
  assert.equal((await boot(t)).spiffeId, ORDERS);
});

test('malformed requests get problem+json', async () => {
  assertProblem(await raw('/v1/bootstrap', { service: 'orders', csr: 'x' }), 401, 'unauthorized');
  assertProblem(await raw('/v1/bootstrap', { service: 'orders', csr: 'x' }, { token: 'ghjt_guess' }), 401, 'token_invalid', 'ghjt_guess');
  assertProblem(await raw('/v1/bootstrap', 'csr=x', { token: token(), type: 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
  assertProblem(await raw('/v1/bootstrap', '{', { token: token() }), 400, 'bad_request');
  assertProblem(await raw('/v1/bootstrap', { service: 'orders', csr: 'x'.repeat(20_000) }, { token: token() }), 413, 'payload_too_large');
  assertProblem(await raw('/v1/nothing', {}), 404, 'not_found');
});

test('renewal needs a verified current certificate from this trust domain', async () => {
  const { csrPem } = await newKeyAndCsr();
  assertProblem(await raw('/v1/renew', { csr: csrPem }), 401, 'client_certificate_required');

  // Another CA, same names, a valid-looking ID.
  const rogue = await rogueCa('private');
  const fake = await forge({ issuer: rogue.issuer, sans: [uri(ORDERS)] });
  assertProblem(await raw('/v1/renew', { csr: csrPem }, { cert: fake.certPem, key: fake.keyPem }), 403, 'certificate_rejected');

  // The real issuer, but a leaf that is a CA.
  const ca = await forge({ issuer: await realIssuer(env.stateDir, 'private'), sans: [uri(ORDERS)], ca: true });
  assertProblem(await raw('/v1/renew', { csr: csrPem }, { cert: ca.certPem, key: ca.keyPem }), 403, 'certificate_rejected');

  // A renewing workload cannot change its identity through the CSR.
  const id = await boot(token());
  const evil = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as never,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as never,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${TD}/zone/public/svc/checkout` }])],
  });
  assertProblem(await raw('/v1/renew', { csr: evil.toString('pem') }, { cert: id.certPem, key: id.keyPem }), 403, 'csr_identity_mismatch');
});

test('a revoked serial cannot renew and is published', async () => {
  const id: WorkloadIdentity = await boot(token());
  const r = revokeCertificate({ stateDir: env.stateDir, serial: id.serial.toUpperCase().match(/.{1,2}/g)!.join(':'), reason: 'test' });
  assert.equal(r.serial, id.serial);
  assert.equal(r.added, true);
  await assert.rejects(
    renewIdentity({ caUrl: server.url, trustDomain: TD, current: id }),
    (e: unknown) => e instanceof CaRequestError && e.code === 'certificate_revoked',
  );
  const list = await fetchRevocations({ caUrl: server.url, trustDomain: TD, bundlePem: server.bundlePem });
  assert.ok(list.serials.includes(id.serial));
});

test('the workload refuses a server that is not the CA of its trust domain', async () => {
  const rogue = await rogueCa('private');
  await assert.rejects(
    bootstrapIdentity({ caUrl: server.url, joinToken: token(), service: 'orders', trustDomain: TD, bundlePem: rogue.bundlePem }),
    (e: unknown) => e instanceof CaRequestError && e.code === 'unreachable',
  );
  await assert.rejects(
    bootstrapIdentity({ caUrl: server.url, joinToken: token(), service: 'orders', trustDomain: 'other.local', bundlePem: server.bundlePem }),
    (e: unknown) => e instanceof CaRequestError && e.code === 'unreachable',
  );
});

test('refusals are logged as security events without secrets', async () => {
  const t = token('payments');
  await raw('/v1/bootstrap', { service: 'orders', csr: (await newKeyAndCsr()).csrPem }, { token: t });
  await new Promise((r) => setTimeout(r, 50));
  const text = logs.text();
  assert.ok(text.includes('"event":"security"') && text.includes('token_wrong_service'));
  assert.ok(!text.includes(t), 'a join token reached the log');
  assert.ok(!text.includes('ghjt_'), 'a join token reached the log');
  assert.ok(!text.includes('PRIVATE KEY') && !text.includes('CERTIFICATE REQUEST'));
});
