// The workload's side of issuance: its own ECDSA P-256 key (never leaves the
// process) and a CSR carrying nothing but that key.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { x509, EC_ALG, generateKeyPair, privateKeyPem } from './x509.ts';

export async function newKeyAndCsr(): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await generateKeyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_ALG });
  return { keyPem: await privateKeyPem(keys.privateKey), csrPem: csr.toString('pem') + '\n' };
}

/** True when the first certificate of `chainPem` certifies the key in `keyPem`. */
export function certMatchesKey(chainPem: string, keyPem: string): boolean {
  try {
    return new X509Certificate(chainPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}
