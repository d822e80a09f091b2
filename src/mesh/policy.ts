// Who may call whom, compiled once from the topology's `allow` edges of one
// service. `decide` only looks up. No policy (service absent from the
// topology, or none loaded) refuses everything.
import type { Topology } from '../topology/schema.ts';
import type { WorkloadId } from '../pki/spiffe-id.ts';

export type PolicyDenial =
  | 'no_policy'
  | 'no_edge'
  | 'method_not_allowed'
  | 'path_not_allowed'
  | 'ambiguous_path'
  | 'method_override'
  | 'identity_header';

export type PolicyDecision = { allow: true; caller: string } | { allow: false; reason: PolicyDenial; caller: string };

interface CompiledEdge {
  methods: ReadonlySet<string>;
  exact: ReadonlySet<string>;
  prefixes: readonly string[];
}

export interface CompiledPolicy {
  service: string;
  zone: string;
  /** Edges by caller name (`gateway` for the zone's gateway). */
  edges: ReadonlyMap<string, CompiledEdge[]>;
}

export function compilePolicy(topology: Topology | undefined, service: string): CompiledPolicy | null {
  const svc = topology?.services[service];
  if (!topology || !svc) return null;
  const edges = new Map<string, CompiledEdge[]>();
  for (const edge of svc.allow ?? []) {
    // An edge naming an unknown service can never match a verified peer; keep
    // it inert rather than guessing.
    if (edge.caller !== 'gateway' && !topology.services[edge.caller]) continue;
    const list = edges.get(edge.caller) ?? [];
    list.push({
      methods: new Set(edge.methods),
      exact: new Set(edge.paths.filter((p) => p.match === 'exact').map((p) => p.path)),
      prefixes: edge.paths.filter((p) => p.match === 'prefix').map((p) => p.path.replace(/\/+$/, '')),
    });
    edges.set(edge.caller, list);
  }
  return { service, zone: svc.zone, edges };
}

/** Headers through which a request could claim an identity; the mesh trusts only the certificate. */
export const IDENTITY_HEADERS = [
  'x-forwarded-client-cert',
  'x-client-cert',
  'x-client-certificate',
  'x-ssl-client-cert',
  'x-ssl-client-s-dn',
  'x-ssl-client-verify',
  'x-client-verify',
  'x-client-dn',
  'ssl-client-cert',
  'x-arr-clientcert',
  'x-amzn-mtls-clientcert',
  'x-amzn-mtls-clientcert-leaf',
  'x-spiffe-id',
  'x-gatehouse-caller',
  'x-gatehouse-peer',
  'x-gatehouse-user',
  'x-gatehouse-sidecar',
  'x-forwarded-user',
  'x-remote-user',
  'x-authenticated-user',
  'remote-user',
] as const;

export const METHOD_OVERRIDE_HEADERS = ['x-http-method-override', 'x-http-method', 'x-method-override'] as const;

/**
 * The path of a request target, or null when it is ambiguous: not origin-form,
 * dot or empty segments, backslashes, or percent-encoded `.`, `/`, `\`.
 */
export function canonicalPath(target: string): string | null {
  if (target.length === 0 || target[0] !== '/' || target.startsWith('//')) return null;
  const q = target.indexOf('?');
  const p = q === -1 ? target : target.slice(0, q);
  if (p.includes('#') || p.includes('\\') || /%(2e|2f|5c|00)/i.test(p)) return null;
  if (/\/\.{1,2}(\/|$)|\/\/|[^\x21-\x7e]/.test(p)) return null;
  return p;
}

export function callerOf(peer: WorkloadId, policy: { zone: string }): string | null {
  if (peer.kind === 'service') return peer.service;
  if (peer.kind === 'gateway') return peer.zone === policy.zone ? 'gateway' : null;
  return null;
}

export function decide(
  policy: CompiledPolicy | null,
  peer: WorkloadId,
  method: string,
  target: string,
  headers: Record<string, string | string[] | undefined>,
): PolicyDecision {
  const callerLabel = peer.kind === 'service' ? peer.service : peer.kind === 'gateway' ? `gateway:${peer.zone}` : peer.kind;
  if (!policy) return { allow: false, reason: 'no_policy', caller: callerLabel };
  for (const h of IDENTITY_HEADERS) if (headers[h] !== undefined) return { allow: false, reason: 'identity_header', caller: callerLabel };
  for (const h of METHOD_OVERRIDE_HEADERS) if (headers[h] !== undefined) return { allow: false, reason: 'method_override', caller: callerLabel };
  const caller = callerOf(peer, policy);
  const edges = caller === null ? undefined : policy.edges.get(caller);
  if (!edges) return { allow: false, reason: 'no_edge', caller: callerLabel };
  const path = canonicalPath(target);
  if (path === null) return { allow: false, reason: 'ambiguous_path', caller: callerLabel };
  let methodSeen = false;
  for (const edge of edges) {
    if (!edge.methods.has(method)) continue;
    methodSeen = true;
    if (edge.exact.has(path)) return { allow: true, caller: callerLabel };
    for (const prefix of edge.prefixes) if (path === prefix || path.startsWith(prefix + '/') || prefix === '') return { allow: true, caller: callerLabel };
  }
  return { allow: false, reason: methodSeen ? 'path_not_allowed' : 'method_not_allowed', caller: callerLabel };
}
