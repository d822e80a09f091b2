// Verification of JWT access tokens (RFC 9068) against the issuers a zone
// trusts. The algorithm comes from the key, never the token header; `typ` must
// be at+jwt; unknown `crit` is refused; keys named inside the token (jku, x5u,
// jwk, x5c) are never used. Verified tokens are cached until they expire.
import { jwtVerify, decodeProtectedHeader, decodeJwt, errors as joseErrors } from 'jose';
import type { Clock } from '../../../shared/clock.ts';
import type { Identity } from '../policy.ts';
import type { JwksCache } from './jwks.ts';

export interface TrustedIssuer {
  issuer: string;
  audiences: readonly string[];
  jwks: JwksCache;
}

export class TokenRejected extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(reason);
    this.reason = reason;
  }
}

const bindings = new WeakMap<Identity, Record<string, unknown>>();

/** The `cnf` claim (RFC 7800) of the token an identity was verified from, kept with it in the cache; undefined: a bearer token. */
export function tokenBinding(identity: Identity): Record<string, unknown> | undefined {
  return bindings.get(identity);
}

export interface TokenVerifier {
  /** The caller of a valid token; synchronous on a cache hit. Rejects/throws TokenRejected. */
  verify(token: string): Identity | Promise<Identity>;
  /** Forget a token id (revocation); cached entries with it stop verifying. */
  revoke(jti: string, expSeconds: number): void;
  size(): number;
}

export function createTokenVerifier(o: {
  issuers: readonly TrustedIssuer[];
  leewaySeconds: number;
  maxTokenBytes: number;
  cacheSize: number;
  clock: Clock;
  /** Token ids revoked by the control plane's bundle (decisions.revokedTokenIds); absent: none. */
  revokedIds?: { has(jti: string): boolean };
}): TokenVerifier {
  const byIssuer = new Map(o.issuers.map((i) => [i.issuer, i]));
  // keyed by the token's last characters (its signature's): a string that arrived with this request
  // has its hash computed over its whole length, so a short key finds the entry for less; a hit
  // is used only when the whole token is the one that was verified
  const cache = new Map<string, { token: string; identity: Identity; expiresAt: number }>();
  const fed = new Map<string, number>();
  const decided = o.revokedIds;
  const revoked = { has: (jti: string) => fed.has(jti) || (decided !== undefined && decided.has(jti)) };

  const check = async (token: string): Promise<Identity> => {
    if (token.length > o.maxTokenBytes) throw new TokenRejected('the token is too large');
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) throw new TokenRejected('not a signed JWT');
    let header: ReturnType<typeof decodeProtectedHeader>;
    let claims: ReturnType<typeof decodeJwt>;
    try {
      header = decodeProtectedHeader(token);
      claims = decodeJwt(token);
    } catch {
      throw new TokenRejected('malformed token');
    }
    if (typeof header.typ !== 'string' || !/^(application\/)?at\+jwt$/i.test(header.typ)) throw new TokenRejected('not an access token (typ)');
    if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 128) throw new TokenRejected('no usable kid');
    const issuer = typeof claims.iss === 'string' ? byIssuer.get(claims.iss) : undefined;
    if (!issuer) throw new TokenRejected('untrusted issuer');
    const key = await issuer.jwks.get(header.kid);
    if (!key) throw new TokenRejected('unknown signing key');
    if (header.alg !== key.alg) throw new TokenRejected('algorithm does not match the key');
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key.key, {
        issuer: issuer.issuer,
        audience: [...issuer.audiences],
        algorithms: [key.alg],
        typ: header.typ,
        clockTolerance: o.leewaySeconds,
        requiredClaims: ['exp', 'iat', 'sub'],
        currentDate: new Date(o.clock.now()),
      }));
    } catch (error) {
      if (error instanceof joseErrors.JWTExpired) throw new TokenRejected('the token expired');
      if (error instanceof joseErrors.JWTClaimValidationFailed) throw new TokenRejected(`claim ${error.claim} is not acceptable`);
      throw new TokenRejected('signature or token format invalid');
    }
    const nowSec = o.clock.now() / 1000;
    if (typeof payload.iat !== 'number' || payload.iat > nowSec + o.leewaySeconds) throw new TokenRejected('issued in the future');
    if (typeof payload.exp !== 'number') throw new TokenRejected('no numeric exp');
    const jti = typeof payload.jti === 'string' ? payload.jti : undefined;
    if (jti !== undefined && revoked.has(jti)) throw new TokenRejected('the token was revoked');
    const clientId = typeof payload.client_id === 'string' ? payload.client_id : undefined;
    const sub = String(payload.sub);
    const identity: Identity = {
      kind: clientId !== undefined && clientId === sub ? 'client' : 'user',
      sub,
      clientId,
      issuer: issuer.issuer,
      scopes: new Set(typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : []),
      roles: new Set(Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string') : []),
      acr: typeof payload.acr === 'string' ? payload.acr : undefined,
      amr: Array.isArray(payload.amr) ? payload.amr.filter((r): r is string => typeof r === 'string') : [],
      jti,
      exp: payload.exp,
      token,
      act: payload.act !== null && typeof payload.act === 'object' && !Array.isArray(payload.act) ? (payload.act as Record<string, unknown>) : undefined,
    };
    if (payload.cnf !== undefined) bindings.set(identity, { cnf: payload.cnf });
    return identity;
  };

  return {
    verify(token) {
      const now = o.clock.now();
      const key = o.cacheSize > 0 ? cacheKey(token) : undefined;
      const hit = key !== undefined ? cache.get(key) : undefined;
      if (hit !== undefined && hit.token === token) {
        if (hit.expiresAt > now && (hit.identity.jti === undefined || !revoked.has(hit.identity.jti))) return hit.identity;
        cache.delete(key!);
      }
      return check(token).then((identity) => {
        if (key !== undefined) {
          if (cache.size >= o.cacheSize && !cache.has(key)) cache.delete(cache.keys().next().value as string); // oldest first
          cache.set(key, { token, identity, expiresAt: Math.min(identity.exp! * 1000 + o.leewaySeconds * 1000, now + 300_000) });
        }
        return identity;
      });
    },
    revoke(jti, expSeconds) {
      fed.set(jti, expSeconds);
      // forget revocations of tokens that expired anyway
      if (fed.size > 100_000) for (const [j, e] of fed) if (e * 1000 < o.clock.now()) fed.delete(j);
    },
    size: () => cache.size,
  };
}

const CACHE_KEY_CHARS = 32;
const cacheKey = (token: string): string => (token.length > CACHE_KEY_CHARS ? token.slice(-CACHE_KEY_CHARS) : token);
