// The contract of a service module that `gatehouse up` runs (`run:` in the
// topology): it exports `start(options)` and answers `{ url, close }`.
//
// Mesh mode (the default): `options` is ServiceStartOptions. The module serves
// with createService (mTLS, the topology's allow edges) and calls out with
// createClient; the url is https. Plain mode (`sidecar: true`): `options` is
// PlainStartOptions, the module serves plain HTTP on the Unix socket of its run
// folder (listenForSidecar), admits only requests that carry the sidecar's
// shared secret (createSidecarGuard), and `gatehouse sidecar` does the rest.
import type { Logger } from '../shared/logger.ts';
import type { Topology } from '../topology/schema.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import type { RevocationSource } from '../pki/revocation-feed.ts';
import type { CreateServiceOptions } from './create-service.ts';
import type { AuthorityTokens } from './authority-tokens.ts';
import type { MeshPolicySource } from './policy-source.ts';
import type { EventFields } from '../monitor/event.ts';

export interface ServiceStartOptions {
  host: string;
  port: number;
  service: string;
  topology: Topology;
  /** This service's certificate, renewed before it expires (event `rotated`). */
  identity: IdentityManager;
  /** The CA's revocation list, kept fresh. */
  revocations: RevocationSource;
  /** Keys and issuer of the zone gateway's identity tokens (x-gatehouse-identity), for createService. */
  identityToken: NonNullable<CreateServiceOptions['identityToken']>;
  /** Where the topology's services and zone gateways (`gateway:<zone>`) answer, for createClient. */
  resolve(target: string): string | undefined;
  /** PEM the TLS certificates of the gateways and authorities chain to. */
  edgeCa: string;
  /**
   * The zones' authorities: issuer and the audience of the zone's API, and,
   * where this service is a client of that authority, its token source
   * (for createClient's `authorities`).
   */
  authorities: Record<string, { issuer: string; audience: string; tokens?: AuthorityTokens }>;
  logger: Logger;
  /**
   * The service's edges and egress from the control plane, when `gatehouse up`
   * runs one: pass it to createService and createClient (serviceOptions does
   * for createService). With none in force they refuse everything.
   */
  policy?: MeshPolicySource;
  /** Security events for the control plane, when `gatehouse up` runs one (serviceOptions passes it to createService). */
  events?: (fields: EventFields) => void;
}

export interface PlainStartOptions {
  /** Loopback host and port: used only when `socketPath` is absent (an explicitly configured loopback upstream). */
  host: string;
  port: number;
  service: string;
  /** The Unix socket to serve on (0600, in the service's 0700 run folder): listenForSidecar(server, options). */
  socketPath?: string;
  /** The file holding the sidecar's shared secret: createSidecarGuard({ secretFile }) refuses what did not come through the sidecar. */
  sidecarSecretFile: string;
}

export interface RunningServiceModule {
  url: string;
  close(): Promise<void>;
}

/** The createService options every service module passes on unchanged from `gatehouse up`. */
export function serviceOptions(o: ServiceStartOptions) {
  return {
    name: o.service,
    topology: o.topology,
    identity: o.identity,
    revocations: o.revocations,
    identityToken: o.identityToken,
    logger: o.logger,
    policy: o.policy,
    events: o.events,
    listen: `${o.host}:${o.port}`,
  };
}
