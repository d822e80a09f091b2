// Identity propagation: the upstream never parses the client's credentials.
// The gateway signs a short-lived JWT (Ed25519) naming the caller for exactly
// one upstream service, sent in the one header clients can never set (the
// gateway strips every x-gatehouse-* header they send). Its public key is
// published in the state dir and on the admin listener.
import { generateKeyPair, exportJWK, importJWK, SignJWT, type JWK, type CryptoKey, type KeyObject } from 'jose';
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync, linkSync, unlinkSync } from 'node:fs';
import { randomUUID, createHash } from 'node:crypto';
import path from 'node:path';
import type { Clock } from '../../../shared/clock.ts';
import type { Identity } from '../policy.ts';

export { IDENTITY_HEADER, identityKeyPaths } from './identity-paths.ts';
import { identityKeyPaths } from './identity-paths.ts';

export interface IdentitySigner {
  issuer: string;
  jwks: { keys: JWK[] };
  /** A token for `audience` (the service's SPIFFE ID), reused until half its lifetime has passed. */
  sign(identity: Identity, audience: string): string | Promise<string>;
}

export async function openIdentitySigner(o: {
  stateDir: string;
  zone: string;
  trustDomain: string;
  ttlSeconds: number;
  clock: Clock;
}): Promise<IdentitySigner> {
  const paths = identityKeyPaths(o.stateDir, o.zone);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  if (!existsSync(paths.key)) {
    const { privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const jwk = await exportJWK(privateKey);
    jwk.kid = createHash('sha256').update(jwk.x ?? '').digest('base64url').slice(0, 16);
    jwk.alg = 'EdDSA';
    jwk.use = 'sig';
    const tmp = `${paths.key}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(jwk), { mode: 0o600 });
    try {
      linkSync(tmp, paths.key); // several workers: exactly one key wins
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(tmp);
    }
  }
  const privateJwk = JSON.parse(readFileSync(paths.key, 'utf8')) as JWK;
  const key = (await importJWK(privateJwk, 'EdDSA')) as CryptoKey | KeyObject;
  const { d: _private, ...publicJwk } = privateJwk;
  void _private;
  const jwks = { keys: [publicJwk] };
  const tmp = `${paths.jwks}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(jwks, null, 2) + '\n', { mode: 0o644 });
  renameSync(tmp, paths.jwks);

  const issuer = `spiffe://${o.trustDomain}/zone/${o.zone}/gateway`;
  type Minted = { token: string; refreshAt: number };
  // by everything the token says (its claims, the credential's expiry and the audience): two callers share
  // a token only when it would say the same of both — never by subject and jti alone, which another
  // trusted issuer or an API key can repeat. And, for the identity objects the token verifier's cache
  // hands out again for the same token, by that object and audience: no key to build on every request
  const cache = new Map<string, Minted>();
  const byIdentity = new WeakMap<Identity, Map<string, Minted>>();
  const remember = (identity: Identity, audience: string, minted: Minted) => {
    // only a token's identity is handed out again (an API key's is made per request: nothing to remember it by)
    if (identity.token === undefined) return;
    let mine = byIdentity.get(identity);
    if (mine === undefined) byIdentity.set(identity, (mine = new Map()));
    mine.set(audience, minted);
  };
  return {
    issuer,
    jwks,
    sign(identity, audience) {
      const now = o.clock.now();
      const mine = byIdentity.get(identity)?.get(audience);
      if (mine !== undefined && mine.refreshAt > now) return mine.token;
      const claims = identityClaims(identity);
      const cacheKey = `${JSON.stringify(claims)}|${identity.exp ?? ''}|${audience}`;
      const hit = cache.get(cacheKey);
      if (hit && hit.refreshAt > now) {
        remember(identity, audience, hit);
        return hit.token;
      }
      return mint(identity, claims, audience, now, cacheKey);
    },
  };

  async function mint(identity: Identity, claims: Record<string, unknown>, audience: string, now: number, cacheKey: string): Promise<string> {
    const iat = Math.floor(now / 1000);
    const exp = Math.min(iat + o.ttlSeconds, identity.exp ?? Infinity);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'EdDSA', kid: publicJwk.kid, typ: 'gatehouse-id+jwt' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(randomUUID())
      .sign(key);
    if (cache.size >= 10_000) cache.delete(cache.keys().next().value as string);
    const minted = { token, refreshAt: now + ((exp - iat) * 1000) / 2 };
    cache.set(cacheKey, minted);
    remember(identity, audience, minted);
    return token;
  }
}

/** What an identity token says of its caller (besides iss, aud, iat, exp and its own jti). */
function identityClaims(identity: Identity): Record<string, unknown> {
  return {
    sub: identity.sub,
    scope: [...identity.scopes].join(' '),
    amr: identity.amr.length > 0 ? identity.amr : undefined,
    acr: identity.acr,
    client_id: identity.clientId,
    consumer: identity.consumer,
    roles: identity.roles.size > 0 ? [...identity.roles] : undefined,
    orig_jti: identity.jti,
    orig_iss: identity.issuer,
    act: identity.act,
    kind: identity.kind,
  };
}
