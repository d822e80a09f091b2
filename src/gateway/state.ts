// A gateway's compiled configuration: everything the request path needs,
// built once per (re)load. In-flight requests keep the state they started with.
import { compileCidrs } from '../shared/address.ts';
import type { LoadedTopology } from '../topology/load.ts';
import type { GatewayConfig, ZoneConfig } from '../topology/schema.ts';
import { ConfigError } from '../topology/config-error.ts';
import { routeIssues } from './contracts.ts';
import { compileRoutes, type Router } from './router.ts';
import { Upstream } from './upstream.ts';
import type { Clock } from '../shared/clock.ts';
import type { UpstreamTls } from './mtls.ts';
import type { Logger } from '../shared/logger.ts';
import { provisionChain, type Chain } from './policies/chain.ts';
import { compileIngress, type CompiledIngress } from './ingress.ts';
import { compileQuarantines, type CompiledQuarantines } from './phases/quarantine.ts';
import type { Quarantine } from '../policy/index.ts';
import { gatewayCallers } from '../topology/resolve.ts';
import { serviceSpiffeId } from '../pki/spiffe-id.ts';
import type { SharedResources } from './policies/policy.ts';

export { normaliseAddress, compileCidrs } from '../shared/address.ts';

export interface GatewayState {
  generation: number;
  zone: string;
  zoneConfig: ZoneConfig;
  config: GatewayConfig;
  router: Router;
  upstreams: Map<string, Upstream>;
  /** Policy chain per route index; undefined: nothing to check. */
  chains: (Chain | undefined)[];
  trustDomain: string;
  isTrustedProxy(address: string): boolean;
  /** Security headers per frame-options setting, precomputed. */
  securityHeaders: Record<'DENY' | 'SAMEORIGIN' | 'off', Readonly<Record<string, string>>>;
  /** Why every request is refused (no valid policy bundle in force); undefined: serving. */
  closed?: string;
  /** The policy bundle revision this state enforces (0: the topology file, or none). */
  revision: number;
  /** How many certificate serials the bundle in force revokes (see BuildOptions.revokedSerials). */
  revokedSerials?: number;
  /** The zone's locked ingress (ingress.ts); undefined: any client that completes TLS. */
  ingress?: CompiledIngress;
  /** Quarantines of the control plane in force (phases/quarantine.ts); undefined: none. */
  quarantine?: CompiledQuarantines;
}

function securityHeaders(config: GatewayConfig, frame: 'DENY' | 'SAMEORIGIN' | 'off'): Record<string, string> {
  const h: Record<string, string> = {
    'x-content-type-options': 'nosniff',
    'referrer-policy': config.headers.referrerPolicy,
  };
  if (config.headers.hsts && !config.plaintext) h['strict-transport-security'] = 'max-age=31536000; includeSubDomains';
  if (frame !== 'off') {
    h['x-frame-options'] = frame;
    // an upstream's own Content-Security-Policy replaces this one (it is the page's to set)
    h['content-security-policy'] = frame === 'DENY' ? "frame-ancestors 'none'" : "frame-ancestors 'self'";
  }
  return h;
}

export interface BuildOptions {
  loaded: LoadedTopology;
  zone: string;
  stateDir: string;
  addresses: Readonly<Record<string, string>>;
  clock: Clock;
  logger: Logger;
  generation: number;
  shared: SharedResources;
  previous?: GatewayState;
  tls?: UpstreamTls;
  /** See GatewayState.closed. */
  closed?: string;
  revision?: number;
  /** SPIFFE IDs a locked ingress admits; absent: the topology's services whose egress names this gateway. */
  ingressCallers?: readonly string[];
  /** Is a client certificate revoked (the bundle's decisions, or the CA's list in the state dir)? */
  isRevoked?: (serial: string) => boolean;
  /** How many serials the bundle revokes: when it changes, upstream pools are rebuilt (their connections were checked when made). */
  revokedSerials?: number;
  /** The bundle's quarantines. */
  quarantines?: readonly Quarantine[];
}

export async function buildState(o: BuildOptions): Promise<GatewayState> {
  const { loaded, zone, addresses, clock, generation, previous, tls } = o;
  const zoneConfig = loaded.topology.zones[zone];
  if (!zoneConfig)
    throw new ConfigError([{ file: loaded.file, line: 1, column: 1, path: 'zones', message: `no zone ${JSON.stringify(zone)}` }]);
  const config = zoneConfig.gateway;
  if (!config)
    throw new ConfigError([
      { file: loaded.file, line: 1, column: 1, path: `zones.${zone}.gateway`, message: 'this zone has no gateway' },
    ]);
  const upstreams = new Map<string, Upstream>();
  for (const route of zoneConfig.routes) {
    if (upstreams.has(route.service)) continue;
    const service = loaded.topology.services[route.service];
    const origin = service.upstream ?? addresses[route.service];
    if (!origin)
      throw new ConfigError([
        {
          file: loaded.file,
          line: 1,
          column: 1,
          path: `services.${route.service}`,
          message: 'has no upstream address: set `upstream`, or start it with `gatehouse up`',
        },
      ]);
    const secure = origin.startsWith('https:');
    if (secure && !tls)
      throw new ConfigError([
        {
          file: loaded.file,
          line: 1,
          column: 1,
          path: `services.${route.service}`,
          message: 'an https upstream needs the trust-domain CA in the state dir (gatehouse ca init) for mTLS',
        },
      ]);
    const old = previous?.upstreams.get(route.service);
    // keep the warm pool when nothing about the upstream changed
    upstreams.set(
      route.service,
      old && old.origin === new URL(origin).origin && JSON.stringify(old.config) === JSON.stringify(service) && previous?.revokedSerials === o.revokedSerials
        ? old
        : new Upstream(route.service, origin, service, clock, secure ? tls!.connectorFor(route.service) : undefined),
    );
  }
  const trusted = compileCidrs(config.trustedProxies);
  const ctx = { topology: loaded, zone, stateDir: o.stateDir, clock, logger: o.logger, shared: o.shared };
  const chains: (Chain | undefined)[] = [];
  for (const [i, route] of zoneConfig.routes.entries()) {
    try {
      chains.push(await provisionChain(route, zoneConfig, ctx));
    } catch (error) {
      throw new ConfigError(routeIssues(loaded, zone, i, error));
    }
  }
  return {
    generation,
    zone,
    zoneConfig,
    config,
    router: compileRoutes(zoneConfig.routes),
    upstreams,
    chains,
    trustDomain: loaded.topology.trustDomain,
    isTrustedProxy: trusted,
    closed: o.closed,
    revision: o.revision ?? 0,
    revokedSerials: o.revokedSerials,
    ingress: compileIngress(
      zoneConfig.ingress,
      o.ingressCallers ?? gatewayCallers(loaded.topology, zone).map((n) => serviceSpiffeId(loaded.topology.trustDomain, loaded.topology.services[n].zone, n)),
      o.isRevoked ?? (() => false),
      zoneConfig,
    ),
    quarantine: compileQuarantines(o.quarantines ?? []),
    securityHeaders: {
      DENY: securityHeaders(config, 'DENY'),
      SAMEORIGIN: securityHeaders(config, 'SAMEORIGIN'),
      off: securityHeaders(config, 'off'),
    },
  };
}
