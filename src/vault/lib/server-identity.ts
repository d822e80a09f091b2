// The vault's own certificate: spiffe://<td>/vault, issued by the trust
// domain's CA under its `_control` issuer (the CA's keys open with the same
// master key as the vault's), with the listener's names as DNS/IP SANs.
// Services check that URI before they hand the vault a plaintext
// (create-vault-client.ts); the server re-issues it at half its lifetime.
import { isIP } from 'node:net';
import { openCa, issueCertificate, vaultSpiffeId, newKeyAndCsr } from '../../pki/index.ts';
import type { Clock } from '../../shared/clock.ts';

export interface VaultServerIdentity {
  spiffeId: string;
  /** Leaf then issuer, PEM. */
  certPem: string;
  /** PKCS#8 PEM. Never log it. */
  keyPem: string;
  notAfter: number;
}

/** Lifetime of the vault's certificate (the CA's ceiling). */
export const VAULT_CERT_TTL_SECONDS = 86400;

export async function issueVaultIdentity(o: { stateDir: string; names: string[]; clock: Clock; env?: NodeJS.ProcessEnv }): Promise<VaultServerIdentity> {
  const ca = await openCa({ stateDir: o.stateDir, clock: o.clock, env: o.env });
  const { keyPem, csrPem } = await newKeyAndCsr();
  const issued = await issueCertificate(ca, {
    csr: csrPem,
    spiffeId: vaultSpiffeId(ca.trustDomain),
    ttlSeconds: VAULT_CERT_TTL_SECONDS,
    serverNames: { dns: o.names.filter((n) => isIP(n) === 0), ip: o.names.filter((n) => isIP(n) !== 0) },
  });
  return { spiffeId: issued.spiffeId, certPem: issued.chainPem, keyPem, notAfter: issued.notAfter.getTime() };
}
