// Client certificates (RFC 8705 tls_client_auth, and the revocation feed's
// mTLS readers). OpenSSL has already checked the chain against `clientCa`
// (socket.authorized); this file matches the certificate to a client.
//
// With `clientCa: trust-domain` the certificate must also be an X509-SVID of
// the zone's trust domain (verifySvid: a leaf, client purpose, one SPIFFE URI
// SAN, issued by that zone's intermediate, in its validity window, not revoked
// in the CA's revocation list), and the client's registered SAN URI must be
// exactly that SPIFFE ID. With a PEM bundle of another CA, the registered SAN
// URI must be one of the certificate's URI SANs.
import { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { verifySvid } from '../pki/index.ts';

export interface ClientCertPolicy {
  /** set when client certificates are X509-SVIDs of this trust domain */
  svid?: { trustDomain: string; isRevoked(serial: string): boolean };
  now(): number;
}

/** The verified peer certificate of this connection, or undefined (none, or its chain did not verify). */
export function verifiedPeerCertificate(socket: unknown): X509Certificate | undefined {
  const tls = socket as TLSSocket;
  if (typeof tls?.getPeerCertificate !== 'function' || tls.authorized !== true) return undefined;
  const peer = tls.getPeerCertificate(false);
  if (!peer?.raw) return undefined;
  return new X509Certificate(peer.raw);
}

/** The peer certificate whether or not its chain verified (oidc-provider asks both questions apart). */
export function peerCertificate(socket: unknown): X509Certificate | undefined {
  const tls = socket as TLSSocket;
  if (typeof tls?.getPeerCertificate !== 'function') return undefined;
  const peer = tls.getPeerCertificate(false);
  if (!peer?.raw) return undefined;
  return new X509Certificate(peer.raw);
}

function uriSans(cert: X509Certificate): string[] {
  // Node renders SANs as `URI:value, DNS:value`; a value holding ", " or a
  // quote is rendered JSON-quoted, and such a value never equals a SPIFFE ID.
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/** Does this (chain-verified) certificate identify the client registered with `expected` as its SAN URI? */
export function certificateMatchesSanUri(cert: X509Certificate, expected: string, policy: ClientCertPolicy): boolean {
  if (policy.svid) {
    const decision = verifySvid(new Uint8Array(cert.raw), {
      trustDomain: policy.svid.trustDomain,
      now: policy.now(),
      purpose: 'client',
      isRevoked: policy.svid.isRevoked,
    });
    return decision.ok && decision.id.uri === expected;
  }
  return uriSans(cert).includes(expected);
}
