// Signs a bundle: canonical bytes, a detached Ed25519 JWS over them, one file.
import { FlattenedSign } from 'jose';
import type { KeyObject } from 'node:crypto';
import { canonicalBytes } from './lib/canonical.ts';
import { BUNDLE_JWS_TYPE, type Bundle } from './lib/bundle.ts';

export interface BundleSigner {
  /** The Ed25519 private key certified as spiffe://<td>/control. */
  key: KeyObject;
  /** DER (standard base64) of the signing certificate, then its issuer: the JWS x5c. */
  x5c: string[];
}

/** The signed file for `bundle`. */
export async function signBundle(bundle: Bundle, signer: BundleSigner): Promise<Uint8Array> {
  return signBytes(canonicalBytes(bundle), signer);
}

/** Signs `payload` as given (tests use it to sign non-canonical bytes with the real key). */
export async function signBytes(payload: Uint8Array, signer: BundleSigner): Promise<Uint8Array> {
  const jws = await new FlattenedSign(payload)
    .setProtectedHeader({ alg: 'EdDSA', typ: BUNDLE_JWS_TYPE, x5c: signer.x5c })
    .sign(signer.key);
  const head = new TextEncoder().encode(`${jws.protected}..${jws.signature}\n`);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head, 0);
  out.set(payload, head.length);
  return out;
}
