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
// Without a certificate rule, a zone that requires sender-constrained tokens
// (authentication.senderConstrained: required, for the zone or a route) asks
// every client for a certificate and requires none ('request'): whatever
// certificate is presented — a partner's own, of any CA, self-signed — only
// holds a certificate-bound token (RFC 8705 cnf.x5t#S256) to the connection
// it came over (the authentication unit compares thumbprints); no chain is
// checked and no connection is closed for it. Other zones ask for none:
// browsers may prompt their users for a certificate when a server asks
// (RFC 8705 §7.2 and §5 keep mTLS apart for that reason).
// The rules are read from the state in force, so a new bundle or reload
// changes them for the next connection.
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type https from 'node:https';
import { verifySvid } from '../pki/index.ts';
import { compileCidrs, normaliseAddress } from '../shared/address.ts';
import type { ZoneConfig } from '../topology/schema.ts';
import type { RouteAuth, ZoneAuthentication } from './policies/authentication/schema.ts';
import type { Clock } from '../shared/clock.ts';

export interface CompiledIngress {
  /** Undefined: any address. */
  sources?: (address: string) => boolean;
  /** 'request': asked for, never required nor checked (it only holds certificate-bound tokens) */
  certificate?: 'required' | 'optional' | 'request';
  /** SPIFFE IDs a certificate may name. */
  callers: ReadonlySet<string>;
  isRevoked(serial: string): boolean;
}

export type IngressRefusal = 'source' | 'no_certificate' | 'certificate_invalid' | 'not_a_caller';

/** What of a zone's configuration decides whether its gateway asks for client certificates besides `ingress`. */
export interface IngressZone {
  authentication?: Pick<ZoneAuthentication, 'senderConstrained'>;
  routes?: readonly { auth?: RouteAuth | string }[];
}

/** Does the zone, or one of its routes, require sender-constrained tokens? */
function requiresSenderConstraint(zone: IngressZone | undefined): boolean {
  if (zone?.authentication?.senderConstrained === 'required') return true;
  return (zone?.routes ?? []).some((r) => typeof r.auth === 'object' && r.auth !== null && (r.auth as { senderConstrained?: string }).senderConstrained === 'required');
}

/**
 * `zone`: the zone's configuration (authentication and routes); given, a zone
 * without a certificate rule that requires sender-constrained tokens asks for
 * client certificates ('request').
 */
export function compileIngress(
  ingress: ZoneConfig['ingress'],
  callers: readonly string[],
  isRevoked: (serial: string) => boolean,
  zone?: IngressZone,
): CompiledIngress | undefined {
  const certificate = ingress?.clientCertificate ?? (requiresSenderConstraint(zone) ? 'request' : undefined);
  if (!ingress && !certificate) return undefined;
  return {
    sources: ingress?.sources ? compileCidrs(ingress.sources) : undefined,
    certificate,
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
    // 'request': a presented certificate binds tokens, nothing more (see the top of this file)
    if (!rules?.certificate || rules.certificate === 'request') return;
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
  // 'optional' and 'request' complete the handshake without one, or with one OpenSSL cannot verify
  // ('optional' then closes the connection in guardIngress; 'request' keeps it for the thumbprint)
  s.rejectUnauthorized = rules?.certificate === 'required';
}
