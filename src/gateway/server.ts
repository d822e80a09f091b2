// A zone gateway: the HTTPS listener (HTTP/1.1 and HTTP/2 by ALPN), an optional
// redirect-only plain listener, and the loopback admin listener. Lifecycle:
// load → build state → listen → serve (reload swaps the state) → close.
import type { IncomingMessage, RequestListener, Server, ServerOptions, ServerResponse } from 'node:http';
import { createServer } from '../shared/node-http.ts';
import https from 'node:https';
import http2 from 'node:http2';
import { watch, readFileSync, existsSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { collectDefaultMetrics } from 'prom-client';
import { loadTopology, type LoadedTopology } from '../topology/load.ts';
import { parseListen } from '../topology/schema.ts';
import { ConfigError } from '../topology/config-error.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { createLogger, createAccessLogger, type AccessLog, type Logger } from '../shared/logger.ts';
import { createTracer } from './tracing.ts';
import { createUsageEvents } from './usage-events.ts';
import { AmbiguousRequest, BadRequest, HeadersTooLarge, RequestTimeout, type GatehouseError } from '../shared/errors.ts';
import { writeProblem, writeRawProblem } from '../shared/problem.ts';
import { listen as listenOn } from '../shared/listen.ts';
import { normaliseAddress } from '../shared/address.ts';
import { buildState, type GatewayState } from './state.ts';
import { createMetrics, type GatewayMetrics } from './metrics.ts';
import { abortUpload, createHandler, createUpgradeHandler, wasRefused, type PipelineContext } from './pipeline.ts';
import { logUnparsed } from './phases/respond.ts';
import { normaliseHost } from './router.ts';
import { canonicalTarget } from './hygiene.ts';
import { loadTlsMaterial, secureOptions, type TlsMaterial } from './tls.ts';
import { createAdminServer } from './admin.ts';
import { openGatewayIdentity, type GatewayBootstrap } from './mtls.ts';
import { guardConnections } from './connections.ts';
import { createSharedResources } from './policies/policy.ts';
import type { FailureReason } from './upstream.ts';
import { createRateLimitMetrics, RATE_LIMIT_METRICS } from './policies/rate-limit/metrics.ts';
import { REVOKED_TOKEN_IDS } from './policies/policy.ts';
import { effectiveTopology } from './bundle-policy.ts';
import { type CompiledIngress, applyIngressTls, guardIngress } from './ingress.ts';
import { localRevocations, trustBundlePath } from '../pki/index.ts';
import { openPepBundles, createEventShipper, type PepBundleSource } from '../control/index.ts';

export interface GatewayOptions {
  /** Topology file; re-read on reload. */
  config: string;
  zone: string;
  stateDir: string;
  /** Upstream addresses of services that have no `upstream` in the file (from `gatehouse up`). */
  upstreams?: Record<string, string>;
  /** Override listen addresses (e.g. port 0 in tests). */
  listen?: string;
  adminListen?: string | false;
  redirectListen?: string;
  clock?: Clock;
  logger?: Logger;
  /** Where access-log lines go; default stdout. `false` disables them. */
  accessLog?: AccessLog | false;
  /** Told when a breaker of this gateway opens or closes (the cluster primary shares it with the other workers). */
  onCircuit?: (change: CircuitChange) => void;
  /**
   * Follow the control plane (or exported bundles): the zone is enforced as
   * the newest verified bundle says, and with none in force every request is
   * refused. Absent: the topology file is enforced.
   */
  bundles?: PepBundleSource;
  /** Get the gateway's workload certificate from the CA server with a join token; absent: from the CA in the state dir. */
  bootstrap?: GatewayBootstrap;
}

/**
 * What workers of one gateway share about an upstream: each counted outcome
 * (`failure` set, or a success after failures) with the breaker's settings, and
 * the decision the primary takes from them (`open` until when, or closed).
 */
export type CircuitChange =
  | { service: string; kind: 'outcome'; failure?: FailureReason; threshold: number; openMs: number }
  | { service: string; kind: 'state'; open: boolean; reason?: FailureReason; until?: number };

export interface RunningGateway {
  url: string;
  adminUrl: string | undefined;
  redirectUrl: string | undefined;
  metrics: GatewayMetrics;
  state(): GatewayState;
  reload(): Promise<{ ok: true; generation: number } | { ok: false; error: string }>;
  /** Apply what another worker's breaker saw (the circuit opens or closes here too). */
  applyCircuit(change: CircuitChange): void;
  /** Stop accepting, let in-flight requests finish for up to `drainMs` (default: limits.drainTimeoutMs), then cut and close. */
  close(drainMs?: number): Promise<void>;
}

/** Service addresses discovered by `gatehouse up`, from `<stateDir>/services.json`. */
export function readServiceAddresses(stateDir: string): Record<string, string> {
  const file = path.join(stateDir, 'services.json');
  if (!existsSync(file)) return {};
  const data = JSON.parse(readFileSync(file, 'utf8')) as { services?: Record<string, { upstream?: string }> };
  const out: Record<string, string> = {};
  for (const [name, s] of Object.entries(data.services ?? {})) if (s.upstream) out[name] = s.upstream;
  return out;
}

function parserError(code: string | undefined): GatehouseError {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return HeadersTooLarge();
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'HPE_TIMEOUT':
      return RequestTimeout();
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
    case 'HPE_INVALID_TRANSFER_ENCODING':
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_CR_EXPECTED':
    case 'HPE_LF_EXPECTED':
    case 'HPE_INVALID_HEADER_TOKEN':
    case 'HPE_INVALID_EOF_STATE':
      return AmbiguousRequest('the request framing is malformed or ambiguous');
    default:
      return BadRequest('the request could not be parsed');
  }
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? createLogger({ name: `gateway.${options.zone}` });
  let loaded: LoadedTopology = loadTopology(options.config);
  const addresses = () => ({ ...readServiceAddresses(options.stateDir), ...options.upstreams });
  let generation = 1;
  // mTLS to upstreams with the gateway's own SVID, when the trust-domain CA exists; an upstream
  // whose certificate is revoked gets no new connection (the list in force is set by build below)
  let upstreamRevoked: (serial: string) => boolean = () => false;
  const upstreamTls = await openGatewayIdentity(options.stateDir, loaded.topology, options.zone, logger, clock, options.bootstrap, (serial) =>
    upstreamRevoked(serial),
  );
  // resources shared by every config generation (JWKS caches, token cache, API keys)
  const shared = createSharedResources();
  const metrics = createMetrics({ zone: options.zone });
  collectDefaultMetrics({ register: metrics.registry });
  shared.get(RATE_LIMIT_METRICS, () => createRateLimitMetrics(metrics.registry));
  // a gateway following the control plane sends it its security events (refusals), never waiting on it
  const events =
    options.bundles?.control !== undefined && upstreamTls
      ? createEventShipper({
          url: new URL(options.bundles.control).origin,
          identity: () => ({ spiffeId: upstreamTls.spiffeId, certPem: upstreamTls.identity().certPem, keyPem: upstreamTls.identity().keyPem }),
          trustDomain: loaded.topology.trustDomain,
          caBundle: upstreamTls.identity().bundlePem,
        })
      : undefined;
  // a gateway following the control plane enforces its bundle (bundle-policy.ts)
  const pep =
    options.bundles?.control !== undefined || options.bundles?.bundles !== undefined
      ? await (() => {
          if (!upstreamTls) throw new Error('following the control plane needs the trust-domain CA in the state dir (the gateway identity)');
          const tls = upstreamTls;
          return openPepBundles({
            ...options.bundles,
            identity: () => ({ spiffeId: tls.spiffeId, certPem: tls.identity().certPem, keyPem: tls.identity().keyPem }),
            trustDomain: loaded.topology.trustDomain,
            caBundle: tls.identity().bundlePem,
            stateDir: path.join(options.stateDir, 'gateway', options.zone),
            logger,
            onRefused: (code) => {
              metrics.bundlesRefused.inc({ code });
              events?.emit({ type: 'bundle_refused', code });
            },
          });
        })()
      : undefined;
  const revokedTokenIds = shared.get(REVOKED_TOKEN_IDS, () => new Set<string>());
  // client certificates at a locked ingress: revoked as the bundle says, else as the CA's list in the state dir says
  const fileRevocations = upstreamTls ? localRevocations(options.stateDir) : undefined;
  upstreamRevoked = fileRevocations?.isRevoked ?? upstreamRevoked;
  const build = async (file: LoadedTopology, gen: number, previous?: GatewayState) => {
    const bundle = pep?.current();
    const effective = pep ? effectiveTopology(file, options.zone, bundle) : { loaded: file, revision: 0, closed: undefined };
    if (pep && bundle) {
      revokedTokenIds.clear();
      for (const id of bundle.bundle.decisions.revokedTokenIds) revokedTokenIds.add(id);
    }
    // client certificates at a locked ingress and upstream certificates alike
    const revokedSerials = 'revokedSerials' in effective ? effective.revokedSerials : undefined;
    const isRevoked = revokedSerials ? (serial: string) => revokedSerials.has(serial) : (fileRevocations?.isRevoked ?? (() => false));
    upstreamRevoked = isRevoked;
    const next = await buildState({
      loaded: effective.loaded,
      zone: options.zone,
      stateDir: options.stateDir,
      addresses: addresses(),
      clock,
      logger,
      generation: gen,
      shared,
      previous,
      tls: upstreamTls,
      closed: effective.closed,
      revision: effective.revision,
      ingressCallers: 'ingressCallers' in effective ? effective.ingressCallers : undefined,
      quarantines: bundle?.bundle.decisions.quarantines,
      isRevoked,
      // a bundle that revokes more certificates drops the upstream pools: kept-alive connections were checked once
      revokedSerials: revokedSerials?.size,
    });
    // the breaker's state, and why it opened, in the metrics
    for (const up of next.upstreams.values())
      up.breaker.onChange ??= (open, reason) => {
        metrics.circuit.set({ service: up.name }, open ? 1 : 0);
        if (open) {
          metrics.circuitOpened.inc({ service: up.name, reason: reason ?? 'bad_gateway' });
          logger.warn({ service: up.name, reason }, 'circuit opened');
        } else logger.info({ service: up.name }, 'circuit closed');
      };
    if (options.onCircuit)
      for (const up of next.upstreams.values())
        up.breaker.onOutcome ??= (failure) =>
          options.onCircuit!({ service: up.name, kind: 'outcome', failure, threshold: up.breaker.threshold, openMs: up.breaker.openMs });
    return next;
  };
  let current = await build(loaded, generation);
  metrics.bundleRevision.set(current.revision);
  // a new bundle (or the one in force expiring) rebuilds the state; in-flight requests keep theirs
  const unsubscribe = pep?.subscribe(() => void reload().then(() => metrics.bundleRevision.set(current.revision)));
  const config = current.config;
  const ownAccessLog = options.accessLog === undefined && config.accessLog.enabled;
  const accessLog =
    options.accessLog === false || !config.accessLog.enabled
      ? undefined
      : (options.accessLog ?? createAccessLogger(options.zone));
  // buffered lines reach stdout at least once a second, even when traffic is light
  const accessLogFlush = ownAccessLog ? setInterval(() => accessLog?.flush(), 1000) : undefined;
  accessLogFlush?.unref();

  const ctx: PipelineContext = {
    state: () => current,
    metrics,
    accessLog,
    logHeaders: config.accessLog.headers,
    proto: config.plaintext ? 'http' : 'https',
    logger,
    clock,
    draining: false,
    events: events ? (fields) => events.emit(fields) : undefined,
    usage: events ? createUsageEvents((fields) => events.emit(fields)) : undefined,
    // spans from the configuration the gateway started with (a reload does not turn tracing on or off)
    tracer: config.tracing.otlp ? createTracer(config.tracing.otlp, { zone: options.zone, trustDomain: loaded.topology.trustDomain }) : undefined,
  };
  const handler = createHandler(ctx);
  const upgradeHandler = createUpgradeHandler(ctx);
  const limits = config.limits;
  const httpOptions: ServerOptions = {
    maxHeaderSize: limits.maxHeaderBytes,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    requireHostHeader: false, // checked by the gateway, answered as problem+json
    joinDuplicateHeaders: false,
    insecureHTTPParser: false,
    noDelay: true,
    connectionsCheckingInterval: 1000,
  };

  let tlsMaterial: TlsMaterial | undefined;
  // a locked ingress checks client certificates against the trust domain's roots
  const trustCa = upstreamTls ? readFileSync(trustBundlePath(options.stateDir), 'utf8') : undefined;
  // a zone that asks for certificates only to bind tokens to them ('request') names no CA in its
  // request: a partner's client (Go and Java send only a certificate of a CA named) sends its own
  const namesTrustCa = (ingress: CompiledIngress | undefined) => trustCa !== undefined && ingress?.certificate !== 'request';
  const tlsContext = (m: TlsMaterial) => ({ ...secureOptions(m), ...(namesTrustCa(current.ingress) ? { ca: trustCa } : {}) });
  let server: Server | https.Server;
  let h2: http2.Http2Server | undefined;
  const h2Sessions = new Set<http2.ServerHttp2Session>();
  const listen = options.listen ?? config.listen;
  const listenHost = (() => {
    const p = parseListen(listen);
    return typeof p === 'string' ? '127.0.0.1' : p.host;
  })();
  if (config.plaintext) {
    server = createServer(httpOptions, handler as RequestListener);
  } else {
    tlsMaterial = await loadTlsMaterial(config.tls, loaded.dir, options.stateDir, loaded.topology.trustDomain, [
      'localhost',
      '127.0.0.1',
      '::1',
      ...(listenHost === '0.0.0.0' || listenHost === '::' || listenHost === 'localhost' ? [] : [listenHost]),
    ].filter((v, i, a) => a.indexOf(v) === i));
    server = https.createServer(
      { ...httpOptions, ...tlsContext(tlsMaterial), ALPNProtocols: ['h2', 'http/1.1'], handshakeTimeout: limits.handshakeTimeoutMs },
      handler as RequestListener,
    );
    h2 = http2.createServer(
      {
        settings: { maxHeaderListSize: limits.maxHeaderBytes, maxConcurrentStreams: 128, enablePush: false },
        maxSessionMemory: 10,
        maxHeaderListPairs: 256,
        peerMaxConcurrentStreams: 128,
      },
      handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    h2.setTimeout(limits.keepAliveTimeoutMs);
    h2.on('session', (session: http2.ServerHttp2Session) => {
      h2Sessions.add(session);
      session.once('close', () => h2Sessions.delete(session));
      if (ctx.draining) session.close();
    });
    // CONNECT (extended CONNECT included) gets the same 400 problem as on HTTP/1 (Node would answer a bare 405)
    h2.on('connect', handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
    // Expect: 100-continue is answered once every phase said yes (GatewayExchange.continueBody), not by Node on arrival
    h2.on('checkContinue', handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void);
    // a session that broke (a client that reset or vanished) is no refused request
    h2.on('sessionError', () => metrics.http2SessionErrors.inc());
    // ALPN decides: h2 sessions go to the HTTP/2 server, the rest to HTTP/1.1
    const h1Listener = server.listeners('secureConnection')[0] as (s: TLSSocket) => void;
    server.removeAllListeners('secureConnection');
    const h2Server = h2;
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.destroyed) return; // refused at the ingress (guardIngress)
      guard.established(socket);
      if (socket.alpnProtocol === 'h2') h2Server.emit('connection', socket);
      else h1Listener.call(server, socket);
    });
    server.on('tlsClientError', () => metrics.tlsFailures.inc());
    guardIngress(server as https.Server, {
      current: () => current.ingress,
      trustDomain: loaded.topology.trustDomain,
      clock,
      onRefused: (reason, detail) => {
        metrics.ingressRefused.inc({ reason });
        events?.emit({ type: 'ingress_refused', code: reason, source: detail.remote, peer: detail.peer });
        logger.warn({ event: 'security', kind: 'ingress_refused', reason, ...detail }, 'connection refused at the ingress');
      },
    });
    applyIngressTls(server as https.Server, current.ingress);
  }
  // connections: bounded per source and in total, unfinished handshakes timed out and shed first
  const guard = guardConnections(server, {
    max: limits.maxConnections,
    perSource: limits.maxConnectionsPerSource ?? Math.max(64, Math.floor(limits.maxConnections / 10)),
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    plaintext: config.plaintext,
    metrics,
    exempt: (address) => current.isTrustedProxy(address),
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => {
    // Bytes after a request that ends the connection (Connection: close, a
    // refusal): the answer already written or in flight is the only one.
    if (error.code === 'HPE_CLOSED_CONNECTION' || wasRefused(socket)) {
      if (!(socket as Socket & { _httpMessage?: unknown })._httpMessage) (socket as Socket).destroySoon();
      return;
    }
    if (error.code === 'ECONNRESET' || error.code === 'EPIPE') {
      socket.destroy();
      return;
    }
    const e = parserError(error.code);
    const id = randomUUID();
    // a request already being proxied whose body turned out malformed: answer it
    // (once) if nothing was sent yet, otherwise cut the connection
    const inflight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (inflight) {
      abortUpload(inflight);
      if (inflight.headersSent) socket.destroy();
      else writeProblem(inflight, e, id);
      metrics.refused.inc({ reason: e.code });
      return;
    }
    logUnparsed(ctx, e, id, normaliseAddress((socket as Socket).remoteAddress));
    writeRawProblem(socket, e, id);
  });
  // Expect: 100-continue is answered once every phase said yes (GatewayExchange.continueBody), not by Node on arrival
  server.on('checkContinue', handler as RequestListener);
  // CONNECT and upgrades take the same phases as any request; CONNECT is refused in hygiene
  server.on('connect', upgradeHandler as (req: IncomingMessage, socket: Duplex, head: Buffer) => void);
  server.on('upgrade', upgradeHandler as (req: IncomingMessage, socket: Duplex, head: Buffer) => void);

  const { url, address: mainAddress } = await listenOn(server, listen, config.plaintext ? 'http' : 'https');

  let redirect: Server | undefined;
  let redirectUrl: string | undefined;
  const redirectListen = options.redirectListen ?? config.redirectListen;
  if (redirectListen && !config.plaintext) {
    redirect = createServer({ ...httpOptions }, (req, res) => {
      const id = randomUUID();
      try {
        const target = canonicalTarget(req.url ?? '');
        const host = normaliseHost(req.headers.host ?? '');
        if (!host) throw BadRequest('missing or malformed Host');
        const location = `https://${host}${mainAddress.port === 443 ? '' : `:${mainAddress.port}`}${target.path}${target.query ? `?${target.query}` : ''}`;
        res.writeHead(308, { location, 'content-length': '0', 'x-request-id': id, 'cache-control': 'no-store' });
        res.end();
      } catch (error) {
        writeProblem(res, error, id);
      }
    });
    redirect.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => writeRawProblem(socket, parserError(error.code), randomUUID()));
    redirectUrl = (await listenOn(redirect, redirectListen, 'http')).url;
  }

  // certificate files: reload on change without dropping connections
  const watchers: FSWatcher[] = [];
  const reloadCertificates = async () => {
    if (!tlsMaterial || tlsMaterial.files.length === 0 || config.tls === 'dev') return;
    const fresh = await loadTlsMaterial(current.config.tls, loaded.dir, options.stateDir, loaded.topology.trustDomain, []);
    (server as https.Server).setSecureContext(tlsContext(fresh));
    tlsMaterial = fresh;
    logger.info('certificate reloaded');
  };
  if (tlsMaterial && tlsMaterial.files.length > 0) {
    let timer: NodeJS.Timeout | undefined;
    for (const f of tlsMaterial.files) {
      try {
        const w = watch(f, () => {
          clearTimeout(timer);
          timer = setTimeout(() => reloadCertificates().catch((error) => logger.error({ err: error }, 'certificate reload failed')), 200);
        });
        w.unref();
        watchers.push(w);
      } catch (error) {
        logger.warn({ err: error }, 'cannot watch certificate file');
      }
    }
  }

  // one reload at a time, in order (a signal, the admin endpoint and a new bundle may meet)
  let reloading: Promise<unknown> = Promise.resolve();
  const reload: RunningGateway['reload'] = () => {
    const run = reloading.then(reloadNow, reloadNow);
    reloading = run;
    return run;
  };
  const reloadNow = async (): Promise<Awaited<ReturnType<RunningGateway['reload']>>> => {
    try {
      const next = loadTopology(options.config);
      const nextState = await build(next, generation + 1, current);
      const previous = current;
      loaded = next;
      generation++;
      current = nextState;
      if (!config.plaintext) {
        applyIngressTls(server as https.Server, nextState.ingress);
        if (tlsMaterial && namesTrustCa(previous.ingress) !== namesTrustCa(nextState.ingress)) (server as https.Server).setSecureContext(tlsContext(tlsMaterial));
      }
      await reloadCertificates();
      // pools no longer used finish their in-flight requests, then close
      for (const [name, up] of previous.upstreams) if (nextState.upstreams.get(name) !== up) void up.close();
      metrics.reloads.inc({ result: 'ok' });
      logger.info({ generation, revision: nextState.revision, ...(nextState.closed ? { refusing: nextState.closed } : {}) }, 'configuration reloaded');
      return { ok: true, generation };
    } catch (error) {
      metrics.reloads.inc({ result: 'error' });
      const message = error instanceof ConfigError ? error.message : (error as Error).message;
      logger.error({ reason: message }, 'reload refused; the running configuration stays');
      return { ok: false, error: message };
    }
  };

  let admin: Awaited<ReturnType<typeof createAdminServer>> | undefined;
  const adminListen = options.adminListen ?? config.admin.listen;
  if (adminListen !== false) {
    admin = await createAdminServer({
      listen: adminListen,
      metrics: () => metrics.registry.metrics(),
      contentType: metrics.registry.contentType,
      ready: () => server.listening && !ctx.draining && current.closed === undefined,
      notReadyReason: () => current.closed,
      reload,
    });
  }

  let closing: Promise<void> | undefined;
  const close = async (drainMs: number) => {
    // stop accepting; tell every client to go (GOAWAY, Connection: close); let what is in flight finish
    ctx.draining = true;
    unsubscribe?.();
    await pep?.close();
    ctx.usage?.close();
    await events?.close();
    for (const w of watchers) w.close();
    const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    h2?.close();
    for (const session of h2Sessions) session.close(); // GOAWAY; open streams finish
    redirect?.close();
    redirect?.closeAllConnections();
    guard.close();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), drainMs)));
    const drained = setInterval(() => server.closeIdleConnections(), 100);
    const cut = (await Promise.race([stopped.then(() => 'drained' as const), late])) === 'late';
    if (cut) {
      logger.warn({ drainMs }, 'drain timeout: cutting the connections still open');
      server.closeAllConnections();
      for (const session of h2Sessions) session.destroy();
      await stopped;
    }
    clearTimeout(timer);
    clearInterval(drained);
    await admin?.close();
    // after a cut nobody waits for what the upstreams still owe: their requests end with the connections
    await Promise.all([...current.upstreams.values()].map((u) => (cut ? u.destroy() : u.close(1_000))));
    upstreamTls?.close();
    fileRevocations?.close();
    await shared.close();
    clearInterval(accessLogFlush);
    if (ownAccessLog && accessLog) await new Promise<void>((resolve) => accessLog.flush(() => resolve()));
    // the last spans go out (bounded by the exporter's timeout); a collector that is down loses them, never the close
    await ctx.tracer?.shutdown().catch(() => {});
  };
  return {
    url,
    adminUrl: admin?.url,
    redirectUrl,
    metrics,
    state: () => current,
    reload,
    applyCircuit(change) {
      const up = current.upstreams.get(change.service);
      if (up === undefined || change.kind !== 'state') return;
      if (change.open && change.until !== undefined) up.breaker.openUntil(change.until, change.reason ?? 'bad_gateway');
      else if (!change.open) up.breaker.closeNow();
    },
    close(drainMs = current.config.limits.drainTimeoutMs) {
      return (closing ??= close(drainMs));
    },
  };
}
