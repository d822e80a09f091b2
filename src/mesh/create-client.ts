// createClient: how a service calls out. The egress allow-list of the topology
// is checked before any socket opens; calls to services use this service's own
// certificate, the pinned trust bundle, and require the server to present
// exactly the SPIFFE ID of the service named (not merely any valid
// certificate). Calls into another zone go through that zone's gateway
// (`gateway:<zone>`): its TLS certificate is checked against `gatewayCa` and
// the host name, and this service presents its own certificate. Calls to
// outside host:port use ordinary public TLS with hostname checks.
// Certificates rotate without dropping in-flight requests.
//
// Tokens: with `authorities[zone]`, a call into that zone carries a token of
// that zone's authority — the user's token exchanged for one naming this
// service as actor when the request is `onBehalfOf` a user, else this
// service's own (client credentials); cached until 80% of their lifetime.
import { readBody } from '../shared/body.ts';
import https from 'node:https';
import type { PeerCertificate } from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import { Counter, Registry } from 'prom-client';
import type { Topology } from '../topology/schema.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { WorkloadIdentity } from '../pki/workload-identity.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import type { RevocationSource } from '../pki/revocation-feed.ts';
import { verifySvid } from '../pki/verify-svid.ts';
import { serviceSpiffeId } from '../pki/spiffe-id.ts';
import { EgressDenied } from './errors.ts';
import { GatehouseError } from '../shared/errors.ts';
import type { ServiceTokenCache } from './service-token-cache.ts';
import { TokenRequestError, type AuthorityTokens } from './authority-tokens.ts';
import { quarantinedUntil, topologyWithPolicy, type MeshPolicySource } from './policy-source.ts';
import type { TraceContext } from '../shared/trace-context.ts';

export interface CreateClientOptions {
  name: string;
  topology: Topology;
  identity: WorkloadIdentity | IdentityManager;
  /** Base URL (https://host:port) of a service of the topology; undefined: unknown. */
  resolve: (service: string) => string | undefined;
  revocations: RevocationSource | 'none';
  /** Service tokens from the zone's authority, sent as `Authorization: Bearer`; absent: none. */
  tokens?: ServiceTokenCache;
  /**
   * Per zone, this service's client at that zone's authority (createAuthorityTokens):
   * calls to that zone's services and gateway carry its tokens. Takes precedence over `tokens`.
   */
  authorities?: Record<string, AuthorityTokens>;
  /** PEM the zone gateways' TLS certificates chain to (the dev CA under `gatehouse up`); absent: the system's CAs. */
  gatewayCa?: string;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  /** Keep-alive sockets per target (default 64). */
  maxSockets?: number;
  /** Egress from the control plane (meshPolicyFromBundles); with none in force no call goes out. Absent: the topology's. */
  policy?: MeshPolicySource;
}

export interface MeshRequest {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  timeoutMs?: number;
  /**
   * A user's access token: the call carries it exchanged (RFC 8693) at the
   * target zone's authority for a token naming the user as subject and this
   * service as actor. Needs `authorities[zone]`; never sent as is.
   */
  onBehalfOf?: string;
  /** The trace the call belongs to (RequestContext.trace of the request being served): sent as traceparent/tracestate. */
  trace?: TraceContext;
}

export interface MeshResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface MeshClient {
  /** `target` is a service name of the topology, `gateway:<zone>`, or an outside `host:port`. */
  request(target: string, request?: MeshRequest): Promise<MeshResponse>;
  /** True when the egress allow-list lets this service call `target`. */
  mayCall(target: string): boolean;
  registry: Registry;
  close(): void;
}

const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/;
const GATEWAY = /^gateway:([a-z][a-z0-9-]{0,62})$/;
const MAX_BODY = 64 * 1024 * 1024;

export function createClient(options: CreateClientOptions): MeshClient {
  const clock = options.clock ?? systemClock;
  const log = (options.logger ?? createLogger({ name: 'mesh' })).child({ component: 'mesh-client', service: options.name });
  const td = options.topology.trustDomain;
  // no policy: no egress
  const egressOf = () => new Set(topologyWithPolicy(options.topology, options.name, options.policy).services[options.name]?.egress ?? []);
  let egress = egressOf();
  const unsubscribe = options.policy?.subscribe(() => (egress = egressOf()));
  const revocations = options.revocations === 'none' ? null : options.revocations;
  const registry = options.registry ?? new Registry();
  const calls = new Counter({
    name: 'gatehouse_mesh_client_requests_total',
    help: 'Outbound calls of a mesh client, by target and outcome',
    labelNames: ['service', 'target', 'outcome'] as const,
    registers: [registry],
  });
  const manager = typeof (options.identity as IdentityManager).current === 'function' ? (options.identity as IdentityManager) : undefined;
  const id = () => (manager ? manager.current() : (options.identity as WorkloadIdentity));

  let agents = new Map<string, https.Agent>();
  const retire = (old: Map<string, https.Agent>) => {
    // In-flight requests finish on the old agents; their idle sockets go after a grace period.
    const t = setTimeout(() => old.forEach((a) => a.destroy()), 30_000);
    t.unref();
  };
  const onRotated = () => {
    const old = agents;
    agents = new Map();
    retire(old);
  };
  manager?.on('rotated', onRotated);

  const serviceAgent = (service: string) => {
    let agent = agents.get(service);
    if (!agent) {
      const expected = serviceSpiffeId(td, options.topology.services[service].zone, service);
      agent = new https.Agent({
        keepAlive: true,
        maxSockets: options.maxSockets ?? 64,
        cert: id().certPem,
        key: id().keyPem,
        ca: id().bundlePem,
        minVersion: 'TLSv1.2',
        checkServerIdentity: (_host: string, cert: PeerCertificate) => {
          const d = verifySvid(cert.raw, {
            trustDomain: td,
            now: clock.now(),
            purpose: 'server',
            isRevoked: revocations ? (s) => revocations.isRevoked(s) : undefined,
          });
          if (!d.ok) return Object.assign(new Error(`server certificate refused (${d.reason})`), { code: 'ERR_MESH_SERVER_IDENTITY' });
          if (d.id.uri !== expected)
            return Object.assign(new Error(`server is ${d.id.uri}, expected ${expected}`), { code: 'ERR_MESH_SERVER_IDENTITY' });
          return undefined;
        },
      });
      agents.set(service, agent);
    }
    return agent;
  };
  const gatewayAgent = (target: string) => {
    let agent = agents.get(target);
    if (!agent) {
      agent = new https.Agent({
        keepAlive: true,
        maxSockets: options.maxSockets ?? 64,
        // a gateway that asks for a client certificate gets this service's X509-SVID
        cert: id().certPem,
        key: id().keyPem,
        ca: options.gatewayCa,
        minVersion: 'TLSv1.2',
      });
      agents.set(target, agent);
    }
    return agent;
  };
  const externalAgent = new https.Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 64, minVersion: 'TLSv1.2' });

  function mayCall(target: string): boolean {
    if (!egress.has(target)) return false;
    // quarantined by the control plane: no call goes out until it ends
    if (quarantinedUntil(options.policy, options.name) > clock.now()) return false;
    if (HOST_PORT.test(target)) return true;
    const gw = GATEWAY.exec(target);
    if (gw) return options.topology.zones[gw[1]]?.gateway !== undefined;
    return options.topology.services[target] !== undefined;
  }

  /** The token a call into `zone` carries, if any. */
  async function tokenFor(zone: string, req: MeshRequest): Promise<{ token: string; source: AuthorityTokens | ServiceTokenCache } | undefined> {
    const authority = options.authorities?.[zone];
    if (req.onBehalfOf !== undefined) {
      if (!authority) throw new GatehouseError('token_unavailable', `this service has no client at the ${zone} zone's authority`);
      try {
        return { token: await authority.exchange(req.onBehalfOf), source: authority };
      } catch (error) {
        if (error instanceof TokenRequestError && (error.oauthError === 'invalid_grant' || error.oauthError === 'invalid_scope'))
          throw new GatehouseError('unauthorized', 'The user token was not accepted.', { cause: error });
        throw new GatehouseError('token_unavailable', `no token from the ${zone} zone's authority`, { cause: error });
      }
    }
    if (authority) {
      try {
        return { token: await authority.serviceToken(), source: authority };
      } catch (error) {
        throw new GatehouseError('token_unavailable', `no token from the ${zone} zone's authority`, { cause: error });
      }
    }
    if (options.tokens) return { token: await options.tokens.get(), source: options.tokens };
    return undefined;
  }

  async function request(target: string, req: MeshRequest = {}): Promise<MeshResponse> {
    if (!mayCall(target)) {
      calls.inc({ service: options.name, target: options.topology.services[target] || GATEWAY.test(target) ? target : 'other', outcome: 'egress_denied' });
      log.warn({ event: 'security', kind: 'mesh_egress_denied', target: target.slice(0, 256) }, 'egress refused');
      throw EgressDenied(target.slice(0, 256));
    }
    const path = req.path ?? '/';
    if (!path.startsWith('/') || path.startsWith('//')) throw new GatehouseError('ambiguous_request', 'path must be origin-form');
    let url: URL;
    let agent: https.Agent;
    let zone: string | undefined;
    const external = HOST_PORT.exec(target);
    const gateway = GATEWAY.exec(target);
    if (external) {
      url = new URL(`https://${target}${path}`);
      agent = externalAgent;
    } else {
      const base = options.resolve(target);
      if (!base) throw new GatehouseError('bad_gateway', `no address known for ${target}`);
      url = new URL(path, base);
      if (url.protocol !== 'https:') throw new GatehouseError('bad_gateway', 'services are called over https only');
      zone = gateway ? gateway[1] : options.topology.services[target].zone;
      agent = gateway ? gatewayAgent(target) : serviceAgent(target);
    }
    if (external && req.onBehalfOf !== undefined)
      throw new GatehouseError('token_unavailable', 'user tokens are exchanged only for calls inside the trust domain');
    const headers: Record<string, string> = { ...req.headers };
    // W3C trace context: inside the trust domain only (never to an outside endpoint)
    if (req.trace && !external) {
      headers.traceparent = req.trace.traceparent;
      if (req.trace.tracestate !== undefined) headers.tracestate = req.trace.tracestate;
    }
    const token = zone === undefined ? undefined : await tokenFor(zone, req);
    if (token) headers.authorization = `Bearer ${token.token}`;
    const body = req.body === undefined ? undefined : Buffer.from(req.body);
    if (body) headers['content-length'] = String(body.length);
    const label = external ? 'external' : target;
    try {
      const res = await send(url, agent, req.method ?? 'GET', headers, body, req.timeoutMs ?? 30_000);
      calls.inc({ service: options.name, target: label, outcome: String(res.status) });
      // a token the target no longer accepts is not used again
      if (res.status === 401 && token) {
        if ('exchange' in token.source) token.source.invalidate(token.token);
        else token.source.invalidate();
      }
      return res;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ERR_MESH_SERVER_IDENTITY') {
        calls.inc({ service: options.name, target: label, outcome: 'server_identity_refused' });
        log.warn({ event: 'security', kind: 'mesh_server_identity_refused', target: label, cause: (error as Error).message }, 'server identity refused');
        throw new GatehouseError('upstream_identity_mismatch', `${target} did not prove its identity`, { cause: error });
      }
      calls.inc({ service: options.name, target: label, outcome: 'error' });
      throw new GatehouseError('bad_gateway', `the call to ${target} failed`, { cause: error });
    }
  }

  return {
    request,
    mayCall,
    registry,
    close() {
      manager?.off('rotated', onRotated);
      unsubscribe?.();
      agents.forEach((a) => a.destroy());
      externalAgent.destroy();
    },
  };
}

function send(url: URL, agent: https.Agent, method: string, headers: Record<string, string>, body: Buffer | undefined, timeoutMs: number): Promise<MeshResponse> {
  return new Promise((resolve, reject) => {
    const r = https.request(url, { method, agent, headers, timeout: timeoutMs }, (res) => {
      // the one bounded reader: an answer over the limit (declared or streamed) is cut off and refused
      readBody(res, MAX_BODY).then((body) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }), reject);
    });
    r.on('timeout', () => r.destroy(new Error('timed out')));
    r.on('error', reject);
    r.end(body);
  });
}
