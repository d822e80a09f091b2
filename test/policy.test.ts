// Bundles: every refusal of verifyBundle, each with its registry code.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeCaDir, testTopology, TD, TOPOLOGY_YAML } from './support/pki-fixtures.ts';
import { GatehouseError } from '../src/shared/errors.ts';
import { gatewaySpiffeId, serviceSpiffeId } from '../src/pki/index.ts';
import {
  compileBundles,
  stampBundle,
  signBundle,
  signBytes,
  verifyBundle,
  openControlSigner,
  canonicalJson,
  type Bundle,
} from '../src/policy/index.ts';

const NOW = Date.now();
const ca = await makeCaDir();
const signer = await openControlSigner({ stateDir: ca.stateDir });
after(() => ca.cleanup());
const CHECKOUT = serviceSpiffeId(TD, 'public', 'checkout');

function bundleFor(audience: string, over: Partial<Bundle> = {}): Bundle {
  const c = compileBundles(ca.topology, { revokedSerials: ['ab12'], revokedTokenIds: ['t1'] }, { now: NOW }).find((b) => b.audience === audience)!;
  return { ...stampBundle(c, { trustDomain: TD, revision: 5, issuedAt: NOW, expiresAt: NOW + 3600_000 }), ...over };
}
const opts = { trustDomain: TD, audience: CHECKOUT, caBundle: signer.bundlePem, now: NOW, minRevision: 5 };

async function refusedWith(bytes: Uint8Array, code: string, o: Partial<typeof opts> = {}) {
  await assert.rejects(verifyBundle(bytes, { ...opts, ...o }), (e: unknown) => e instanceof GatehouseError && e.code === code, code);
}

test('a signed bundle verifies and carries only its own policy', async () => {
  const v = await verifyBundle(await signBundle(bundleFor(CHECKOUT), signer), opts);
  assert.equal(v.revision, 5);
  assert.equal(v.bundle.kind, 'service');
  assert.deepEqual(v.bundle.policy.egress, ['orders', 'payments']);
  assert.deepEqual(v.bundle.decisions.revokedSerials, ['ab12']);
  const gw = compileBundles(ca.topology, {}, { now: NOW }).find((b) => b.audience === gatewaySpiffeId(TD, 'private'))!;
  assert.equal(gw.kind, 'gateway');
  assert.equal(gw.policy.zone, 'private');
});

test('compiling is deterministic', async () => {
  const a = canonicalJson(compileBundles(testTopology(), { revokedSerials: ['2', '1'] }, { now: NOW }));
  const b = canonicalJson(compileBundles(testTopology(TOPOLOGY_YAML), { revokedSerials: ['1', '2', '1'] }, { now: NOW }));
  assert.equal(a, b);
});

test('signed by another key (another CA of the same trust domain): bundle_signer_untrusted', async () => {
  const other = await makeCaDir();
  try {
    const rogue = await openControlSigner({ stateDir: other.stateDir });
    await refusedWith(await signBundle(bundleFor(CHECKOUT), rogue), 'bundle_signer_untrusted');
  } finally {
    other.cleanup();
  }
});

test('a workload certificate of the trust domain cannot sign: bundle_signer_untrusted or malformed', async () => {
  // a real x5c of our CA but naming a service: refused before the signature is read
  const forged = { ...signer, x5c: [...signer.x5c].reverse() };
  await refusedWith(await signBundle(bundleFor(CHECKOUT), forged), 'bundle_signer_untrusted');
});

test('another trust domain: its control plane is untrusted, and our signature over its name is refused', async () => {
  const other = await makeCaDir(testTopology(TOPOLOGY_YAML.replace(`trustDomain: ${TD}`, 'trustDomain: other.local')));
  try {
    const theirs = await openControlSigner({ stateDir: other.stateDir });
    await refusedWith(await signBundle(bundleFor(CHECKOUT), theirs), 'bundle_signer_untrusted');
    await refusedWith(await signBundle(bundleFor(CHECKOUT), theirs), 'bundle_signer_untrusted', { caBundle: signer.bundlePem + theirs.bundlePem });
  } finally {
    other.cleanup();
  }
  await refusedWith(await signBundle(bundleFor(CHECKOUT, { trustDomain: 'other.local' }), signer), 'bundle_wrong_trust_domain');
});

test('another PEP: bundle_wrong_audience', async () => {
  await refusedWith(await signBundle(bundleFor(serviceSpiffeId(TD, 'private', 'orders')), signer), 'bundle_wrong_audience');
});

test('expired, or issued in the future: bundle_expired', async () => {
  await refusedWith(await signBundle(bundleFor(CHECKOUT), signer), 'bundle_expired', { now: NOW + 3600_000 });
  const future = bundleFor(CHECKOUT, { issuedAt: new Date(NOW + 600_000).toISOString() });
  await refusedWith(await signBundle(future, signer), 'bundle_expired');
});

test('a lower revision: bundle_rollback; the same revision is accepted', async () => {
  await refusedWith(await signBundle(bundleFor(CHECKOUT, { revision: 4 }), signer), 'bundle_rollback');
  await verifyBundle(await signBundle(bundleFor(CHECKOUT, { revision: 5 }), signer), opts);
});

test('truncated: refused', async () => {
  const good = await signBundle(bundleFor(CHECKOUT), signer);
  await refusedWith(good.subarray(0, good.length - 1), 'bundle_signature_invalid');
  await refusedWith(good.subarray(0, 40), 'bundle_malformed');
  await refusedWith(new Uint8Array(0), 'bundle_malformed');
});

test('bytes changed under a valid signature: bundle_signature_invalid', async () => {
  const good = await signBundle(bundleFor(CHECKOUT), signer);
  const nl = good.indexOf(0x0a);
  const head = good.subarray(0, nl + 1);
  const doc = JSON.parse(new TextDecoder().decode(good.subarray(nl + 1))) as Bundle;
  const variants = [
    JSON.stringify((({ revision, ...rest }) => ({ revision, ...rest }))(doc)), // keys reordered
    canonicalJson(doc).replace('{"audience"', '{ "audience"'),
    canonicalJson({ ...doc, revision: 6 }),
  ];
  for (const v of variants) await refusedWith(Buffer.concat([head, Buffer.from(v)]), 'bundle_signature_invalid');
});

test('a valid signature over non-canonical bytes (key order, whitespace, duplicate keys, unicode escapes): bundle_not_canonical', async () => {
  const doc = bundleFor(CHECKOUT);
  const c = canonicalJson(doc);
  const variants = [
    JSON.stringify((({ revision, ...rest }) => ({ revision, ...rest }))(doc)), // keys out of order
    JSON.stringify(JSON.parse(c), null, 1), // whitespace
    c.replace('{"audience":', `{"audience":${JSON.stringify(serviceSpiffeId(TD, 'private', 'orders'))},"audience":`), // duplicate key, first one differs
    c.replace('"service"', '"\\u0073ervice"'), // needless unicode escape
    c.replace('"revision":5', '"revision":5.0'),
  ];
  for (const v of variants) {
    assert.notEqual(v, c);
    await refusedWith(await signBytes(new TextEncoder().encode(v), signer), 'bundle_not_canonical');
  }
  // a byte order mark is not JSON at all
  await refusedWith(await signBytes(new TextEncoder().encode('\ufeff' + c), signer), 'bundle_malformed');
});

test('oversized: bundle_too_large before anything is parsed', async () => {
  await refusedWith(new Uint8Array(8 * 1024 * 1024 + 1), 'bundle_too_large');
  const good = await signBundle(bundleFor(CHECKOUT), signer);
  await refusedWith(good, 'bundle_too_large', { maxBytes: 100 } as never);
});
