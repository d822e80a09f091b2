// TLS settings of a gateway listener: TLS 1.2 minimum, AEAD-only suites,
// hybrid post-quantum key exchange first where the runtime's OpenSSL has it.
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { GatewayConfig } from '../topology/schema.ts';
import { openDevCa } from '../shared/dev-ca.ts';

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

export interface TlsMaterial {
  cert: string | Buffer;
  key: string | Buffer;
  /** Files to watch for reload; empty for dev certificates. */
  files: string[];
}

export async function loadTlsMaterial(
  tls: GatewayConfig['tls'],
  baseDir: string,
  stateDir: string,
  trustDomain: string,
  names: readonly string[],
): Promise<TlsMaterial> {
  if (tls === 'dev') {
    const ca = await openDevCa(stateDir, trustDomain);
    const pair = await ca.issueServer(names);
    return { cert: pair.cert, key: pair.key, files: [] };
  }
  const certFile = path.resolve(baseDir, tls.cert);
  const keyFile = path.resolve(baseDir, tls.key);
  return { cert: readFileSync(certFile), key: readFileSync(keyFile), files: [certFile, keyFile] };
}

export function secureOptions(material: TlsMaterial): SecureContextOptions & { minVersion: 'TLSv1.2' } {
  return {
    cert: material.cert,
    key: material.key,
    minVersion: 'TLSv1.2',
    ciphers: CIPHERS,
    ecdhCurve: keyExchangeGroups(),
    honorCipherOrder: true,
    sessionTimeout: 300,
  };
}
