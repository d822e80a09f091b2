// Confidential claims ("double-wrapped JWT", seed 002): the claims a zone
// marks confidential for an audience travel inside the signed access token as
// a compact JWE (ECDH-ES+A256KW, A256GCM) to that audience's public key. Every
// service can read and verify the outer token; only the audience can open the
// inner claims. The JWE is inside the signature, so it cannot be swapped.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CompactEncrypt, compactDecrypt, importJWK, type JWK, type CryptoKey, type KeyObject } from 'jose';

export const CONFIDENTIAL_CLAIM = 'gh_confidential';

export function loadAudienceKey(file: string, baseDir: string): JWK {
  const jwk = JSON.parse(readFileSync(path.resolve(baseDir, file), 'utf8')) as JWK;
  if (jwk.d !== undefined) throw new Error(`${file}: holds a private key; give the authority the public key only`);
  const ok = (jwk.kty === 'EC' && jwk.crv === 'P-256') || (jwk.kty === 'OKP' && jwk.crv === 'X25519');
  if (!ok) throw new Error(`${file}: the audience key must be an EC P-256 or OKP X25519 public JWK`);
  return jwk;
}

export async function sealConfidentialClaims(
  claims: Record<string, unknown>,
  audienceKey: JWK,
  audience: string,
  issuer: string,
): Promise<string> {
  const key = await importJWK(audienceKey, 'ECDH-ES+A256KW');
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'json', kid: audienceKey.kid, iss: issuer, aud: audience })
    .encrypt(key);
}

/** For an audience (and tests): opens the inner claims with the audience's private key. */
export async function openConfidentialClaims(jwe: string, privateKey: CryptoKey | KeyObject | JWK): Promise<Record<string, unknown>> {
  const key = 'kty' in (privateKey as JWK) ? await importJWK(privateKey as JWK, 'ECDH-ES+A256KW') : (privateKey as CryptoKey);
  const { plaintext, protectedHeader } = await compactDecrypt(jwe, key, {
    keyManagementAlgorithms: ['ECDH-ES+A256KW'],
    contentEncryptionAlgorithms: ['A256GCM'],
  });
  if (protectedHeader.cty !== 'json') throw new Error('unexpected confidential claims content type');
  return JSON.parse(new TextDecoder().decode(plaintext)) as Record<string, unknown>;
}
