// A token issuer a test zone trusts: an HTTPS JWKS endpoint served with a
// certificate of the gateway's own dev CA (stateDir/tls/dev-ca.pem), EdDSA
// access tokens (RFC 9068), and forgeries signed by a key the JWKS lacks.
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose';
import { openDevCa } from '../../src/shared/dev-ca.ts';

export interface Issuer {
  issuer: string;
  jwksUri: string;
  sign(claims?: Record<string, unknown>): Promise<string>;
  /** A token that looks right (same iss, kid, claims) but is signed by a key the JWKS does not hold. */
  forge(claims?: Record<string, unknown>): Promise<string>;
  close(): void;
}

/** `defaults`: claims every token carries unless the call overrides them (client_id, scope …). */
export async function startIssuer(stateDir: string, defaults: Record<string, unknown> = {}): Promise<Issuer> {
  const ca = await openDevCa(stateDir);
  const pair = await ca.issueServer(['127.0.0.1']);
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const stranger = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'test-1', alg: 'EdDSA', use: 'sig' };
  const server = https.createServer(pair, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: [jwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const mint = (key: CryptoKey, claims: Record<string, unknown>) => {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: base, aud: 'urn:test:edge', sub: 'alice', iat: now, exp: now + 300, jti: randomUUID(), ...defaults, ...claims })
      .setProtectedHeader({ alg: 'EdDSA', kid: 'test-1', typ: 'at+jwt' })
      .sign(key);
  };
  return {
    issuer: base,
    jwksUri: `${base}/jwks`,
    sign: (claims = {}) => mint(privateKey, claims),
    forge: (claims = {}) => mint(stranger.privateKey, claims),
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}
