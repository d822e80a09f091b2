// Renewal lineage (hardening item 5): a certificate renewed from another
// carries its parent's lineage, and revoking any certificate revokes every
// certificate renewed from it, directly or not — so a key stolen before a
// revocation, and renewed once, cannot outlive it. Through the real CA server
// over mTLS; the revocation feed (what the mesh and the gateways read) lists
// the descendants too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { RevocationStore } from '../src/pki/lib/revocations.ts';
import path from 'node:path';
import { makeCaDir, captureLogger, TD } from './support/pki-fixtures.ts';
import {
  startCaServer,
  createJoinToken,
  bootstrapIdentity,
  renewIdentity,
  revokeCertificate,
  fetchRevocations,
  createRevocationFeed,
  issueWorkloadIdentity,
  CaRequestError,
  pkiPaths,
  type CaServer,
  type WorkloadIdentity,
} from '../src/pki/index.ts';

const ORDERS = `spiffe://${TD}/zone/private/svc/orders`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let server: CaServer;

before(async () => {
  env = await makeCaDir();
  server = await startCaServer({ topology: env.topology, stateDir: env.stateDir, logger: captureLogger('ca').logger });
});
after(async () => {
  await server.close();
  env.cleanup();
});

const boot = (service = 'orders') =>
  bootstrapIdentity({
    caUrl: server.url,
    joinToken: createJoinToken({ stateDir: env.stateDir, topology: env.topology, service }).token,
    service,
    trustDomain: TD,
    bundlePem: server.bundlePem,
  });
const renew = (current: WorkloadIdentity) => renewIdentity({ caUrl: server.url, trustDomain: TD, current });
const revoked = async () => new Set((await fetchRevocations({ caUrl: server.url, trustDomain: TD, bundlePem: server.bundlePem })).serials);
const refusedAsRevoked = (p: Promise<unknown>) =>
  assert.rejects(p, (e: unknown) => e instanceof CaRequestError && e.status === 403 && e.code === 'certificate_revoked');

test('revoking a certificate revokes every certificate renewed from it, and no descendant renews', async () => {
  const a = await boot();
  const b = await renew(a); // e.g. a thief with A's key renews once …
  const c = await renew(b); // … and again
  const a2 = await renew(a); // the owner renews A as well
  const other = await boot(); // another lineage of the same service

  const r = revokeCertificate({ stateDir: env.stateDir, serial: a.serial, reason: 'key stolen' });
  assert.equal(r.added, true);

  for (const cert of [a, b, c, a2]) await refusedAsRevoked(renew(cert));
  const list = await revoked();
  for (const cert of [a, b, c, a2]) assert.ok(list.has(cert.serial), `${cert.serial} is missing from the revocation feed`);
  assert.deepEqual(new Set(r.descendants), new Set([b.serial, c.serial, a2.serial]));
  assert.ok(!list.has(other.serial));
  // the other lineage is untouched
  assert.equal((await renew(other)).spiffeId, other.spiffeId);

  // the feed a mesh peer or gateway runs refuses the descendants too
  const feed = createRevocationFeed({ caUrl: server.url, trustDomain: TD, bundlePem: server.bundlePem, refreshMs: 60_000 });
  try {
    await feed.ready;
    assert.equal(feed.isRevoked(c.serial), true);
    assert.equal(feed.isRevoked(other.serial), false);
  } finally {
    feed.close();
  }

  // the descendants' records say why
  const entry = JSON.parse(readFileSync(path.join(pkiPaths(env.stateDir).revoked, `${c.serial}.json`), 'utf8'));
  assert.equal(entry.reason, `descendant of ${a.serial}: key stolen`);
});

test('revoking a renewed certificate revokes its subtree only, not its parent or siblings', async () => {
  const a = await boot();
  const b = await renew(a);
  const c = await renew(b);
  const sibling = await renew(a);
  const r = revokeCertificate({ stateDir: env.stateDir, serial: b.serial });
  await refusedAsRevoked(renew(c));
  const list = await revoked();
  assert.ok(list.has(b.serial) && list.has(c.serial));
  assert.deepEqual(r.descendants, [c.serial]);
  assert.ok(!list.has(a.serial) && !list.has(sibling.serial));
  assert.equal((await renew(sibling)).spiffeId, a.spiffeId);
});

test('revoking again is idempotent and still reaches descendants issued since', async () => {
  const a = await boot();
  const b = await renew(a);
  assert.equal(revokeCertificate({ stateDir: env.stateDir, serial: b.serial }).added, true);
  const again = revokeCertificate({ stateDir: env.stateDir, serial: b.serial });
  assert.equal(again.added, false);
  assert.deepEqual(again.descendants, []);
  // a serial the CA never issued (or issued before lineage was kept) is revoked alone
  const unknown = revokeCertificate({ stateDir: env.stateDir, serial: '0a:0b:0c' });
  assert.deepEqual(unknown, { serial: 'a0b0c', added: true, descendants: [] });
});

test('an ancestor revoked without its descendants (by hand, or a revocation cut short) still stops them at renewal', async () => {
  const a = await boot();
  const b = await renew(a);
  const c = await renew(b);
  // only A's own record, as an older `ca revoke` or an operator would write it
  new RevocationStore(pkiPaths(env.stateDir).revoked).add(a.serial, new Date(), 'by hand');
  await refusedAsRevoked(renew(c));
  const list = await revoked();
  assert.ok(list.has(c.serial), 'the refused descendant joins the revocation feed');
});

test('direct renewal from the state dir (a dev sidecar) keeps the lineage and stops at a revoked ancestor', async () => {
  const a = await issueWorkloadIdentity(env.stateDir, ORDERS, { topology: env.topology });
  const b = await issueWorkloadIdentity(env.stateDir, ORDERS, { topology: env.topology, parent: a.serial });
  const r = revokeCertificate({ stateDir: env.stateDir, serial: a.serial });
  assert.deepEqual(r.descendants, [b.serial]);
  await assert.rejects(
    issueWorkloadIdentity(env.stateDir, ORDERS, { topology: env.topology, parent: b.serial }),
    (e: unknown) => (e as { code?: string }).code === 'certificate_revoked',
  );
});

test('a revocation request with a hostile serial or reason is refused before anything is written', () => {
  const before = readdirSync(pkiPaths(env.stateDir).revoked).length;
  assert.throws(
    () => revokeCertificate({ stateDir: env.stateDir, serial: 'abcd', reason: 'line one\nline two' }),
    (e: unknown) => (e as { code?: string }).code === 'bad_request',
  );
  assert.throws(
    () => revokeCertificate({ stateDir: env.stateDir, serial: 'abcd', reason: 'x'.repeat(257) }),
    (e: unknown) => (e as { code?: string }).code === 'bad_request',
  );
  assert.equal(readdirSync(pkiPaths(env.stateDir).revoked).length, before);
});

test('a revocation request with a hostile serial is refused before anything is written', () => {
  for (const serial of ['', 'zz', '../../etc/passwd', 'a'.repeat(65), '0a/0b'])
    assert.throws(
      () => revokeCertificate({ stateDir: env.stateDir, serial }),
      (e: unknown) => (e as { code?: string }).code === 'bad_request',
      JSON.stringify(serial),
    );
});
