// The client side of DPoP (RFC 9449): a key pair and the proofs a client sends
// with it — ES256, typ dpop+jwt, the public JWK in the header, htm/htu/iat/jti,
// `ath` (the access token's hash) when a resource is called, and the server's
// nonce when it asked for one. Used by tools that call sender-constrained
// routes (the probe); verification lives in sender-constraint.ts.
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';

export interface DpopKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  /** RFC 7638 thumbprint: what cnf.jkt of a token bound to this key says */
  jkt: string;
}

export async function dpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

export interface ProofClaims {
  htm: string;
  /** the request's URL without query and fragment (RFC 9449 §4.2; `dpopHeaders` strips them), sent as given */
  htu: string;
  /** the access token the proof goes with (ath); absent at the token endpoint */
  token?: string;
  nonce?: string;
  /** seconds; default now */
  iat?: number;
  jti?: string;
  /** a header key other than the signing key's (a forgery, in tests) */
  jwk?: JWK;
}

export function dpopProof(key: DpopKey, c: ProofClaims): Promise<string> {
  const payload: Record<string, unknown> = { htm: c.htm, htu: c.htu, iat: c.iat ?? Math.floor(Date.now() / 1000), jti: c.jti ?? randomUUID() };
  if (c.token !== undefined) payload.ath = createHash('sha256').update(c.token).digest('base64url');
  if (c.nonce !== undefined) payload.nonce = c.nonce;
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: c.jwk ?? key.jwk }).sign(key.privateKey);
}

/** Headers presenting a DPoP-bound `token` for one request (a fresh proof each call). */
export async function dpopHeaders(key: DpopKey, token: string, method: string, url: string, nonce?: string): Promise<{ authorization: string; dpop: string }> {
  return { authorization: `DPoP ${token}`, dpop: await dpopProof(key, { htm: method, htu: htuOf(url), token, nonce }) };
}

/** A request URL as a proof's htu: without query and fragment. */
export function htuOf(url: string): string {
  const u = new URL(url);
  u.search = u.hash = '';
  return u.href;
}
