import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeCaDir, realIssuer, forge, uri, dns, TD, x509, type ForgeIssuer } from '../../test/support/pki-fixtures.ts';
import { verifySvid, type SvidRejection } from './verify-svid.ts';
import { issueWorkloadIdentity } from './issue-workload-identity.ts';

const ORDERS = `spiffe://${TD}/zone/private/svc/orders`;
let env: Awaited<ReturnType<typeof makeCaDir>>;
let priv: ForgeIssuer;
let pub: ForgeIssuer;

before(async () => {
  env = await makeCaDir();
  priv = await realIssuer(env.stateDir, 'private');
  pub = await realIssuer(env.stateDir, 'public');
});
after(() => env.cleanup());

const der = (pem: string) => new Uint8Array(x509.PemConverter.decodeFirst(pem));
const check = (pem: string, extra: { now?: number; revoked?: string[] } = {}) =>
  verifySvid(der(pem), {
    trustDomain: TD,
    now: extra.now ?? Date.now(),
    purpose: 'client',
    isRevoked: (s) => (extra.revoked ?? []).includes(s),
  });

function rejected(pem: string, reason: SvidRejection, extra?: { now?: number; revoked?: string[] }) {
  const d = check(pem, extra);
  assert.equal(d.ok, false, `expected ${reason}`);
  if (!d.ok) assert.equal(d.reason, reason);
}

test('accepts what the CA issues and names the workload', async () => {
  const id = await issueWorkloadIdentity(env.stateDir, ORDERS);
  const d = check(id.certPem);
  assert.ok(d.ok);
  if (d.ok) {
    assert.equal(d.id.uri, ORDERS);
    assert.equal(d.serial, id.serial);
  }
  rejected(id.certPem, 'revoked', { revoked: [id.serial] });
  rejected(id.certPem, 'expired', { now: id.notAfter.getTime() + 1000 });
  rejected(id.certPem, 'not_yet_valid', { now: id.notBefore.getTime() - 1000 });
});

test('refuses leaves that break the X509-SVID rules, even from the real issuer', async () => {
  rejected((await forge({ issuer: priv, sans: [uri(ORDERS), uri(`spiffe://${TD}/zone/private/svc/payments`)] })).leafPem, 'multiple_uri_sans');
  rejected((await forge({ issuer: priv, sans: [dns(ORDERS)] })).leafPem, 'no_uri_san');
  rejected((await forge({ issuer: priv, sans: [], subjectCn: ORDERS })).leafPem, 'no_uri_san');
  rejected((await forge({ issuer: priv, sans: [uri(ORDERS)], ca: true })).leafPem, 'not_a_leaf');
  rejected((await forge({ issuer: priv, sans: [uri(ORDERS)], ca: null })).leafPem, 'not_a_leaf');
  rejected(
    (await forge({ issuer: priv, sans: [uri(ORDERS)], keyUsage: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign })).leafPem,
    'bad_key_usage',
  );
  rejected((await forge({ issuer: priv, sans: [uri(ORDERS)], notAfter: new Date(Date.now() + 30 * 86400_000) })).leafPem, 'lifetime_above_policy');
  for (const look of [
    `spiffe://${TD}/zone/private/svc/orders/`,
    `spiffe://${TD}/zone/private/svc/ORDERS`,
    `spiffe://${TD}/zone/private/svc/%6frders`,
    `spiffe://${TD}/zone/private/svc/../svc/orders`,
    `spiffe://other.local/zone/private/svc/orders`,
  ])
    rejected((await forge({ issuer: priv, sans: [uri(look)] })).leafPem, 'bad_spiffe_id');
  // The private zone's identity signed by the public zone's issuer.
  rejected((await forge({ issuer: pub, sans: [uri(ORDERS)] })).leafPem, 'wrong_issuer');
  rejected('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', 'unparseable');
});
