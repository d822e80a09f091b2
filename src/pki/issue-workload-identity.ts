// Direct issuance from the CA's state dir, for operators (`gatehouse ca issue`),
// `gatehouse up` and the gateway's own client certificate: a fresh key and an
// X509-SVID for `spiffeId`, without a join token. Whoever can read the state
// dir can already sign anything, so this grants nothing new.
import type { Topology } from '../topology/schema.ts';
import type { Clock } from '../shared/clock.ts';
import { openCa, type Ca } from './open-ca.ts';
import { issueCertificate } from './issue-certificate.ts';
import { newKeyAndCsr } from './lib/workload-key.ts';
import type { WorkloadIdentity } from './workload-identity.ts';
import { ancestorsOf } from './lib/lineage.ts';
import { GatehouseError } from '../shared/errors.ts';

export interface IssueWorkloadIdentityOptions {
  /** Lifetime; absent: 1 hour. At most 24 hours. */
  ttlSeconds?: number;
  /** When given, the workload must exist in it. */
  topology?: Topology;
  clock?: Clock;
  /**
   * The serial of the certificate this one renews: the new one joins its
   * lineage, and is refused (certificate_revoked) when it or an ancestor is
   * revoked. Absent: a new lineage.
   */
  parent?: string;
}

export async function issueWorkloadIdentity(
  stateDirOrCa: string | Ca,
  spiffeId: string,
  options: IssueWorkloadIdentityOptions = {},
): Promise<WorkloadIdentity> {
  const ca =
    typeof stateDirOrCa === 'string'
      ? await openCa({ stateDir: stateDirOrCa, topology: options.topology, clock: options.clock })
      : stateDirOrCa;
  if (options.parent !== undefined) {
    const revoked = [options.parent, ...ancestorsOf(ca.paths, options.parent)].find((s) => ca.revocations.hasNow(s));
    if (revoked !== undefined) throw new GatehouseError('certificate_revoked', `the certificate renewed is revoked (${revoked === options.parent ? 'itself' : `its ancestor ${revoked}`})`);
  }
  const { keyPem, csrPem } = await newKeyAndCsr();
  const issued = await issueCertificate(ca, { csr: csrPem, spiffeId, ttlSeconds: options.ttlSeconds, parent: options.parent });
  return {
    spiffeId: issued.spiffeId,
    certPem: issued.chainPem,
    keyPem,
    bundlePem: issued.bundlePem,
    serial: issued.serial,
    notBefore: issued.notBefore,
    notAfter: issued.notAfter,
  };
}
