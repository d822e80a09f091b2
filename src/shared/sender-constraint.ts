// Sender-constrained access tokens, checked where a token is presented
// (authority userinfo, gateway, mesh service): RFC 9449 DPoP (`cnf.jkt`: the
// request carries `Authorization: DPoP <token>` and a `DPoP` proof signed by
// that key, for this method and URL, with `ath` = hash of the token, fresh,
// used once, with the server's nonce when it asks for one) and RFC 8705
// certificate binding (`cnf.x5t#S256`: the TLS client certificate of this
// connection has that SHA-256 thumbprint). A token without `cnf` is a bearer
// token; whether a bearer token is acceptable is the caller's decision.
import { createHash, createHmac, timingSafeEqual, X509Certificate } from 'node:crypto';
import { calculateJwkThumbprint, decodeProtectedHeader, importJWK, jwtVerify, type CryptoKey, type JWK, type KeyObject } from 'jose';

/** the proof algorithms accepted (asymmetric only; RFC 9449 §4.3 forbids MAC algorithms) */
export const DPOP_ALGORITHMS = ['EdDSA', 'Ed25519', 'ES256', 'ES384', 'PS256', 'RS256'];
/** how old (or how far in the future) a proof's `iat` may be without a nonce */
export const DPOP_MAX_AGE_S = 60;
const MAX_PROOF_BYTES = 4096;
const MAX_CACHED_KEYS = 10_000;
const importedKeys = new Map<string, CryptoKey | KeyObject | Uint8Array>();

/** Why a presented token or proof was refused: `challenge` names the scheme to answer with, `useNonce` a fresh nonce to send. */
export class SenderConstraintRejected extends Error {
  readonly challenge: 'Bearer' | 'DPoP';
  readonly error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce' | 'invalid_request';
  readonly nonce: string | undefined;
  constructor(challenge: 'Bearer' | 'DPoP', error: SenderConstraintRejected['error'], reason: string, nonce?: string) {
    super(reason);
    this.name = 'SenderConstraintRejected';
    this.challenge = challenge;
    this.error = error;
    this.nonce = nonce;
  }
}

/** The `Authorization` header split into its scheme and token (`DPoP` or `Bearer`), or undefined. */
export function presentedToken(header: string | string[] | undefined): { scheme: 'Bearer' | 'DPoP'; token: string } | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  if (!m) return undefined;
  return { scheme: m[1].toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer', token: m[2] };
}

/** RFC 8705 §3.1: base64url SHA-256 of the DER certificate. */
export function certificateThumbprint(der: Buffer | Uint8Array | X509Certificate): string {
  const raw = der instanceof X509Certificate ? der.raw : der;
  return createHash('sha256').update(raw).digest('base64url');
}

/** jti → expiry (ms): a proof is accepted once. In memory, bounded; a cluster shares nothing here (see the note in replayCache). */
export interface ReplayCache {
  /** true the first time `key` is seen before `expiresAt`, false after */
  unique(key: string, expiresAt: number): boolean | Promise<boolean>;
}

export function memoryReplayCache(now: () => number, max = 100_000): ReplayCache {
  const seen = new Map<string, number>();
  return {
    unique(key, expiresAt) {
      const t = now();
      const old = seen.get(key);
      if (old !== undefined && old > t) return false;
      if (seen.size >= max) for (const [k, e] of seen) if (e <= t || seen.size >= max) seen.delete(k);
      seen.set(key, expiresAt);
      return true;
    },
  };
}

/**
 * Stateless DPoP nonces (RFC 9449 §8, §9): an HMAC of the current time step.
 * A nonce of this step or the previous one is accepted, so a nonce lives
 * between `stepSeconds` and twice that.
 */
export interface DpopNonces {
  current(): string;
  valid(nonce: string): boolean;
}

export function dpopNonces(secret: Buffer, now: () => number, stepSeconds = 60): DpopNonces {
  const at = (step: number) => {
    const s = Buffer.alloc(8);
    s.writeBigUInt64BE(BigInt(step));
    return `${s.toString('base64url')}.${createHmac('sha256', secret).update(s).digest('base64url').slice(0, 32)}`;
  };
  const step = () => Math.floor(now() / 1000 / stepSeconds);
  return {
    current: () => at(step()),
    valid(nonce) {
      if (typeof nonce !== 'string' || nonce.length > 64) return false;
      const s = step();
      for (const candidate of [at(s), at(s - 1)]) {
        const a = Buffer.from(candidate);
        const b = Buffer.from(nonce);
        if (a.length === b.length && timingSafeEqual(a, b)) return true;
      }
      return false;
    },
  };
}

export interface ProofCheck {
  /** the `DPoP` header(s) of the request */
  proof: string | string[] | undefined;
  method: string;
  /** the URL the request was made to, without query and fragment (RFC 9449 §4.3 htu) */
  url: string;
  /** the access token the proof must be bound to (ath) */
  accessToken: string;
  now: () => number;
  replay: ReplayCache;
  /** when set, proofs must carry one of its nonces */
  nonces?: DpopNonces;
}

/** Verifies a DPoP proof for a resource request; returns the JWK thumbprint of its key. */
export async function verifyDpopProof(c: ProofCheck): Promise<string> {
  const fail = (reason: string, error: SenderConstraintRejected['error'] = 'invalid_dpop_proof') =>
    new SenderConstraintRejected('DPoP', error, reason, error === 'use_dpop_nonce' ? c.nonces?.current() : undefined);
  if (Array.isArray(c.proof)) throw fail('more than one DPoP proof');
  if (typeof c.proof !== 'string' || c.proof.length === 0) throw fail('a DPoP-bound token needs a DPoP proof', 'invalid_token');
  if (c.proof.length > MAX_PROOF_BYTES || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(c.proof)) throw fail('the DPoP proof is malformed');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(c.proof);
  } catch {
    throw fail('the DPoP proof is malformed');
  }
  const jwk = header.jwk as JWK | undefined;
  if (!jwk || typeof jwk !== 'object' || 'd' in jwk || 'k' in jwk) throw fail('the DPoP proof carries no usable public key');
  if (typeof header.alg !== 'string' || !DPOP_ALGORITHMS.includes(header.alg)) throw fail('the DPoP proof algorithm is not accepted');
  let payload: Record<string, unknown>;
  let jkt: string;
  try {
    // the imported key is kept by its thumbprint (RFC 7638: over the required members only):
    // importing the embedded JWK is most of a proof's cost, and a client signs many proofs with one key
    jkt = await calculateJwkThumbprint(jwk, 'sha256');
    const cacheKey = `${header.alg}:${jkt}`;
    let key = importedKeys.get(cacheKey);
    if (!key) {
      key = await importJWK(jwk, header.alg);
      if (importedKeys.size >= MAX_CACHED_KEYS) importedKeys.delete(importedKeys.keys().next().value as string);
      importedKeys.set(cacheKey, key);
    }
    ({ payload } = await jwtVerify(c.proof, key, { typ: 'dpop+jwt', algorithms: DPOP_ALGORITHMS, currentDate: new Date(c.now()) }));
  } catch {
    throw fail('the DPoP proof signature or type is not valid');
  }
  if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 128) throw fail('the DPoP proof has no jti');
  if (payload.htm !== c.method) throw fail('the DPoP proof is for another method (htm)');
  let htu: URL | null = null;
  try {
    htu = typeof payload.htu === 'string' ? new URL(payload.htu) : null;
  } catch {
    htu = null;
  }
  if (htu) htu.search = htu.hash = '';
  const expected = new URL(c.url);
  expected.search = expected.hash = '';
  if (!htu || htu.href !== expected.href) throw fail('the DPoP proof is for another URL (htu)');
  if (payload.ath !== createHash('sha256').update(c.accessToken).digest('base64url')) throw fail('the DPoP proof is for another token (ath)');
  const nowS = c.now() / 1000;
  if (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat)) throw fail('the DPoP proof has no iat');
  if (payload.iat > nowS + 5) throw fail('the DPoP proof is issued in the future (iat)');
  if (c.nonces) {
    if (typeof payload.nonce !== 'string') throw fail('a DPoP nonce is required', 'use_dpop_nonce');
    if (!c.nonces.valid(payload.nonce)) throw fail('the DPoP nonce is stale or unknown', 'use_dpop_nonce');
  }
  if (nowS - payload.iat > DPOP_MAX_AGE_S) throw fail('the DPoP proof is too old (iat)');
  // a replay is refused for as long as the proof would be accepted
  if (!(await c.replay.unique(`${jkt}:${payload.jti}`, (payload.iat + DPOP_MAX_AGE_S + 5) * 1000))) throw fail('the DPoP proof was already used');
  return jkt;
}

export interface PresentedBinding {
  scheme: 'Bearer' | 'DPoP';
  token: string;
  claims: Record<string, unknown>;
  /** DER of the TLS client certificate of this connection (any chain check is the listener's) */
  peerCertificate?: Buffer | Uint8Array;
  dpop?: Omit<ProofCheck, 'accessToken'>;
  /** refuse tokens without `cnf` (a route or zone that requires sender-constrained tokens) */
  requireBound?: boolean;
}

/** The binding kind of a token's claims: 'dpop', 'mtls', or undefined (a bearer token). */
export function bindingOf(claims: Record<string, unknown>): { kind: 'dpop'; jkt: string } | { kind: 'mtls'; x5t: string } | undefined {
  const cnf = claims.cnf as Record<string, unknown> | undefined;
  if (!cnf || typeof cnf !== 'object') return undefined;
  if (typeof cnf.jkt === 'string') return { kind: 'dpop', jkt: cnf.jkt };
  if (typeof cnf['x5t#S256'] === 'string') return { kind: 'mtls', x5t: cnf['x5t#S256'] };
  return undefined;
}

/** Checks that the sender holds what the token is bound to; throws SenderConstraintRejected. */
export async function checkSenderConstraint(p: PresentedBinding): Promise<void> {
  const binding = bindingOf(p.claims);
  const cnf = p.claims.cnf as Record<string, unknown> | undefined;
  if (cnf !== undefined && binding === undefined) throw new SenderConstraintRejected('Bearer', 'invalid_token', 'the token is bound to something this server cannot check');
  if (!binding) {
    if (p.scheme === 'DPoP') throw new SenderConstraintRejected('DPoP', 'invalid_token', 'the token is not DPoP-bound but was presented as one');
    if (p.requireBound) throw new SenderConstraintRejected('Bearer', 'invalid_token', 'this resource needs a sender-constrained token (DPoP or a certificate-bound token)');
    return;
  }
  if (binding.kind === 'mtls') {
    if (p.scheme !== 'Bearer') throw new SenderConstraintRejected('Bearer', 'invalid_token', 'a certificate-bound token is presented with the Bearer scheme');
    if (!p.peerCertificate) throw new SenderConstraintRejected('Bearer', 'invalid_token', 'the token is bound to a client certificate and none was presented');
    const a = Buffer.from(certificateThumbprint(p.peerCertificate));
    const b = Buffer.from(binding.x5t);
    if (a.length !== b.length || !timingSafeEqual(a, b)) throw new SenderConstraintRejected('Bearer', 'invalid_token', 'the token is bound to another client certificate');
    return;
  }
  if (p.scheme !== 'DPoP') throw new SenderConstraintRejected('DPoP', 'invalid_token', 'a DPoP-bound token must be presented with the DPoP scheme');
  if (!p.dpop) throw new SenderConstraintRejected('DPoP', 'invalid_token', 'DPoP proofs are not checked here');
  const jkt = await verifyDpopProof({ ...p.dpop, accessToken: p.token });
  if (jkt !== binding.jkt) throw new SenderConstraintRejected('DPoP', 'invalid_dpop_proof', 'the DPoP proof is signed by another key');
}

/** The WWW-Authenticate value for a refusal (RFC 6750 §3, RFC 9449 §7.1). */
export function senderChallenge(realm: string, e: SenderConstraintRejected, dpopAlgs = DPOP_ALGORITHMS): string {
  const description = e.message.replace(/["\\]/g, '');
  if (e.challenge === 'DPoP') return `DPoP realm="${realm}", error="${e.error}", error_description="${description}", algs="${dpopAlgs.join(' ')}"`;
  return `Bearer realm="${realm}", error="${e.error}", error_description="${description}"`;
}
