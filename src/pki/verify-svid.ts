// Checks an X509-SVID presented by a peer, after OpenSSL has verified its chain
// to the pinned trust bundle: the leaf rules of the X509-SVID spec (not a CA,
// no certificate or CRL signing, exactly one URI SAN), a strictly parsed SPIFFE
// ID of our trust domain, issued by that zone's intermediate, within the
// lifetime policy, inside its validity window, and not revoked.
// Returns a decision; it never throws.
import { x509, normalizeSerial } from './lib/x509.ts';
import { parseSpiffeId, type WorkloadId } from './spiffe-id.ts';

export type SvidRejection =
  | 'unparseable'
  | 'not_a_leaf'
  | 'bad_key_usage'
  | 'wrong_purpose'
  | 'no_uri_san'
  | 'multiple_uri_sans'
  | 'bad_spiffe_id'
  | 'wrong_issuer'
  | 'lifetime_above_policy'
  | 'not_yet_valid'
  | 'expired'
  | 'revoked';

export type SvidDecision =
  | { ok: true; id: WorkloadId; serial: string; notBefore: Date; notAfter: Date }
  | { ok: false; reason: SvidRejection; detail?: string };

export interface VerifySvidOptions {
  trustDomain: string;
  /** Milliseconds since the epoch. */
  now: number;
  /** Longest lifetime accepted (default 24 h), plus 2 minutes for backdating. */
  maxLifetimeSeconds?: number;
  /** 'client' for a peer calling us, 'server' for a peer we call. */
  purpose: 'client' | 'server';
  isRevoked?: (serial: string) => boolean;
}

const SAN = '2.5.29.17';
const BC = '2.5.29.19';
const KU = '2.5.29.15';
const EKU = '2.5.29.37';
const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

export function verifySvid(der: Uint8Array, options: VerifySvidOptions): SvidDecision {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(der);
  } catch {
    return { ok: false, reason: 'unparseable' };
  }
  try {
    return check(cert, options);
  } catch {
    // an extension the parser refuses (otherName SAN, malformed DER) is not an SVID
    return { ok: false, reason: 'unparseable' };
  }
}

function check(cert: x509.X509Certificate, options: VerifySvidOptions): SvidDecision {
  const bcs = cert.extensions.filter((e) => e.type === BC);
  if (bcs.length !== 1 || new x509.BasicConstraintsExtension(bcs[0].rawData).ca)
    return { ok: false, reason: 'not_a_leaf' };
  const kus = cert.extensions.filter((e) => e.type === KU);
  if (kus.length !== 1) return { ok: false, reason: 'bad_key_usage' };
  const usages = new x509.KeyUsagesExtension(kus[0].rawData).usages;
  if (!(usages & x509.KeyUsageFlags.digitalSignature) || usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign))
    return { ok: false, reason: 'bad_key_usage' };
  const ekus = cert.extensions.filter((e) => e.type === EKU);
  if (ekus.length > 1) return { ok: false, reason: 'wrong_purpose' };
  if (ekus.length === 1) {
    const purposes = new x509.ExtendedKeyUsageExtension(ekus[0].rawData).usages.map(String);
    if (!purposes.includes(options.purpose === 'client' ? CLIENT_AUTH : SERVER_AUTH)) return { ok: false, reason: 'wrong_purpose' };
  }
  const sans = cert.extensions.filter((e) => e.type === SAN);
  if (sans.length > 1) return { ok: false, reason: 'multiple_uri_sans' };
  const uris = sans.length === 0 ? [] : new x509.SubjectAlternativeNameExtension(sans[0].rawData).names.items.filter((n) => n.type === 'url');
  if (uris.length === 0) return { ok: false, reason: 'no_uri_san' };
  if (uris.length > 1) return { ok: false, reason: 'multiple_uri_sans' };
  const id = parseSpiffeId(uris[0].value, options.trustDomain);
  if (!id) return { ok: false, reason: 'bad_spiffe_id', detail: uris[0].value.slice(0, 200) };

  // The leaf's issuer DN names the intermediate that signed it (OpenSSL chains
  // by name and signature), so this binds a zone's identities to its issuer.
  const ou = id.kind === 'ca' ? 'control' : `zone:${id.zone}`;
  const issuer = cert.issuerName.toJSON();
  const issuerOu = issuer.flatMap((rdn) => rdn.OU ?? []);
  const issuerO = issuer.flatMap((rdn) => rdn.O ?? []);
  if (issuerOu.length !== 1 || issuerOu[0] !== ou || issuerO.length !== 1 || issuerO[0] !== options.trustDomain)
    return { ok: false, reason: 'wrong_issuer' };

  const notBefore = cert.notBefore.getTime();
  const notAfter = cert.notAfter.getTime();
  const max = (options.maxLifetimeSeconds ?? 86400) * 1000 + 120_000;
  if (notAfter - notBefore > max) return { ok: false, reason: 'lifetime_above_policy' };
  if (options.now < notBefore) return { ok: false, reason: 'not_yet_valid' };
  if (options.now > notAfter) return { ok: false, reason: 'expired' };
  const serial = normalizeSerial(cert.serialNumber);
  if (serial === null || options.isRevoked?.(serial)) return { ok: false, reason: 'revoked' };
  return { ok: true, id, serial, notBefore: cert.notBefore, notAfter: cert.notAfter };
}
