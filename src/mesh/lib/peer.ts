// Verifies the peer of one TLS connection, once, from its certificate only.
import type { TLSSocket } from 'node:tls';
import type { Topology } from '../../topology/schema.ts';
import { verifySvid } from '../../pki/verify-svid.ts';
import type { WorkloadId } from '../../pki/spiffe-id.ts';
import type { RevocationSource } from '../../pki/revocation-feed.ts';

export interface VerifiedPeer {
  id: WorkloadId;
  serial: string;
  notAfter: number;
}

export type PeerResult = { ok: true; peer: VerifiedPeer } | { ok: false; reason: string };

const OPENSSL_REASONS: Record<string, string> = {
  CERT_HAS_EXPIRED: 'expired',
  CERT_NOT_YET_VALID: 'not_yet_valid',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted_chain',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted_chain',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted_chain',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted_chain',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted_chain',
  CERT_SIGNATURE_FAILURE: 'untrusted_chain',
  INVALID_CA: 'untrusted_chain',
  KEYUSAGE_NO_CERTSIGN: 'untrusted_chain',
  PATH_LENGTH_EXCEEDED: 'untrusted_chain',
  INVALID_PURPOSE: 'wrong_purpose',
};

/** True when the topology knows this workload where its ID says it lives. */
export function knownWorkload(topology: Topology | undefined, id: WorkloadId): boolean {
  if (!topology) return false;
  if (id.kind === 'service') return topology.services[id.service]?.zone === id.zone;
  if (id.kind === 'gateway') return topology.zones[id.zone]?.gateway !== undefined;
  return false;
}

export function verifyPeer(
  socket: TLSSocket,
  options: {
    trustDomain: string;
    topology: Topology | undefined;
    now: number;
    revocations: RevocationSource | null;
    purpose: 'client' | 'server';
    maxLifetimeSeconds?: number;
  },
): PeerResult {
  const cert = socket.getPeerX509Certificate();
  if (!cert) return { ok: false, reason: 'no_client_certificate' };
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? '');
    return { ok: false, reason: OPENSSL_REASONS[code] ?? 'untrusted_chain' };
  }
  const d = verifySvid(cert.raw, {
    trustDomain: options.trustDomain,
    now: options.now,
    purpose: options.purpose,
    maxLifetimeSeconds: options.maxLifetimeSeconds,
    isRevoked: options.revocations ? (s) => options.revocations!.isRevoked(s) : undefined,
  });
  if (!d.ok) return { ok: false, reason: d.reason };
  if (!knownWorkload(options.topology, d.id)) return { ok: false, reason: 'unknown_workload' };
  return { ok: true, peer: { id: d.id, serial: d.serial, notAfter: d.notAfter.getTime() } };
}
