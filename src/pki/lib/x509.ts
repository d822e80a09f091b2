// The one place @peculiar/x509 is set up for the pki component: WebCrypto from
// node:crypto, ECDSA P-256 with SHA-256 everywhere. No crypto is written here.
import { webcrypto, randomBytes } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export type Key = webcrypto.CryptoKey;
export type KeyPair = webcrypto.CryptoKeyPair;
export const crypto = webcrypto;
x509.cryptoProvider.set(webcrypto as never);

export { x509 };

export const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

export async function generateKeyPair(): Promise<KeyPair> {
  return (await crypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as KeyPair;
}

export async function privateKeyPem(key: Key): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY') + '\n';
}

export async function importPrivateKeyPem(pem: string): Promise<Key> {
  return crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), EC_ALG, false, ['sign']);
}

export async function importPrivateKeyDer(der: Uint8Array): Promise<Key> {
  return crypto.subtle.importKey('pkcs8', der, EC_ALG, false, ['sign']);
}

/** 128 random bits, positive, first byte non-zero so the hex form has no leading zero byte. */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toString('hex');
}

/** Serials compare as lowercase hex without leading zeros (OpenSSL and Node print them differently). */
export function normalizeSerial(serial: string): string | null {
  const s = serial.trim().toLowerCase().replace(/:/g, '');
  if (!/^[0-9a-f]{1,64}$/.test(s)) return null;
  return s.replace(/^0+(?=.)/, '');
}

export function certPem(cert: x509.X509Certificate): string {
  return cert.toString('pem') + '\n';
}
