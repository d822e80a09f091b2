import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, webcrypto } from 'node:crypto';
import { readFileSync, renameSync, existsSync } from 'node:fs';
import path from 'node:path';
import { makeCaDir, testTopology, TD, x509 } from '../../test/support/pki-fixtures.ts';
import { openCa, type Ca } from './open-ca.ts';
import { initCa } from './init-ca.ts';
import { issueCertificate } from './issue-certificate.ts';
import { issueWorkloadIdentity } from './issue-workload-identity.ts';
import { newKeyAndCsr } from './lib/workload-key.ts';
import { loadKms, MasterKeyError } from '../vault/index.ts';
import { GatehouseError } from '../shared/errors.ts';
import { frozenClock } from '../shared/clock.ts';

const ORDERS = `spiffe://${TD}/zone/private/svc/orders`;
const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let ca: Ca;

before(async () => {
  env = await makeCaDir();
  ca = await openCa({ stateDir: env.stateDir, topology: env.topology });
});
after(() => env.cleanup());

async function csrWith(params: { name?: string; extensions?: x509.Extension[]; alg?: 'p384' | 'rsa' }): Promise<string> {
  let keys: webcrypto.CryptoKeyPair;
  let signingAlgorithm: object = EC;
  if (params.alg === 'p384') {
    keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    signingAlgorithm = { name: 'ECDSA', hash: 'SHA-384' };
  } else if (params.alg === 'rsa') {
    keys = (await webcrypto.subtle.generateKey(
      { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' },
      true,
      ['sign', 'verify'],
    )) as webcrypto.CryptoKeyPair;
    signingAlgorithm = { name: 'RSASSA-PKCS1-v1_5' };
  } else keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: params.name,
    extensions: params.extensions,
    keys: keys as never,
    signingAlgorithm: signingAlgorithm as never,
  });
  return csr.toString('pem');
}

async function refused(csr: string, code: string, spiffeId = ORDERS, ttlSeconds?: number) {
  await assert.rejects(issueCertificate(ca, { csr, spiffeId, ttlSeconds }), (e: unknown) => {
    assert.ok(e instanceof GatehouseError, String(e));
    assert.equal(e.code, code);
    return true;
  });
}

test('issues an X509-SVID: one URI SAN, not a CA, digitalSignature, zone issuer, 1 hour', async () => {
  const { csrPem, keyPem } = await newKeyAndCsr();
  const issued = await issueCertificate(ca, { csr: csrPem, spiffeId: ORDERS });
  const leaf = new X509Certificate(issued.leafPem);
  assert.equal(leaf.subjectAltName, `URI:${ORDERS}`);
  assert.equal(leaf.ca, false);
  assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)));
  const p = new x509.X509Certificate(issued.leafPem);
  const bc = p.getExtension(x509.BasicConstraintsExtension)!;
  assert.equal(bc.ca, false);
  assert.equal(bc.critical, true);
  const ku = p.getExtension(x509.KeyUsagesExtension)!;
  assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);
  const lifetime = issued.notAfter.getTime() - Date.now();
  assert.ok(lifetime > 3590_000 && lifetime <= 3600_000, `lifetime ${lifetime}`);
  // chain: leaf <- private zone issuer <- root
  const issuer = new X509Certificate(readFileSync(path.join(env.stateDir, 'pki/issuers/private.pem')));
  const root = new X509Certificate(issued.bundlePem);
  assert.ok(leaf.checkIssued(issuer) && leaf.verify(issuer.publicKey));
  assert.ok(issuer.checkIssued(root) && issuer.verify(root.publicKey));
  assert.equal(issued.chainPem, issued.leafPem + readFileSync(path.join(env.stateDir, 'pki/issuers/private.pem'), 'utf8'));
});

test('lifetime: up to 24 hours on request, never above', async () => {
  const { csrPem } = await newKeyAndCsr();
  const day = await issueCertificate(ca, { csr: csrPem, spiffeId: ORDERS, ttlSeconds: 86400 });
  assert.ok(day.notAfter.getTime() - Date.now() <= 86400_000);
  await refused(csrPem, 'ttl_out_of_policy', ORDERS, 86401);
  await refused(csrPem, 'ttl_out_of_policy', ORDERS, 30 * 86400);
  await refused(csrPem, 'ttl_out_of_policy', ORDERS, 10);
  await refused(csrPem, 'ttl_out_of_policy', ORDERS, 3600.5);
});

test('a CSR asking for another identity is refused', async () => {
  const other = `spiffe://${TD}/zone/private/svc/payments`;
  await refused(await csrWith({ extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: other }])] }), 'csr_identity_mismatch');
  await refused(
    await csrWith({ extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ORDERS }, { type: 'url', value: other }])] }),
    'csr_identity_mismatch',
  );
  await refused(
    await csrWith({ extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ORDERS }, { type: 'dns', value: 'payments' }])] }),
    'csr_identity_mismatch',
  );
  await refused(await csrWith({ name: 'CN=payments' }), 'csr_identity_mismatch');
  await refused(await csrWith({ name: 'CN=orders, O=Gatehouse' }), 'csr_identity_mismatch');
  // exactly its own identity is fine
  const own = await csrWith({ name: 'CN=orders', extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: ORDERS }])] });
  assert.equal((await issueCertificate(ca, { csr: own, spiffeId: ORDERS })).spiffeId, ORDERS);
});

test('a CSR asking for a CA certificate is refused', async () => {
  await refused(await csrWith({ extensions: [new x509.BasicConstraintsExtension(true, 0, true)] }), 'csr_requests_ca');
  await refused(await csrWith({ extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)] }), 'csr_requests_ca');
  await refused(await csrWith({ extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature)] }), 'csr_requests_ca');
});

test('keys other than ECDSA P-256 are refused', async () => {
  await refused(await csrWith({ alg: 'p384' }), 'csr_key_unsupported');
  await refused(await csrWith({ alg: 'rsa' }), 'csr_key_unsupported');
});

test('malformed, tampered or wrong-type PEM is refused', async () => {
  const good = await csrWith({});
  const der = Buffer.from(x509.PemConverter.decodeFirst(good));
  der[der.length - 5] ^= 0xff; // inside the signature
  await refused(x509.PemConverter.encode(der, 'CERTIFICATE REQUEST'), 'csr_invalid');
  await refused('not a csr', 'csr_invalid');
  await refused(good + good, 'csr_invalid');
  await refused(readFileSync(path.join(env.stateDir, 'pki/bundle.pem'), 'utf8'), 'csr_invalid');
  await refused('x'.repeat(9000), 'csr_invalid');
});

test('identities outside the topology or the trust domain are refused', async () => {
  const csr = await csrWith({});
  for (const id of [
    `spiffe://${TD}/zone/private/svc/orders-evil`,
    `spiffe://${TD}/zone/public/svc/orders`, // wrong zone for orders
    `spiffe://${TD}/zone/private/svc/orders/`,
    `spiffe://${TD}/zone/nowhere/gateway`,
    `spiffe://other.local/zone/private/svc/orders`,
  ])
    await refused(csr, 'unknown_workload', id);
});

test('the root and issuer keys are sealed under the master key at rest; the root can go offline; a wrong master key adds nothing', async () => {
  const pki = path.join(env.stateDir, 'pki');
  const kms = loadKms(env.stateDir, { mayCreate: false, env: {} });
  const sealed = JSON.parse(readFileSync(path.join(pki, 'root-key.enc.json'), 'utf8'));
  assert.equal(sealed.v, 2);
  assert.ok(!readFileSync(path.join(pki, 'root-key.enc.json'), 'utf8').includes('PRIVATE KEY'));
  assert.equal(existsSync(path.join(pki, 'root-passphrase')), false, 'no passphrase file');
  const der = await kms.unwrap(Buffer.from(sealed.sealed, 'base64url'), 'pki:root');
  const rootKey = createPrivateKey({ key: der!, format: 'der', type: 'pkcs8' });
  assert.ok(new X509Certificate(readFileSync(path.join(pki, 'bundle.pem'))).checkPrivateKey(rootKey));
  assert.equal(await kms.unwrap(Buffer.from(sealed.sealed, 'base64url'), 'pki:issuer:public'), undefined, 'the AAD names the key');
  const issuerFile = readFileSync(path.join(pki, 'issuers/private.key'), 'utf8');
  assert.ok(!issuerFile.includes('PRIVATE KEY'));
  const issuerDer = await kms.unwrap(Buffer.from(JSON.parse(issuerFile).sealed, 'base64url'), 'pki:issuer:private');
  assert.ok(new X509Certificate(readFileSync(path.join(pki, 'issuers/private.pem'))).checkPrivateKey(createPrivateKey({ key: issuerDer!, format: 'der', type: 'pkcs8' })));

  // Offline: issuing still works; adding a zone needs the root back.
  renameSync(path.join(pki, 'root-key.enc.json'), path.join(env.stateDir, 'offline.json'));
  try {
    const id = await issueWorkloadIdentity(env.stateDir, ORDERS);
    assert.equal(id.spiffeId, ORDERS);
    const bigger = testTopology().zones;
    const topology = { ...testTopology(), zones: { ...bigger, extra: bigger.public } };
    await assert.rejects(initCa({ stateDir: env.stateDir, topology }), (e: unknown) => (e as GatehouseError).code === 'ca_locked');
  } finally {
    renameSync(path.join(env.stateDir, 'offline.json'), path.join(pki, 'root-key.enc.json'));
  }
  const topology = { ...testTopology(), zones: { ...testTopology().zones, extra: testTopology().zones.public } };
  const wrong = Buffer.alloc(32, 5).toString('hex');
  await assert.rejects(initCa({ stateDir: env.stateDir, topology, env: { GATEHOUSE_MASTER_KEY: wrong } }), (e: unknown) => e instanceof MasterKeyError && /refusing/.test(e.message) && !e.message.includes(wrong));
  await assert.rejects(openCa({ stateDir: env.stateDir, topology, env: { GATEHOUSE_MASTER_KEY: wrong } }), MasterKeyError);
  assert.equal(existsSync(path.join(pki, 'issuers/extra.pem')), false);
  const r = await initCa({ stateDir: env.stateDir, topology });
  assert.deepEqual(r.createdIssuers, ['extra']);
  assert.equal(r.createdRoot, false);
});

test('certificates follow the injected clock and never outlive their issuer', async () => {
  const clock = frozenClock(Math.floor(Date.now() / 1000) * 1000 + 364 * 86400_000 + 23 * 3600_000); // one hour before the zone issuer expires
  const late = await openCa({ stateDir: env.stateDir, topology: env.topology, clock });
  const { csrPem } = await newKeyAndCsr();
  const issued = await issueCertificate(late, { csr: csrPem, spiffeId: ORDERS, ttlSeconds: 86400 });
  const issuer = new X509Certificate(readFileSync(path.join(env.stateDir, 'pki/issuers/private.pem')));
  assert.ok(issued.notAfter.getTime() <= new Date(issuer.validTo).getTime());
  assert.equal(issued.notBefore.getTime(), clock.now() - 30_000);
});
