import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, SignJWT } from 'jose';
import { frozenClock } from '../../../shared/clock.ts';
import { createTokenVerifier, TokenRejected } from './verify-token.ts';
import type { JwksCache } from './jwks.ts';

const ISSUER = 'https://issuer.test';

async function setup() {
  const clock = frozenClock(Date.UTC(2026, 10, 27, 12));
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  let lookups = 0;
  const jwks: JwksCache = {
    get: async (kid) => {
      lookups++;
      return kid === 'k1' ? { kid: 'k1', alg: 'EdDSA', key: publicKey } : undefined;
    },
    refresh: async () => {},
    fetches: () => 0,
    close: () => {},
  };
  const verifier = createTokenVerifier({ issuers: [{ issuer: ISSUER, audiences: ['urn:api'], jwks }], leewaySeconds: 0, maxTokenBytes: 8192, cacheSize: 100, clock });
  const sign = (sub: string, extra: Record<string, unknown> = {}) =>
    new SignJWT({ scope: 'orders:read', ...extra })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'k1', typ: 'at+jwt' })
      .setIssuer(ISSUER)
      .setAudience('urn:api')
      .setSubject(sub)
      .setIssuedAt(clock.now() / 1000)
      .setExpirationTime(clock.now() / 1000 + 300)
      .sign(privateKey);
  return { verifier, sign, lookups: () => lookups };
}

test('a verified token is served from the cache, synchronously, and only that very token', async () => {
  const { verifier, sign, lookups } = await setup();
  const token = await sign('alice');
  const first = await verifier.verify(token);
  assert.equal(first.sub, 'alice');
  const again = verifier.verify(token);
  assert.ok(!(again instanceof Promise), 'a cache hit answers without waiting');
  assert.equal(again, first);
  assert.equal(lookups(), 1);
  // the same signature under another header and payload (the cache is found by the token's last characters)
  const [, , signature] = token.split('.');
  const forgedPayload = Buffer.from(JSON.stringify({ iss: ISSUER, aud: 'urn:api', sub: 'mallory', scope: 'admin', iat: 1, exp: 4102444800 })).toString('base64url');
  const forged = `${token.split('.')[0]}.${forgedPayload}.${signature}`;
  await assert.rejects(async () => verifier.verify(forged), (e: unknown) => e instanceof TokenRejected && /signature/.test(e.reason));
  // and the forgery did not push the real token out
  const still = verifier.verify(token);
  assert.ok(!(still instanceof Promise));
  assert.equal(still.sub, 'alice');
});

test('the tokens of several callers are each verified as themselves, from the cache too', async () => {
  const { verifier, sign } = await setup();
  const a = await sign('alice');
  const b = await sign('bob');
  assert.equal((await verifier.verify(a)).sub, 'alice');
  assert.equal((await verifier.verify(b)).sub, 'bob');
  assert.equal((await verifier.verify(a)).sub, 'alice');
  assert.equal((await verifier.verify(b)).sub, 'bob');
});

test('a revoked token id stops a cached token at once', async () => {
  const { verifier, sign } = await setup();
  const token = await sign('alice', { jti: 'j-1' });
  await verifier.verify(token);
  verifier.revoke('j-1', Date.UTC(2026, 10, 28) / 1000);
  await assert.rejects(async () => verifier.verify(token), (e: unknown) => e instanceof TokenRejected && /revoked/.test(e.reason));
});
