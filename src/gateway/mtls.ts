// The gateway's own workload identity for mTLS to its zone's services: an
// X509-SVID issued by the trust-domain CA in the state dir, renewed at half
// its lifetime, and a connector per upstream that pins the trust bundle and
// requires the upstream's exact SPIFFE ID.
import { existsSync, readFileSync } from 'node:fs';
import { buildConnector } from 'undici';
import type { Topology } from '../topology/schema.ts';
import type { Logger } from '../shared/logger.ts';
import type { Clock } from '../shared/clock.ts';
import {
  issueWorkloadIdentity,
  bootstrapIdentity,
  createIdentityManager,
  gatewaySpiffeId,
  serviceSpiffeId,
  trustBundlePath,
  verifySvid,
  type IdentityManager,
  type WorkloadIdentity,
} from '../pki/index.ts';

export interface UpstreamTls {
  spiffeId: string;
  /** The certificate in force (renewed at half its lifetime). */
  identity(): WorkloadIdentity;
  /** An undici connector for `service` of this zone: our certificate, the pinned bundle, the service's exact ID. */
  connectorFor(service: string): buildConnector.connector;
  close(): void;
}

/** A gateway that does not run beside the CA (a pod): its certificate from the CA server, with a one-time join token. */
export interface GatewayBootstrap {
  caUrl: string;
  joinToken: string;
}

/**
 * The gateway identity, or undefined when the state dir has no trust bundle:
 * issued from the trust-domain CA in the state dir, or, with `bootstrap`,
 * from the CA server (the trust bundle alone in the state dir), renewed there.
 */
export async function openGatewayIdentity(
  stateDir: string,
  topology: Topology,
  zone: string,
  logger: Logger,
  clock: Clock,
  bootstrap?: GatewayBootstrap,
  /** Is an upstream's certificate revoked? Asked at every new connection (the bundle's list, else the CA's in the state dir). */
  isRevoked: (serial: string) => boolean = () => false,
): Promise<UpstreamTls | undefined> {
  if (!existsSync(trustBundlePath(stateDir))) return undefined;
  const td = topology.trustDomain;
  const spiffeId = gatewaySpiffeId(td, zone);
  const issue = () => issueWorkloadIdentity(stateDir, spiffeId, { topology, clock });
  const manager: IdentityManager = bootstrap
    ? createIdentityManager({
        initial: await bootstrapIdentity({ ...bootstrap, service: `gateway:${zone}`, trustDomain: td, bundlePem: readFileSync(trustBundlePath(stateDir), 'utf8') }),
        caUrl: bootstrap.caUrl,
        trustDomain: td,
        clock,
      })
    : createIdentityManager({ initial: await issue(), renew: issue, clock });
  manager.on('alert', (info: unknown) =>
    logger.error({ spiffe_id: spiffeId, info }, 'gateway certificate is close to expiry and could not be renewed'),
  );
  manager.on('rotated', () => logger.info({ spiffe_id: spiffeId }, 'gateway certificate renewed'));

  const build = (identity: WorkloadIdentity, expected: string) =>
    buildConnector({
      ca: identity.bundlePem,
      cert: identity.certPem,
      key: identity.keyPem,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      checkServerIdentity: (_host: string, peer: { raw: Buffer }) => {
        const decision = verifySvid(peer.raw, { trustDomain: td, now: clock.now(), purpose: 'server', isRevoked });
        if (!decision.ok) return new Error(`upstream certificate refused: ${decision.reason}`);
        if (decision.id.uri !== expected) return new Error(`upstream is ${decision.id.uri}, expected ${expected}`);
        return undefined;
      },
    } as buildConnector.BuildOptions);

  return {
    spiffeId,
    identity: () => manager.current(),
    connectorFor(service) {
      const expected = serviceSpiffeId(td, zone, service);
      let identity = manager.current();
      let connector = build(identity, expected);
      return (options, callback) => {
        // a renewed certificate is used for new connections; open ones keep theirs
        const now = manager.current();
        if (now !== identity) {
          identity = now;
          connector = build(identity, expected);
        }
        connector(options, callback);
      };
    },
    close: () => manager.close(),
  };
}
