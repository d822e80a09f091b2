// TLS settings of a gateway listener: TLS 1.2 minimum, AEAD-only suites,
// hybrid post-quantum key exchange first where the runtime's OpenSSL has it.
import type { SecureContextOptions } from 'node:tls';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { GatewayConfig } from '../topology/schema.ts';
import { openDevCa } from '../shared/dev-ca.ts';

export { CIPHERS, keyExchangeGroups } from '../shared/tls-policy.ts';
import { CIPHERS, keyExchangeGroups } from '../shared/tls-policy.ts';

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
