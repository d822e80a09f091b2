// The PEP side: a signed bundle is applied only when every check passes, in
// this order: size, framing, signer certificate (chains to the trust bundle,
// names spiffe://<td>/control, valid now), Ed25519 signature over the exact
// payload bytes, canonical form, schema, trust domain, audience, lifetime,
// revision (never lower than the one enforced: rollback protection).
// A refusal throws a GatehouseError whose code is one of BundleRefusal.
import { X509Certificate, createHash } from 'node:crypto';
import { flattenedVerify } from 'jose';
import { GatehouseError, type ProblemCode } from '../shared/errors.ts';
import { controlSpiffeId } from '../pki/index.ts';
import { parseCanonical } from './lib/canonical.ts';
import { Bundle, BUNDLE_JWS_TYPE, MAX_BUNDLE_BYTES } from './lib/bundle.ts';

export type BundleRefusal = Extract<
  ProblemCode,
  | 'bundle_malformed'
  | 'bundle_too_large'
  | 'bundle_not_canonical'
  | 'bundle_signature_invalid'
  | 'bundle_signer_untrusted'
  | 'bundle_wrong_trust_domain'
  | 'bundle_wrong_audience'
  | 'bundle_expired'
  | 'bundle_rollback'
>;

export interface VerifyBundleOptions {
  trustDomain: string;
  /** The PEP's own SPIFFE ID. */
  audience: string;
  /** PEM root certificate(s) of the trust domain. */
  caBundle: string;
  /** Milliseconds since the epoch. */
  now: number;
  /** The revision the PEP enforces; lower is refused (equal is a re-signed copy and accepted). Absent: 0. */
  minRevision?: number;
  /** Absent: MAX_BUNDLE_BYTES. */
  maxBytes?: number;
}

export interface VerifiedBundle {
  bundle: Bundle;
  revision: number;
  /** sha256 of the signed bytes, hex: the ETag the control plane serves. */
  digest: string;
  bytes: Uint8Array;
}

/** Clock skew tolerated on issuedAt. */
const SKEW_MS = 60_000;

const refuse = (code: BundleRefusal, detail: string, cause?: unknown): never => {
  throw new GatehouseError(code, detail, cause === undefined ? {} : { cause });
};

export async function verifyBundle(input: Uint8Array, options: VerifyBundleOptions): Promise<VerifiedBundle> {
  const bytes = input instanceof Uint8Array ? input : refuse('bundle_malformed', 'a bundle is bytes');
  if (bytes.length > (options.maxBytes ?? MAX_BUNDLE_BYTES)) refuse('bundle_too_large', `the bundle is ${bytes.length} bytes`);
  const nl = bytes.indexOf(0x0a);
  if (nl < 0 || nl > 65536) refuse('bundle_malformed', 'no signature line');
  const line = Buffer.from(bytes.subarray(0, nl)).toString('latin1');
  const m = /^([A-Za-z0-9_-]+)\.\.([A-Za-z0-9_-]+)$/.exec(line);
  if (!m) refuse('bundle_malformed', 'the signature line is not a detached compact JWS');
  const [, protectedB64, signature] = m!;
  const payload = bytes.subarray(nl + 1);

  let header: { alg?: unknown; typ?: unknown; x5c?: unknown; crit?: unknown };
  try {
    header = JSON.parse(Buffer.from(protectedB64, 'base64url').toString('utf8'));
  } catch (error) {
    return refuse('bundle_malformed', 'the JWS header is not JSON', error);
  }
  if (header === null || typeof header !== 'object' || header.alg !== 'EdDSA' || header.typ !== BUNDLE_JWS_TYPE || header.crit !== undefined)
    refuse('bundle_malformed', 'the JWS header must be alg EdDSA, typ gatehouse-bundle+jws');
  const leaf = checkSigner(header.x5c, options);

  try {
    await flattenedVerify({ protected: protectedB64, payload: Buffer.from(payload).toString('base64url'), signature }, leaf.publicKey, { algorithms: ['EdDSA'] });
  } catch (error) {
    refuse('bundle_signature_invalid', 'the signature does not match the bundle bytes', error);
  }

  const parsed = parseCanonical(payload);
  if (!parsed.ok)
    refuse(parsed.reason === 'not_canonical' ? 'bundle_not_canonical' : 'bundle_malformed', `the payload is not canonical JSON (${parsed.reason})`);
  const checked = Bundle.safeParse((parsed as { value: unknown }).value);
  if (!checked.success) return refuse('bundle_malformed', 'the payload is not a bundle document', checked.error);
  const bundle = checked.data;
  if (bundle.trustDomain !== options.trustDomain) refuse('bundle_wrong_trust_domain', `the bundle is for trust domain ${bundle.trustDomain}`);
  if (bundle.audience !== options.audience) refuse('bundle_wrong_audience', `the bundle is for ${bundle.audience}`);
  if (Date.parse(bundle.expiresAt) <= options.now) refuse('bundle_expired', `the bundle expired at ${bundle.expiresAt}`);
  if (Date.parse(bundle.issuedAt) > options.now + SKEW_MS) refuse('bundle_expired', `the bundle is issued in the future (${bundle.issuedAt})`);
  if (bundle.revision < (options.minRevision ?? 0))
    refuse('bundle_rollback', `revision ${bundle.revision} is lower than the enforced ${options.minRevision}`);
  return { bundle, revision: bundle.revision, digest: createHash('sha256').update(bytes).digest('hex'), bytes };
}

/** The signing certificate: x5c[0], issued by x5c[1] (a CA), issued by a root of caBundle; named spiffe://<td>/control; valid now. */
function checkSigner(x5c: unknown, options: VerifyBundleOptions): X509Certificate {
  if (!Array.isArray(x5c) || x5c.length !== 2 || !x5c.every((c) => typeof c === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(c)))
    return refuse('bundle_malformed', 'x5c must hold the signing certificate and its issuer');
  let leaf: X509Certificate;
  let issuer: X509Certificate;
  let roots: X509Certificate[];
  try {
    leaf = new X509Certificate(Buffer.from(x5c[0] as string, 'base64'));
    issuer = new X509Certificate(Buffer.from(x5c[1] as string, 'base64'));
    roots = splitPem(options.caBundle).map((p) => new X509Certificate(p));
  } catch (error) {
    return refuse('bundle_malformed', 'x5c holds an unreadable certificate', error);
  }
  const now = options.now;
  const valid = (c: X509Certificate) => Date.parse(c.validFrom) <= now && now <= Date.parse(c.validTo);
  const root = roots.find((r) => r.ca && issuer.checkIssued(r) && issuer.verify(r.publicKey));
  if (!root || !issuer.ca || !valid(root) || !valid(issuer)) refuse('bundle_signer_untrusted', 'the signing certificate does not chain to the trust bundle');
  if (leaf.ca || !leaf.checkIssued(issuer) || !leaf.verify(issuer.publicKey)) refuse('bundle_signer_untrusted', 'the signing certificate is not issued by its x5c issuer');
  if (!valid(leaf)) refuse('bundle_signer_untrusted', 'the signing certificate is outside its validity');
  if (leaf.subjectAltName !== `URI:${controlSpiffeId(options.trustDomain)}`)
    refuse('bundle_signer_untrusted', `the signing certificate does not name ${controlSpiffeId(options.trustDomain)}`);
  const issuerDn = issuer.subject.split('\n');
  if (!issuerDn.includes('OU=control') || !issuerDn.includes(`O=${options.trustDomain}`))
    refuse('bundle_signer_untrusted', 'the signing certificate is not issued by the control issuer');
  if (leaf.publicKey.asymmetricKeyType !== 'ed25519') refuse('bundle_signer_untrusted', 'the signing key is not Ed25519');
  return leaf;
}

function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
