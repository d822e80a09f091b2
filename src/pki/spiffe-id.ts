// SPIFFE IDs of the trust domain, parsed strictly. An ID is compared as the
// exact bytes Gatehouse would have issued: no case folding, no percent-decoding,
// no dot segments, no trailing slash, no port, query, fragment or userinfo.
// Anything else (`…/svc/orders-evil` is a different, unknown service) is refused.

/**
 * A workload of the trust domain: a service, the gateway or the authority of a
 * zone, or the CA itself. An authority's identity is for the control plane
 * (its policy bundle, its security events): no mesh peer has an edge from it.
 */
export type WorkloadId =
  | { kind: 'service'; trustDomain: string; zone: string; service: string; uri: string }
  | { kind: 'gateway'; trustDomain: string; zone: string; uri: string }
  | { kind: 'authority'; trustDomain: string; zone: string; uri: string }
  | { kind: 'ca'; trustDomain: string; uri: string };

const NAME = '[a-z][a-z0-9-]{0,62}';
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/;
const PATH = new RegExp(`^/zone/(${NAME})/(?:svc/(${NAME})|(gateway|authority))$`);

export function serviceSpiffeId(trustDomain: string, zone: string, service: string): string {
  return `spiffe://${trustDomain}/zone/${zone}/svc/${service}`;
}

export function gatewaySpiffeId(trustDomain: string, zone: string): string {
  return `spiffe://${trustDomain}/zone/${zone}/gateway`;
}

/** The OAuth/OIDC authority of a zone: spiffe://<td>/zone/<zone>/authority. */
export function authoritySpiffeId(trustDomain: string, zone: string): string {
  return `spiffe://${trustDomain}/zone/${zone}/authority`;
}

export function caSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/ca`;
}

/**
 * The control plane's identity: its certificate certifies the Ed25519 key that
 * signs policy bundles. Deliberately not a WorkloadId (parseSpiffeId refuses
 * it), so no mesh peer or gateway ever accepts it as a caller.
 */
export function controlSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/control`;
}

/**
 * The vault's identity (its server certificate, `_control` issuer): services
 * check it before they hand the vault a plaintext. Like the control plane's,
 * deliberately not a WorkloadId, so no mesh peer accepts it as a caller.
 */
export function vaultSpiffeId(trustDomain: string): string {
  return `spiffe://${trustDomain}/vault`;
}

/**
 * Parses `uri` as a workload ID of `trustDomain`; returns null for anything that
 * is not exactly in the form Gatehouse issues (including other trust domains).
 */
export function parseSpiffeId(uri: string, trustDomain: string): WorkloadId | null {
  if (typeof uri !== 'string' || uri.length > 2048 || !TRUST_DOMAIN.test(trustDomain)) return null;
  const prefix = `spiffe://${trustDomain}/`;
  if (!uri.startsWith(prefix)) return null;
  const rest = uri.slice(prefix.length - 1);
  if (rest === '/ca') return { kind: 'ca', trustDomain, uri };
  const m = PATH.exec(rest);
  if (!m) return null;
  if (m[2] !== undefined) return { kind: 'service', trustDomain, zone: m[1], service: m[2], uri };
  return { kind: m[3] === 'authority' ? 'authority' : 'gateway', trustDomain, zone: m[1], uri };
}

/** The service name as policy sees it: a service's name, or `gateway` (`authority`) for a zone's gateway (authority). */
export function callerName(id: WorkloadId): string {
  return id.kind === 'service' ? id.service : id.kind;
}
