// A zone's locked ingress (topology `zones.<z>.ingress`), enforced on the
// gateway's TLS listener before any request exists:
//   sources            a connection from another network is closed at once,
//                      before the TLS handshake;
//   clientCertificate  'required': the handshake itself fails without a
//                      certificate of the trust domain (OpenSSL checks the
//                      chain); then the verified SPIFFE ID must be a service
//                      whose egress names gateway:<zone>, not revoked, else
//                      the connection is closed. 'optional': the same rule for
//                      a certificate that is presented.
// The rules are read from the state in force, so a new bundle or reload
// changes them for the next connection.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type https from 'node:https';
import { verifySvid } from '../pki/index.ts';
import { compileCidrs, normaliseAddress } from '../shared/address.ts';
import type { ZoneConfig } from '../topology/schema.ts';
import type { Clock } from '../shared/clock.ts';

export interface CompiledIngress {
  /** Undefined: any address. */
  sources?: (address: string) => boolean;
  certificate?: 'required' | 'optional';
  /** SPIFFE IDs a certificate may name. */
  callers: ReadonlySet<string>;
  isRevoked(serial: string): boolean;
}

export type IngressRefusal = 'source' | 'no_certificate' | 'certificate_invalid' | 'not_a_caller';

export function compileIngress(
  ingress: ZoneConfig['ingress'],
  callers: readonly string[],
  isRevoked: (serial: string) => boolean,
): CompiledIngress | undefined {
  if (!ingress) return undefined;
  return {
    sources: ingress.sources ? compileCidrs(ingress.sources) : undefined,
    certificate: ingress.clientCertificate,
    callers: new Set(callers),
    isRevoked,
  };
}

export interface IngressGuardOptions {
  /** The rules in force (undefined: the zone has no ingress). */
  current(): CompiledIngress | undefined;
  trustDomain: string;
  clock: Clock;
  onRefused(reason: IngressRefusal, detail: { remote: string; peer?: string }): void;
}

/** Installs the checks on a TLS server; call after every other `secureConnection` listener is in place. */
export function guardIngress(server: https.Server, o: IngressGuardOptions): void {
  server.prependListener('connection', (socket: Socket) => {
    const rules = o.current();
    const remote = normaliseAddress(socket.remoteAddress);
    if (rules?.sources && !rules.sources(remote)) {
      o.onRefused('source', { remote });
      socket.destroy();
    }
  });
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const rules = o.current();
    if (!rules?.certificate) return;
    const remote = normaliseAddress(socket.remoteAddress);
    const cert = socket.getPeerCertificate(false);
    if (!cert?.raw) {
      if (rules.certificate === 'optional') return;
      o.onRefused('no_certificate', { remote });
      return void socket.destroy();
    }
    const decision = socket.authorized
      ? verifySvid(cert.raw, { trustDomain: o.trustDomain, now: o.clock.now(), purpose: 'client', isRevoked: rules.isRevoked })
      : ({ ok: false, reason: 'untrusted' } as const);
    if (!decision.ok) {
      o.onRefused('certificate_invalid', { remote });
      return void socket.destroy();
    }
    if (!rules.callers.has(decision.id.uri)) {
      o.onRefused('not_a_caller', { remote, peer: decision.id.uri });
      return void socket.destroy();
    }
  });
}

/** Server options for the TLS listener: ask for certificates when the ingress wants them. */
export function applyIngressTls(server: https.Server, rules: CompiledIngress | undefined): void {
  // tls.Server reads these per new connection: a new rule applies to the next handshake
  const s = server as https.Server & { requestCert: boolean; rejectUnauthorized: boolean };
  s.requestCert = rules?.certificate !== undefined;
  s.rejectUnauthorized = rules?.certificate === 'required';
}
