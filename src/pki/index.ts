// The trust domain's certificate authority (issue 5, part 1). Public API.
// The CA server (its metrics, its logger) loads when first started: every
// workload reaches this door for its identity and should not load it.
import type { StartCaServerOptions, CaServer } from './ca-server.ts';
export { initCa, type InitCaOptions, type InitCaResult } from './init-ca.ts';
export { openCa, DEFAULT_CA_POLICY, type Ca, type CaPolicy, type OpenCaOptions } from './open-ca.ts';
export { issueCertificate, type IssueCertificateRequest, type IssuedCertificate } from './issue-certificate.ts';
export { issueWorkloadIdentity, type IssueWorkloadIdentityOptions } from './issue-workload-identity.ts';
export { createJoinToken, type JoinToken, type CreateJoinTokenOptions } from './create-join-token.ts';
export { revokeCertificate, REVOCATION_REFRESH_SECONDS } from './revoke-certificate.ts';
export type { StartCaServerOptions, CaServer } from './ca-server.ts';
export { bootstrapIdentity, renewIdentity, fetchRevocations, TOKEN_FILE_PREFIX, type BootstrapIdentityOptions, type RenewIdentityOptions } from './bootstrap-identity.ts';
export { CaRequestError } from './lib/ca-client.ts';
export { createK8sAttestor, K8S_TOKEN_ALGORITHMS, MAX_K8S_TOKEN_BYTES, type K8sAttestor, type K8sAttestation } from './create-k8s-attestor.ts';
export { loadK8sAttestationConfig, K8sAttestationSchema, type K8sAttestationConfig, type K8sAttestationPlan } from './lib/k8s-attestation-config.ts';
export { verifySvid, type SvidDecision, type SvidRejection, type VerifySvidOptions } from './verify-svid.ts';
export { parseSpiffeId, serviceSpiffeId, gatewaySpiffeId, caSpiffeId, controlSpiffeId, vaultSpiffeId, callerName, type WorkloadId } from './spiffe-id.ts';
export { newKeyAndCsr } from './lib/workload-key.ts';
export type { WorkloadIdentity } from './workload-identity.ts';
export { GatehouseError, type ProblemCode } from '../shared/errors.ts';
export { pkiPaths } from './lib/files.ts';

import path from 'node:path';

/** `gatehouse ca serve`: the CA over HTTPS. */
export async function startCaServer(options: StartCaServerOptions): Promise<CaServer> {
  return (await import('./ca-server.ts')).startCaServer(options);
}

/** Path of the trust bundle (root certificate PEM) of the CA in `stateDir`. */
export function trustBundlePath(stateDir: string): string {
  return path.resolve(stateDir, 'pki', 'bundle.pem');
}
export { createRevocationFeed, localRevocations, type RevocationSource, type RevocationFeed, type RevocationFeedOptions } from './revocation-feed.ts';
export { createIdentityManager, type IdentityManager, type IdentityManagerOptions } from './identity-manager.ts';
