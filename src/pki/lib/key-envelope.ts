// Encryption of the root key at rest: AES-256-GCM (node:crypto) under a key
// derived from the operator's passphrase with scrypt. The envelope is a small
// JSON file that can be moved offline with the passphrase kept elsewhere.
import { createCipheriv, createDecipheriv, randomBytes, scryptSync } from 'node:crypto';

export interface KeyEnvelope {
  v: 1;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  cipher: 'aes-256-gcm';
  iv: string;
  tag: string;
  ciphertext: string;
}

const AAD = Buffer.from('gatehouse:pki:root-key:v1');
const SCRYPT = { N: 2 ** 15, r: 8, p: 1 };

function kek(passphrase: string, salt: Buffer, params: { N: number; r: number; p: number }): Buffer {
  return scryptSync(passphrase.normalize('NFC'), salt, 32, { ...params, maxmem: 256 * 1024 * 1024 });
}

export function sealKey(plaintext: Uint8Array, passphrase: string): KeyEnvelope {
  if (passphrase.length < 16) throw new Error('the root key passphrase must be at least 16 characters');
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', kek(passphrase, salt, SCRYPT), iv);
  cipher.setAAD(AAD);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return {
    v: 1,
    kdf: { name: 'scrypt', ...SCRYPT, salt: salt.toString('base64') },
    cipher: 'aes-256-gcm',
    iv: iv.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
    ciphertext: ciphertext.toString('base64'),
  };
}

/** Throws when the passphrase is wrong or the envelope was altered (GCM tag). */
export function openKey(envelope: KeyEnvelope, passphrase: string): Buffer {
  if (envelope.v !== 1 || envelope.cipher !== 'aes-256-gcm' || envelope.kdf?.name !== 'scrypt')
    throw new Error('unsupported root key envelope');
  const { N, r, p } = envelope.kdf;
  if (N > 2 ** 20 || r > 16 || p > 4) throw new Error('unsupported root key envelope parameters');
  const decipher = createDecipheriv(
    'aes-256-gcm',
    kek(passphrase, Buffer.from(envelope.kdf.salt, 'base64'), { N, r, p }),
    Buffer.from(envelope.iv, 'base64'),
  );
  decipher.setAAD(AAD);
  decipher.setAuthTag(Buffer.from(envelope.tag, 'base64'));
  return Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64')), decipher.final()]);
}
