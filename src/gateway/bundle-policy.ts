// A gateway that follows the control plane enforces its zone as its bundle
// says (routes, policies, authentication, failure limits, trusted zones), not
// as its own copy of the topology file does; the file still gives what a
// bundle does not carry (services' upstream settings, contract documents).
// Without a bundle in force it serves no route at all: the state is closed and
// every request is refused (bundle_unavailable), and /readyz says why.
import type { LoadedTopology } from '../topology/load.ts';
import type { ZoneConfig } from '../topology/schema.ts';
import type { VerifiedBundle } from '../policy/index.ts';

/** The gateway part of a bundle (see policy/compile-bundles.ts). */
interface GatewayPolicy {
  zone: string;
  gateway: ZoneConfig['gateway'];
  routes: ZoneConfig['routes'];
  policies: ZoneConfig['policies'];
  authentication: ZoneConfig['authentication'];
  authFailures: ZoneConfig['authFailures'];
  trustedZones: string[];
  ingress?: ZoneConfig['ingress'];
  ingressCallers: string[];
}

export interface EffectiveTopology {
  loaded: LoadedTopology;
  /** Why every request is refused; undefined: the routes are in force. */
  closed?: string;
  /** The bundle revision in force (0: none, or the gateway enforces its file). */
  revision: number;
  /** From the bundle: the SPIFFE IDs a locked ingress admits, and the certificates revoked. Undefined: from the file and the state dir. */
  ingressCallers?: readonly string[];
  revokedSerials?: ReadonlySet<string>;
}

function withZone(loaded: LoadedTopology, zone: string, patch: Partial<ZoneConfig>): LoadedTopology {
  const zones = loaded.topology.zones;
  return { ...loaded, topology: { ...loaded.topology, zones: { ...zones, [zone]: { ...zones[zone], ...patch } } } };
}

/** What a gateway following bundles enforces: the bundle's zone, or no route at all. */
export function effectiveTopology(loaded: LoadedTopology, zone: string, bundle: VerifiedBundle | undefined): EffectiveTopology {
  if (!bundle) return { loaded: withZone(loaded, zone, { routes: [] }), closed: 'no valid policy bundle is in force', revision: 0 };
  const p = bundle.bundle.policy as unknown as GatewayPolicy;
  if (bundle.bundle.kind !== 'gateway' || p.zone !== zone)
    return { loaded: withZone(loaded, zone, { routes: [] }), closed: `the bundle is not for the gateway of ${zone}`, revision: 0 };
  const own = loaded.topology.zones[zone];
  return {
    loaded: withZone(loaded, zone, {
      gateway: p.gateway,
      routes: p.routes,
      policies: p.policies,
      authentication: p.authentication,
      authFailures: p.authFailures,
      ingress: p.ingress,
      ...(own?.authority ? { authority: { ...own.authority, trustedZones: p.trustedZones } } : {}),
    }),
    revision: bundle.revision,
    ingressCallers: p.ingressCallers ?? [],
    revokedSerials: new Set(bundle.bundle.decisions.revokedSerials),
  };
}
