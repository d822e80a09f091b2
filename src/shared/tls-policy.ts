// The one TLS policy of every Gatehouse listener (gateways, CA, control plane,
// mesh services, vault, authorities): TLS 1.2 minimum, AEAD-only suites
// (no CBC, no SHA-1 MACs), the server's order, hybrid post-quantum key
// exchange first where the runtime's OpenSSL has it.
import { createSecureContext } from 'node:tls';

export const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

let groups: string | undefined;
/** Key-exchange groups: X25519MLKEM768 first when OpenSSL knows it. */
export function keyExchangeGroups(): string {
  if (groups !== undefined) return groups;
  const classic = 'X25519:prime256v1:secp384r1';
  try {
    createSecureContext({ ecdhCurve: `X25519MLKEM768:${classic}` });
    groups = `X25519MLKEM768:${classic}`;
  } catch {
    groups = classic;
  }
  return groups;
}

/** Spread into the options of any TLS server (and of clients inside the trust domain). */
export function tlsPolicy(): { minVersion: 'TLSv1.2'; ciphers: string; ecdhCurve: string; honorCipherOrder: true } {
  return { minVersion: 'TLSv1.2', ciphers: CIPHERS, ecdhCurve: keyExchangeGroups(), honorCipherOrder: true };
}
