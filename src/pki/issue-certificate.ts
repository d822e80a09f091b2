// Signs an X509-SVID for a workload: exactly one URI SAN (its SPIFFE ID), not a
// CA, digitalSignature only, serverAuth + clientAuth, issued by the
// intermediate of the workload's zone, for at most the policy's lifetime and
// never beyond the intermediate's.
import { x509, EC_ALG, randomSerial, certPem, normalizeSerial } from './lib/x509.ts';
import { parseAndCheckCsr } from './lib/csr.ts';
import { CONTROL_ISSUER } from './lib/files.ts';
import { recordIssued } from './lib/lineage.ts';
import { parseSpiffeId, controlSpiffeId, vaultSpiffeId, type WorkloadId } from './spiffe-id.ts';
import { GatehouseError } from '../shared/errors.ts';
import type { Ca } from './open-ca.ts';

export interface IssueCertificateRequest {
  /** PEM PKCS#10 request signed by the workload's own (ECDSA P-256) key. */
  csr: string;
  /** The identity to certify; the caller has already authenticated it (join token, current certificate, operator). */
  spiffeId: string;
  /** Requested lifetime; absent: the policy default (1 hour). Above the policy maximum is refused. */
  ttlSeconds?: number;
  /** The serial this is a renewal of (authenticated by the caller); absent: the first of a new lineage. */
  parent?: string;
  /** Extra DNS / IP SANs, only for the CA's own serving certificate. */
  serverNames?: { dns?: string[]; ip?: string[] };
}

export interface IssuedCertificate {
  spiffeId: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** The leaf alone, PEM. */
  leafPem: string;
  /** Leaf then intermediate: what a workload presents in TLS. */
  chainPem: string;
  /** The trust bundle (root) to verify peers against. */
  bundlePem: string;
}

/** Clock skew allowance: a certificate is valid from 30 s before issuance. */
const BACKDATE_MS = 30_000;

export function workloadKnown(ca: Ca, id: WorkloadId): boolean {
  const t = ca.topology;
  if (!t) return true;
  if (id.kind === 'ca') return true;
  if (id.kind === 'gateway') return t.zones[id.zone]?.gateway !== undefined;
  if (id.kind === 'authority') return t.zones[id.zone]?.authority !== undefined;
  return t.services[id.service]?.zone === id.zone;
}

export async function issueCertificate(ca: Ca, request: IssueCertificateRequest): Promise<IssuedCertificate> {
  // spiffe://<td>/control: the control plane's bundle-signing identity, an
  // Ed25519 key under the `_control` issuer, like the CA's own certificate;
  // spiffe://<td>/vault: the vault's server identity (ECDSA), same issuer
  const control = request.spiffeId === controlSpiffeId(ca.trustDomain);
  const vault = request.spiffeId === vaultSpiffeId(ca.trustDomain);
  const id: WorkloadId | null = control || vault ? { kind: 'ca', trustDomain: ca.trustDomain, uri: request.spiffeId } : parseSpiffeId(request.spiffeId, ca.trustDomain);
  if (!id) throw new GatehouseError('unknown_workload', 'not a workload identity of this trust domain');
  if (!workloadKnown(ca, id)) throw new GatehouseError('unknown_workload', 'the topology has no such workload');
  const ttl = request.ttlSeconds ?? ca.policy.defaultTtlSeconds;
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > ca.policy.maxTtlSeconds)
    throw new GatehouseError('ttl_out_of_policy', `lifetime must be a whole number of seconds from 60 to ${ca.policy.maxTtlSeconds}`);
  const name = control ? 'control' : vault ? 'vault' : id.kind === 'service' ? id.service : id.kind;
  const csr = await parseAndCheckCsr(request.csr, { uri: id.uri, name, key: control ? 'ed25519' : 'ecdsa-p256' });
  const issuer = ca.issuers.get(id.kind === 'ca' ? CONTROL_ISSUER : id.zone);
  if (!issuer) throw new GatehouseError('ca_not_initialized', `no issuer for zone ${id.kind === 'ca' ? 'control' : id.zone}; run \`gatehouse ca init\``);

  const now = ca.clock.now();
  const notAfter = Math.min(now + ttl * 1000, issuer.cert.notAfter.getTime());
  if (notAfter <= now + 60_000) throw new GatehouseError('ca_not_initialized', 'the zone issuer expires too soon; rotate it with `gatehouse ca init`');
  const sans: x509.JsonGeneralName[] = [{ type: 'url', value: id.uri }];
  for (const d of request.serverNames?.dns ?? []) sans.push({ type: 'dns', value: d });
  for (const ip of request.serverNames?.ip ?? []) sans.push({ type: 'ip', value: ip });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [name] }, { OU: [id.kind === 'ca' ? 'control' : `zone:${id.zone}`] }, { O: [ca.trustDomain] }],
    issuer: issuer.cert.subjectName,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(notAfter),
    signingAlgorithm: EC_ALG,
    publicKey: csr.publicKey,
    signingKey: issuer.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension(sans, false),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false),
    ],
  });
  const leafPem = certPem(cert);
  const serial = normalizeSerial(cert.serialNumber) ?? cert.serialNumber;
  // Recorded before anyone sees it, so a revocation of an ancestor finds it.
  recordIssued(ca.paths, { serial, parent: request.parent, spiffeId: id.uri, issuedAt: new Date(now), notAfter: cert.notAfter });
  return {
    spiffeId: id.uri,
    serial,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    leafPem,
    chainPem: leafPem + issuer.pem,
    bundlePem: ca.bundlePem,
  };
}
