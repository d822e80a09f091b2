// Where a mesh service's edges and egress come from when it follows the
// control plane: its signed bundle (`allow`, `egress`), not its copy of the
// topology file. With no bundle in force (none yet, or the last one expired)
// the service admits no caller and calls nobody: fail closed.
import path from 'node:path';
import type { Topology } from '../topology/schema.ts';
import type { Logger } from '../shared/logger.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import { openPepBundles, createEventShipper, type BundleClient, type PepBundleSource } from '../control/index.ts';
import type { EventFields } from '../monitor/event.ts';

type ServiceConfig = Topology['services'][string];

export interface MeshPolicy {
  allow: ServiceConfig['allow'];
  egress: ServiceConfig['egress'];
  /** Quarantined services (gatehouse quarantine --service) → when the quarantine ends (ms): they lose every edge, in and out. */
  quarantined?: ReadonlyMap<string, number>;
}

export interface MeshPolicySource {
  /** The service's edges and egress in force; undefined: refuse everything. */
  current(): MeshPolicy | undefined;
  /** Told when what current() answers changed; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** The bundle revision in force (0: none). */
  revision(): number;
}

/** A mesh service's policy from its bundles (createBundleClient / openPepBundles). */
export function meshPolicyFromBundles(client: BundleClient, service: string): MeshPolicySource {
  // read once per bundle: current() is asked on every outbound call
  let seen: object | undefined;
  let policy: MeshPolicy | undefined;
  return {
    current() {
      const b = client.current();
      if (b !== seen) {
        seen = b;
        const p = b?.bundle.policy as { service?: string; allow?: MeshPolicy['allow']; egress?: MeshPolicy['egress'] } | undefined;
        policy =
          !b || (b.bundle.kind !== 'service' && b.bundle.kind !== 'sidecar') || p?.service !== service
            ? undefined
            : {
                allow: p.allow ?? [],
                egress: p.egress ?? [],
                quarantined: new Map(b.bundle.decisions.quarantines.filter((q) => q.scope === 'service').map((q) => [q.value, Date.parse(q.until)] as const)),
              };
      }
      return policy;
    },
    subscribe: (listener) => client.subscribe(() => listener()),
    revision: () => client.revision(),
  };
}

/** When `service`'s quarantine ends (ms since the epoch), or 0 when it is not quarantined. */
export function quarantinedUntil(source: MeshPolicySource | undefined, service: string): number {
  return source?.current()?.quarantined?.get(service) ?? 0;
}

/**
 * The topology as the service enforces it: its own entry with the source's
 * edges and egress, or without any when the source has none in force.
 */
export function topologyWithPolicy(topology: Topology, service: string, source: MeshPolicySource | undefined): Topology {
  const own = topology.services[service];
  if (!source || !own) return topology;
  const policy = source.current() ?? { allow: [], egress: [] };
  return { ...topology, services: { ...topology.services, [service]: { ...own, allow: policy.allow, egress: policy.egress } } };
}

export interface OpenMeshPolicyOptions extends PepBundleSource {
  service: string;
  spiffeId: string;
  identity: IdentityManager;
  trustDomain: string;
  /** PEM of the trust domain's root(s). */
  bundlePem: string;
  /** The state dir: the last verified bundle is kept in <stateDir>/mesh/<service> (0600). */
  stateDir: string;
  logger: Logger;
}

/** A service's or sidecar's policy from `--control` / `--bundles`; undefined when given neither (the topology's edges). */
export async function openMeshPolicy(
  o: OpenMeshPolicyOptions,
): Promise<{ source: MeshPolicySource; events?: (fields: EventFields) => void; close(): Promise<void> } | undefined> {
  const identity = () => ({ spiffeId: o.spiffeId, certPem: o.identity.current().certPem, keyPem: o.identity.current().keyPem });
  // following the control plane: the service's refusals go to it as security events
  const shipper =
    o.control !== undefined ? createEventShipper({ url: new URL(o.control).origin, identity, trustDomain: o.trustDomain, caBundle: o.bundlePem }) : undefined;
  const client = await openPepBundles({
    control: o.control,
    bundles: o.bundles,
    identity,
    trustDomain: o.trustDomain,
    caBundle: o.bundlePem,
    stateDir: path.join(o.stateDir, 'mesh', o.service),
    logger: o.logger,
    onRefused: (code) => shipper?.emit({ type: 'bundle_refused', code }),
  });
  return (
    client && {
      source: meshPolicyFromBundles(client, o.service),
      events: shipper ? (fields) => shipper.emit(fields) : undefined,
      close: async () => {
        await client.close();
        await shipper?.close();
      },
    }
  );
}
