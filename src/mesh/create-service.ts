// createService: an HTTPS server for one service of the topology. Every
// connection must present an X509-SVID from the trust domain; the caller is
// read from that verified certificate only (never from headers) and checked
// against the service's `allow` edges before the handler runs. The gateway's
// propagated identity token (x-gatehouse-identity), when present, must verify
// with `aud` = this service. Every refusal is answered (or the connection
// closed), counted per peer and logged as a security event.
import https from 'node:https';
import { tlsPolicy } from '../shared/tls-policy.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { Registry, Counter } from 'prom-client';
import { jwtVerify, type JWTPayload, type JWTVerifyGetKey, type CryptoKey as JoseKey, type KeyObject } from 'jose';
import type { Topology } from '../topology/schema.ts';
import { parseListen } from '../topology/schema.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { WorkloadIdentity } from '../pki/workload-identity.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import type { RevocationSource } from '../pki/revocation-feed.ts';
import { serviceSpiffeId, type WorkloadId } from '../pki/spiffe-id.ts';
import { compilePolicy, decide, type CompiledPolicy } from './policy.ts';
import { topologyWithPolicy, type MeshPolicySource } from './policy-source.ts';
import type { EventFields } from '../monitor/event.ts';
import { continueTrace, type TraceContext } from '../shared/trace-context.ts';
import { verifyPeer, type VerifiedPeer } from './lib/peer.ts';
import { Forbidden, Ambiguous, Unauthorized } from './errors.ts';
import { GatehouseError } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { listen } from '../shared/listen.ts';

export const IDENTITY_TOKEN_HEADER = 'x-gatehouse-identity';

export interface Caller {
  spiffeId: string;
  kind: WorkloadId['kind'];
  zone?: string;
  /** The service name, or `gateway`. */
  name: string;
}

export interface EndUser {
  sub: string;
  claims: JWTPayload;
}

export interface RequestContext {
  caller: Caller;
  user?: EndUser;
  requestId: string;
  /** The W3C trace this request belongs to (continued from its traceparent, or new): pass it to createClient's requests. */
  trace: TraceContext;
}

export type MeshHandler = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext) => unknown;

export interface CreateServiceOptions {
  name: string;
  topology: Topology;
  /** This service's certificate: fixed, or managed (renewed and swapped in without dropping connections). */
  identity: WorkloadIdentity | IdentityManager;
  handler: MeshHandler;
  /**
   * Where revoked serials come from (createRevocationFeed / localRevocations).
   * `'none'` disables revocation checks and must be chosen explicitly.
   */
  revocations: RevocationSource | 'none';
  /** Keys of the gateway's identity tokens; absent: a request carrying one is refused. */
  identityToken?: { keys: JWTVerifyGetKey | JoseKey | KeyObject | Uint8Array; issuer?: string | string[]; algorithms?: string[] };
  listen?: string;
  clock?: Clock;
  logger?: Logger;
  registry?: Registry;
  /** Idle keep-alive timeout in ms (default 5000). */
  keepAliveTimeoutMs?: number;
  /**
   * Edges from the control plane (meshPolicyFromBundles): they replace the
   * topology's `allow` of this service, and with none in force every request
   * is refused. Absent: the topology's edges.
   */
  policy?: MeshPolicySource;
  /** Security events for the control plane (every refusal, as edge_denied); absent: none are sent. */
  events?: (fields: EventFields) => void;
}

export interface MeshService {
  url: string;
  server: https.Server;
  registry: Registry;
  /** Replace the topology (policy reload); a topology without this service denies everything. */
  setTopology(topology: Topology | undefined): void;
  close(): Promise<void>;
}

const peers = new WeakMap<TLSSocket, VerifiedPeer>();

export async function createService(options: CreateServiceOptions): Promise<MeshService> {
  const clock = options.clock ?? systemClock;
  const log = (options.logger ?? createLogger({ name: 'mesh' })).child({ component: 'mesh', service: options.name });
  const trustDomain = options.topology.trustDomain;
  let topology: Topology | undefined = options.topology;
  const source = options.policy;
  const compile = (): CompiledPolicy | null => {
    if (!topology || (source && !source.current())) return null;
    return compilePolicy(topologyWithPolicy(topology, options.name, source), options.name);
  };
  let policy = compile();
  // services quarantined by the control plane: they reach nobody and nobody reaches them
  let quarantined: ReadonlyMap<string, number> = source?.current()?.quarantined ?? new Map();
  const isQuarantined = (name: string) => quarantined.size > 0 && (quarantined.get(name) ?? 0) > clock.now();
  const explainNone = () =>
    source && topology?.services[options.name]
      ? log.error({ event: 'security', kind: 'mesh_no_policy', revision: source.revision() }, 'no policy bundle in force; every request is refused')
      : log.error({ event: 'security', kind: 'mesh_no_policy' }, 'the topology has no such service; every request is refused');
  if (!policy) explainNone();
  const unsubscribe = source?.subscribe(() => {
    policy = compile();
    quarantined = source.current()?.quarantined ?? new Map();
    if (policy) log.info({ revision: source.revision() }, 'policy bundle in force');
    else explainNone();
  });
  const revocations = options.revocations === 'none' ? null : options.revocations;
  const selfId = serviceSpiffeId(trustDomain, options.topology.services[options.name]?.zone ?? 'none', options.name);

  const registry = options.registry ?? new Registry();
  const requests = new Counter({
    name: 'gatehouse_mesh_requests_total',
    help: 'Requests reaching a mesh service, by caller and outcome',
    labelNames: ['service', 'caller', 'outcome'] as const,
    registers: [registry],
  });
  const denials = new Counter({
    name: 'gatehouse_mesh_denials_total',
    help: 'Requests and connections refused by a mesh service, by caller and reason',
    labelNames: ['service', 'caller', 'reason'] as const,
    registers: [registry],
  });

  const allowedByCaller = new Map<string, { inc(): void }>();
  const countAllowed = (caller: string) => {
    let child = allowedByCaller.get(caller);
    if (!child) allowedByCaller.set(caller, (child = requests.labels({ service: options.name, caller, outcome: 'allowed' })));
    child.inc();
  };
  const deny = (reason: string, caller: string, fields: Record<string, unknown>) => {
    denials.inc({ service: options.name, caller, reason });
    options.events?.({
      type: 'edge_denied',
      code: reason,
      peer: typeof fields.peer === 'string' ? fields.peer : caller,
      source: typeof fields.remote === 'string' ? fields.remote : undefined,
      method: typeof fields.method === 'string' ? fields.method : undefined,
      path: typeof fields.path === 'string' ? fields.path : undefined,
    });
    log.warn({ event: 'security', kind: 'mesh_denied', reason, caller, ...fields }, 'mesh request refused');
  };

  const manager = isManager(options.identity) ? options.identity : undefined;
  const id = () => (manager ? manager.current() : (options.identity as WorkloadIdentity));
  const tlsOptions = () => ({
    key: id().keyPem,
    cert: id().certPem,
    ca: id().bundlePem,
    requestCert: true,
    // OpenSSL verifies the chain; the connection is then closed here (not in the
    // handshake) so that every refusal is counted with its reason.
    rejectUnauthorized: false,
    ...tlsPolicy(),
  });
  const server = https.createServer({
    ...tlsOptions(),
    keepAliveTimeout: options.keepAliveTimeoutMs ?? 5000,
    headersTimeout: 10_000,
    requestTimeout: 30_000,
  });
  const onRotated = () => {
    server.setSecureContext(tlsOptions());
    log.info({ event: 'certificate_rotated', serial: id().serial, notAfter: id().notAfter }, 'certificate rotated');
  };
  manager?.on('rotated', onRotated);

  server.on('tlsClientError', (error: Error & { code?: string }, socket: TLSSocket) => {
    deny('handshake_failed', 'unknown', { remote: socket.remoteAddress, tls: error.code });
  });
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const result = verifyPeer(socket, { trustDomain, topology, now: clock.now(), revocations, purpose: 'client' });
    if (!result.ok) {
      deny(result.reason, 'unknown', { remote: socket.remoteAddress });
      socket.destroy();
      return;
    }
    peers.set(socket, result.peer);
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const requestId = randomUUID();
    const socket = req.socket as TLSSocket;
    const peer = peers.get(socket);
    // Built only for a refusal: the allowed path stays allocation-light.
    const fieldsOf = () => ({ requestId, method: req.method, path: (req.url ?? '').split('?')[0].slice(0, 256), remote: socket.remoteAddress });
    if (!peer) {
      deny('unverified_connection', 'unknown', fieldsOf());
      writeProblem(res, Forbidden(true), requestId);
      socket.destroy();
      return;
    }
    const label = labelOf(peer.id);
    // Re-checked per request so a long-lived connection cannot outlive its certificate.
    if (clock.now() > peer.notAfter || (revocations && revocations.isRevoked(peer.serial))) {
      deny(clock.now() > peer.notAfter ? 'expired' : 'revoked', label, { ...fieldsOf(), peer: peer.id.uri, serial: peer.serial });
      writeProblem(res, Forbidden(true), requestId);
      req.on('end', () => socket.destroy());
      req.resume();
      return;
    }
    if (isQuarantined(options.name) || (peer.id.kind === 'service' && isQuarantined(peer.id.service))) {
      requests.inc({ service: options.name, caller: label, outcome: 'denied' });
      deny('quarantined', label, { ...fieldsOf(), peer: peer.id.uri });
      writeProblem(res, new GatehouseError('quarantined', 'A service on this call is quarantined.'), requestId);
      req.resume();
      return;
    }
    const decision = decide(policy, peer.id, req.method ?? '', req.url ?? '', req.headers);
    if (!decision.allow) {
      requests.inc({ service: options.name, caller: label, outcome: 'denied' });
      deny(decision.reason, label, { ...fieldsOf(), peer: peer.id.uri });
      const error = decision.reason === 'ambiguous_path' ? Ambiguous() : Forbidden();
      writeProblem(res, error, requestId);
      req.resume();
      return;
    }
    const caller: Caller = {
      spiffeId: peer.id.uri,
      kind: peer.id.kind,
      zone: peer.id.kind === 'ca' ? undefined : peer.id.zone,
      name: peer.id.kind === 'service' ? peer.id.service : peer.id.kind,
    };
    const token = req.headers[IDENTITY_TOKEN_HEADER];
    const run = async () => {
      let user: EndUser | undefined;
      if (token !== undefined) {
        user = await verifyIdentityToken(token, options, [selfId, options.name], clock).catch((error: unknown) => {
          throw new GatehouseError('unauthorized', Unauthorized().message, { cause: error });
        });
      }
      countAllowed(label);
      const t = req.headers.traceparent;
      const state = req.headers.tracestate;
      const trace = continueTrace(typeof t === 'string' ? t : undefined, typeof state === 'string' ? state : undefined);
      await options.handler(req, res, { caller, user, requestId, trace });
    };
    run().catch((error: unknown) => {
      if (error instanceof GatehouseError) {
        requests.inc({ service: options.name, caller: label, outcome: 'denied' });
        deny('identity_token_invalid', label, { ...fieldsOf(), peer: peer.id.uri, cause: (error.cause as Error)?.message });
        writeProblem(res, error, requestId);
        req.resume();
        return;
      }
      log.error({ requestId, err: error }, 'handler failed');
      writeProblem(res, new GatehouseError('internal', 'The service failed to handle the request.'), requestId);
    });
  });

  const { url } = await listen(server, options.listen ?? '127.0.0.1:0', 'https');
  return {
    url,
    server,
    registry,
    setTopology(next) {
      topology = next;
      policy = compile();
      if (!policy) explainNone();
    },
    async close() {
      manager?.off('rotated', onRotated);
      unsubscribe?.();
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closing;
    },
  };
}

function isManager(x: WorkloadIdentity | IdentityManager): x is IdentityManager {
  return typeof (x as IdentityManager).current === 'function';
}

function labelOf(id: WorkloadId): string {
  return id.kind === 'service' ? id.service : id.kind === 'gateway' ? `gateway:${id.zone}` : id.kind;
}

async function verifyIdentityToken(
  header: string | string[],
  options: CreateServiceOptions,
  audience: string[],
  clock: Clock,
): Promise<EndUser> {
  if (!options.identityToken) throw new Error('no identity token keys configured');
  if (typeof header !== 'string' || header.length > 8192) throw new Error('malformed identity token header');
  const { payload } = await jwtVerify(header, options.identityToken.keys as JWTVerifyGetKey, {
    audience,
    issuer: options.identityToken.issuer,
    algorithms: options.identityToken.algorithms ?? ['ES256', 'EdDSA', 'RS256', 'PS256'],
    currentDate: new Date(clock.now()),
    requiredClaims: ['exp', 'sub'],
  });
  return { sub: payload.sub!, claims: payload };
}
