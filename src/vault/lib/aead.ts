// XChaCha20-Poly1305 (IETF) through libsodium: the only cipher the vault uses.
// Random 24-byte nonces (safe at any volume under one key: 192 bits).
import sodium from 'sodium-native';

export const KEY_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES;
export const NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
export const TAG_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES;

/** A fresh random key in libsodium's guarded memory. */
export function newKey(): Buffer {
  const k = sodium.sodium_malloc(KEY_BYTES);
  sodium.randombytes_buf(k);
  return k;
}

/** A key copied into guarded memory (the source is wiped). */
export function guardKey(bytes: Uint8Array): Buffer {
  const k = sodium.sodium_malloc(bytes.length);
  k.set(bytes);
  sodium.sodium_memzero(bytes);
  return k;
}

// Nonces are drawn from a pool filled by libsodium's CSPRNG 512 nonces at a time
// and consumed once each: one getrandom() call per 512 encryptions instead of
// one per encryption (~17 µs each under load, the largest cost of a field).
const NONCE_POOL = Buffer.allocUnsafe(NONCE_BYTES * 512);
let noncePos = NONCE_POOL.length;

/**
 * Writes nonce ‖ ciphertext ‖ tag into `out` from `offset` (out must have
 * NONCE_BYTES + plaintext + TAG_BYTES bytes there).
 */
export function sealInto(out: Buffer, offset: number, key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): void {
  const nonce = out.subarray(offset, offset + NONCE_BYTES);
  if (noncePos + NONCE_BYTES > NONCE_POOL.length) {
    sodium.randombytes_buf(NONCE_POOL);
    noncePos = 0;
  }
  NONCE_POOL.copy(nonce, 0, noncePos, noncePos + NONCE_BYTES);
  noncePos += NONCE_BYTES;
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(out.subarray(offset + NONCE_BYTES, offset + NONCE_BYTES + plaintext.length + TAG_BYTES), plaintext, aad, null, nonce, key);
}

/** nonce ‖ ciphertext ‖ tag of `plaintext`. */
export function seal(key: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(NONCE_BYTES + plaintext.length + TAG_BYTES);
  sealInto(out, 0, key, plaintext, aad);
  return out;
}

/** The plaintext of nonce ‖ ciphertext ‖ tag, or undefined when it does not authenticate (tampered, other key or AAD). */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | undefined {
  if (sealed.length < NONCE_BYTES + TAG_BYTES) return undefined;
  const out = Buffer.allocUnsafe(sealed.length - NONCE_BYTES - TAG_BYTES);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(out, null, sealed.subarray(NONCE_BYTES), aad, sealed.subarray(0, NONCE_BYTES), key);
    return out;
  } catch {
    return undefined;
  }
}

/** A keyed BLAKE2b hash (32 bytes): deterministic token lookup, never reversible. */
export function keyedHash(key: Uint8Array, input: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(32);
  sodium.crypto_generichash(out, input, key);
  return out;
}

export const randomBytes = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(n);
  sodium.randombytes_buf(b);
  return b;
};

/** Uniform integer in [0, upper). */
export const randomBelow = (upper: number): number => sodium.randombytes_uniform(upper);
