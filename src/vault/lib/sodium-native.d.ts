// The few sodium-native functions the vault calls (the package ships no types).
declare module 'sodium-native' {
  type Bytes = Uint8Array;
  const sodium: {
    crypto_aead_xchacha20poly1305_ietf_KEYBYTES: number;
    crypto_aead_xchacha20poly1305_ietf_NPUBBYTES: number;
    crypto_aead_xchacha20poly1305_ietf_ABYTES: number;
    crypto_aead_xchacha20poly1305_ietf_encrypt(c: Bytes, m: Bytes, ad: Bytes | null, nsec: null, npub: Bytes, k: Bytes): number;
    crypto_aead_xchacha20poly1305_ietf_decrypt(m: Bytes, nsec: null, c: Bytes, ad: Bytes | null, npub: Bytes, k: Bytes): number;
    crypto_secretstream_xchacha20poly1305_STATEBYTES: number;
    crypto_secretstream_xchacha20poly1305_HEADERBYTES: number;
    crypto_secretstream_xchacha20poly1305_ABYTES: number;
    crypto_secretstream_xchacha20poly1305_TAG_MESSAGE: number;
    crypto_secretstream_xchacha20poly1305_TAG_FINAL: number;
    crypto_secretstream_xchacha20poly1305_init_push(state: Bytes, header: Bytes, k: Bytes): void;
    crypto_secretstream_xchacha20poly1305_init_pull(state: Bytes, header: Bytes, k: Bytes): void;
    crypto_secretstream_xchacha20poly1305_push(state: Bytes, c: Bytes, m: Bytes, ad: Bytes | null, tag: number): number;
    crypto_secretstream_xchacha20poly1305_pull(state: Bytes, m: Bytes, tag: Bytes, c: Bytes, ad: Bytes | null): number;
    crypto_generichash(out: Bytes, input: Bytes, key?: Bytes): void;
    randombytes_buf(buf: Bytes): void;
    randombytes_uniform(upper: number): number;
    sodium_malloc(size: number): Buffer;
    sodium_memzero(buf: Bytes): void;
  };
  export default sodium;
}
