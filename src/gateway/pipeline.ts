// The request path of a gateway: hygiene → routing → limits → upstream, with
// one place (`sendProblem`) that writes every error the gateway produces.
import { randomUUID } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2Constants, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Stream } from 'node:http2';
import type { Logger } from '../shared/logger.ts';
import { redactQuery, SECRET_HEADERS } from '../shared/logger.ts';
import {
  GatehouseError,
  Internal,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  AmbiguousPath,
  AmbiguousRequest,
  BadRequest,
  UnsupportedTarget,
  AccessDenied,
  problemBody,
  PROBLEM_CONTENT_TYPE,
} from '../shared/errors.ts';
import { canonicalTarget } from './hygiene.ts';
import { scanRequestHeaders, filterResponseHeaders, REQUEST_ID, type InboundHeaders } from './headers.ts';
import { normaliseHost, upstreamPath, type CompiledRoute } from './router.ts';
import { normaliseAddress, type GatewayState } from './state.ts';
import { runChain, type Chain } from './policies/chain.ts';
import type { Exchange, Decision } from './policies/policy.ts';
import { IDENTITY_HEADER } from './policies/authentication/identity-token.ts';
import type { GatewayMetrics } from './metrics.ts';

export type Req = IncomingMessage | Http2ServerRequest;
export type Res = ServerResponse | Http2ServerResponse;

export interface PipelineContext {
  state(): GatewayState;
  metrics: GatewayMetrics;
  accessLog: Logger | undefined;
  logHeaders: boolean;
  /** 'https' or 'http': what this listener speaks. */
  proto: 'https' | 'http';
  logger: Logger;
}

/** Sockets on which a request was refused for framing reasons: nothing more is read from them. */
const refusedSockets = new WeakSet<object>();
export const wasRefused = (socket: object): boolean => refusedSockets.has(socket);

/** Upstream requests still receiving a client's body, by response: a parser error aborts them. */
const uploads = new WeakMap<object, AbortController>();
export function abortUpload(res: object): void {
  uploads.get(res)?.abort();
}

function cancelStream(this: ServerHttp2Stream): void {
  this.close(http2Constants.NGHTTP2_CANCEL);
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export interface Prepared {
  state: GatewayState;
  route: CompiledRoute;
  inbound: InboundHeaders;
  requestId: string;
  peer: string;
  clientAddress: string;
  path: string;
  query: string;
  bodyLimit: number;
  /** A CORS preflight for `route`, answered by the gateway. */
  preflight: boolean;
}

/** Everything before the upstream is contacted; throws GatehouseError to refuse. */
/** HTTP/2 is the connection's protocol, not the version a request line claims. */
export const isHttp2 = (req: Req): req is Http2ServerRequest => (req as Http2ServerRequest).stream !== undefined;

export function prepare(req: Req, ctx: PipelineContext, state: GatewayState, idBox: { id: string }): Prepared {
  const http2 = isHttp2(req);
  const peer = normaliseAddress(req.socket.remoteAddress);
  const trusted = state.isTrustedProxy(peer);
  let inbound: InboundHeaders;
  try {
    if (!http2 && req.httpVersion !== '1.1' && req.httpVersion !== '1.0')
      throw BadRequest(`HTTP/${req.httpVersion} is not spoken on an HTTP/1 connection`);
    inbound = scanRequestHeaders(req.rawHeaders, http2, req.httpVersion === '1.0');
  } finally {
    // the request id is decided even when the headers are refused
    idBox.id = randomUUID();
  }
  if (trusted && inbound.requestId !== undefined && REQUEST_ID.test(inbound.requestId)) idBox.id = inbound.requestId;
  const method = req.method ?? '';
  if (method === 'CONNECT') throw UnsupportedTarget('CONNECT is not proxied');
  const target = canonicalTarget(req.url ?? '');
  const host = inbound.host === undefined ? undefined : normaliseHost(inbound.host);
  if (host === undefined) throw BadRequest('missing or malformed Host');
  const group = state.router.match(host, target.path);
  if (!group) throw NotFound();
  let route = group.byMethod.get(method);
  let preflight = false;
  if (method === 'OPTIONS' && req.headers.origin !== undefined) {
    // a CORS preflight is answered by the gateway for the route of the method it asks about
    const asked = req.headers['access-control-request-method'];
    const target = typeof asked === 'string' ? group.byMethod.get(asked) : undefined;
    if (target?.config.cors) {
      route = target;
      preflight = true;
    }
  }
  if (!route) throw MethodNotAllowed(group.allow);
  if (target.hasParameters && !route.config.allowPathParameters)
    throw AmbiguousPath("';' path parameters are not accepted on this route");
  const bodyLimit = route.config.limits.maxBodyBytes ?? state.config.limits.maxBodyBytes;
  if (inbound.contentLength !== undefined && inbound.contentLength > bodyLimit) throw PayloadTooLarge(bodyLimit);
  return {
    state,
    route,
    inbound,
    requestId: idBox.id,
    peer,
    clientAddress: trusted ? clientAddressOf(inbound.xForwardedFor, peer, state) : peer,
    path: target.path,
    query: target.query,
    bodyLimit,
    preflight,
  };
}

/** CORS response headers for an allowed origin; undefined when the origin is not allowed. */
export function corsHeaders(route: CompiledRoute, origin: string | undefined, preflight: boolean): Record<string, string> | undefined {
  const cors = route.config.cors;
  if (!cors || origin === undefined) return undefined;
  const any = cors.origins.includes('*');
  if (!any && !cors.origins.includes(origin.toLowerCase())) return undefined;
  const h: Record<string, string> = { 'access-control-allow-origin': any ? '*' : origin, vary: 'origin' };
  if (cors.credentials) h['access-control-allow-credentials'] = 'true';
  if (preflight) {
    h['access-control-allow-methods'] = (cors.methods ?? [...route.methods]).join(', ');
    if (cors.headers.length > 0) h['access-control-allow-headers'] = cors.headers.join(', ');
    h['access-control-max-age'] = String(cors.maxAgeSeconds);
  } else if (cors.exposeHeaders.length > 0) h['access-control-expose-headers'] = cors.exposeHeaders.join(', ');
  return h;
}

/** The right-most X-Forwarded-For entry that is not a trusted proxy. */
export function clientAddressOf(xff: string | undefined, peer: string, state: GatewayState): string {
  if (xff === undefined) return peer;
  const hops = xff.split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normaliseAddress(hops[i].trim());
    if (hop === '') continue;
    if (!state.isTrustedProxy(hop)) return hop;
  }
  return peer;
}

/** Headers the upstream receives: the client's, cleaned, plus the gateway's own. */
export function upstreamHeaders(p: Prepared, proto: string): string[] {
  const h = p.inbound.forward;
  const trusted = p.state.isTrustedProxy(p.peer);
  const host = p.inbound.host ?? '';
  const xff = trusted && p.inbound.xForwardedFor !== undefined ? `${p.inbound.xForwardedFor}, ${p.peer}` : p.peer;
  const xfProto = trusted && p.inbound.xForwardedProto !== undefined ? p.inbound.xForwardedProto : proto;
  const xfHost = trusted && p.inbound.xForwardedHost !== undefined ? p.inbound.xForwardedHost : host;
  const forNode = p.peer.includes(':') ? `"[${p.peer}]"` : p.peer;
  const element = `for=${forNode};proto=${proto};host="${host.replace(/["\\]/g, '')}"`;
  const forwarded = trusted && p.inbound.forwarded !== undefined ? `${p.inbound.forwarded}, ${element}` : element;
  h.push(
    'host',
    p.state.upstreams.get(p.route.config.service)!.host,
    'x-forwarded-for',
    xff,
    'x-forwarded-proto',
    xfProto,
    'x-forwarded-host',
    xfHost,
    'forwarded',
    forwarded,
    'x-request-id',
    p.requestId,
  );
  if (p.inbound.contentLength !== undefined) h.push('content-length', String(p.inbound.contentLength));
  return h;
}

/** Request body with the size limit enforced while streaming (for bodies of undeclared length). */
async function* limitedBody(req: Req, limit: number, failure: BodyFailure): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw (failure.error = PayloadTooLarge(limit));
    yield chunk;
  }
}

/** Why the gateway itself stopped a request body (set before the error reaches undici). */
interface BodyFailure {
  error?: GatehouseError;
}

/**
 * An HTTP/2 body is counted against its declared length: nghttp2 resets a
 * stream whose DATA disagrees with content-length, but only after the head was
 * forwarded, so the upstream must see an aborted request, never a complete one.
 */
async function* http2Body(req: Req, limit: number, declared: number | undefined, failure: BodyFailure): AsyncGenerator<Buffer> {
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw (failure.error = PayloadTooLarge(limit));
    if (declared !== undefined && total > declared)
      throw (failure.error = AmbiguousRequest('the body is longer than its content-length'));
    yield chunk;
  }
  if (!req.complete) throw (failure.error = AmbiguousRequest('the request stream was reset'));
  if (declared !== undefined && total !== declared)
    throw (failure.error = AmbiguousRequest('the body is shorter than its content-length'));
}

function hasBody(req: Req, inbound: InboundHeaders): boolean {
  if (isHttp2(req)) return !(req.stream.endAfterHeaders || inbound.contentLength === 0);
  return inbound.chunked || (inbound.contentLength !== undefined && inbound.contentLength > 0);
}

export function createHandler(ctx: PipelineContext): (req: Req, res: Res) => void {
  const { metrics } = ctx;
  return function handle(req, res) {
    if (refusedSockets.has(req.socket)) {
      // a request pipelined behind a refused one is never answered or forwarded
      req.socket.destroy();
      return;
    }
    const started = performance.now();
    const state = ctx.state();
    // HTTP/2 streams have no server-wide request timeout: give each one its own
    if (isHttp2(req)) req.stream.setTimeout(state.config.limits.requestTimeoutMs, cancelStream);
    const idBox = { id: '' };
    let prepared: Prepared;
    try {
      prepared = prepare(req, ctx, state, idBox);
    } catch (error) {
      sendProblem(req, res, error, idBox.id || randomUUID(), state, ctx, started, undefined);
      return;
    }
    const p = prepared;
    const onShadow = (unit: string, denial: GatehouseError) => {
      metrics.refused.inc({ reason: `shadow_${denial.code}` });
      ctx.logger.info({ request_id: p.requestId, policy: unit, code: denial.code }, 'shadow mode: would deny');
    };
    if (p.preflight) {
      answerPreflight(req, res, p, ctx, started);
      return;
    }
    const chain = state.chains[p.route.index];
    if (chain === undefined) {
      proxy(req, res, p, ctx, started, undefined);
      return;
    }
    const exchange: Exchange = {
      method: req.method!,
      path: p.path,
      query: p.query,
      host: p.inbound.host ?? '',
      headers: req.headers,
      clientAddress: p.clientAddress,
      requestId: p.requestId,
      zone: state.zone,
      route: p.route,
      now: Date.now(),
      upstreamHeaders: [],
      responseHeaders: {},
      onDone: [],
      readBody: () => (buffered ??= readWhole(req, hasBody(req, p.inbound), p.bodyLimit)),
    };
    let buffered: Promise<Buffer> | undefined;
    const fail = (error: unknown) => sendProblem(req, res, error, p.requestId, state, ctx, started, p.route, exchange);
    // everything stays synchronous while the policies answer from memory (cached tokens, counters)
    const checked = (decision: Decision): void | Promise<void> => {
      if (decision) return sendProblem(req, res, decision, p.requestId, state, ctx, started, p.route, exchange);
      let token: string | Promise<string> | undefined;
      if (exchange.identity && state.identity) {
        const audience = `spiffe://${state.trustDomain}/zone/${state.zone}/svc/${p.route.config.service}`;
        token = state.identity.sign(exchange.identity, audience);
      }
      if (typeof token === 'string') exchange.upstreamHeaders.push(IDENTITY_HEADER, token);
      if (!(token instanceof Promise) && buffered === undefined) return proxy(req, res, p, ctx, started, { chain, exchange });
      return (async () => {
        // a token still being signed joins the headers here; a string one is already in (never twice)
        if (token instanceof Promise) exchange.upstreamHeaders.push(IDENTITY_HEADER, await token);
        proxy(req, res, p, ctx, started, { chain, exchange, body: buffered ? await buffered : undefined });
      })();
    };
    try {
      const decision = runChain(chain, exchange, onShadow);
      const after = decision instanceof Promise ? decision.then(checked) : checked(decision);
      if (after instanceof Promise) after.catch(fail);
    } catch (error) {
      fail(error);
    }
  };
}

function answerPreflight(req: Req, res: Res, p: Prepared, ctx: PipelineContext, started: number): void {
  const headers = corsHeaders(p.route, req.headers.origin, true);
  const asked = String(req.headers['access-control-request-method']);
  const cors = p.route.config.cors!;
  const methods: readonly string[] = cors.methods ?? [...p.route.methods];
  const wanted = String(req.headers['access-control-request-headers'] ?? '')
    .split(',')
    .map((x) => x.trim().toLowerCase())
    .filter(Boolean);
  const allowedHeaders = new Set(cors.headers.map((x) => x.toLowerCase()));
  if (!headers || !methods.includes(asked) || !wanted.every((w) => allowedHeaders.has(w))) {
    sendProblem(req, res, AccessDenied('this cross-origin request is not allowed'), p.requestId, p.state, ctx, started, p.route);
    return;
  }
  (res as ServerResponse).writeHead(204, { ...p.state.securityHeaders.DENY, ...headers, 'x-request-id': p.requestId, 'content-length': '0' });
  res.end();
  finish(req, res, 204, ctx, started, p.route, p.requestId, p.path, p.query, p.clientAddress);
}

interface Checked {
  chain: Chain;
  exchange: Exchange;
  /** The body as read and checked by a policy; sent instead of the stream. */
  body?: Buffer;
}

/** Read a whole request body within `limit` (413 beyond it). */
async function readWhole(req: Req, withBody: boolean, limit: number): Promise<Buffer> {
  if (!withBody) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw PayloadTooLarge(limit);
    chunks.push(chunk);
  }
  if (!req.complete) throw AmbiguousRequest('the request body was broken off');
  return Buffer.concat(chunks, total);
}

/** Send the request upstream and stream the answer back. */
function proxy(req: Req, res: Res, p: Prepared, ctx: PipelineContext, started: number, checked: Checked | undefined): void {
  const { metrics } = ctx;
  const state = p.state;
  const upstream = state.upstreams.get(p.route.config.service)!;
  const method = req.method!;
  const preread = checked?.body;
  const withBody = preread === undefined && hasBody(req, p.inbound);
  const failure: BodyFailure = {};
  const body = preread !== undefined
    ? preread
    : !withBody
    ? undefined
    : isHttp2(req)
      ? Readable.from(http2Body(req, p.bodyLimit, p.inbound.contentLength, failure), { objectMode: false })
      : p.inbound.contentLength !== undefined
        ? (req as unknown as Readable)
        : Readable.from(limitedBody(req, p.bodyLimit, failure), { objectMode: false });
  const path = upstreamPath(p.route, p.path);
  // a client that breaks off its upload must not leave the upstream waiting for the rest
  let signal: AbortSignal | undefined;
  if (withBody) {
    const abort = new AbortController();
    signal = abort.signal;
    uploads.set(res, abort);
    req.once('close', () => {
      if (!req.complete) abort.abort();
    });
  }
  const upstreamStarted = performance.now();
  let status = 0;
  upstream
    .stream(
      {
        path: p.query === '' ? path : `${path}?${p.query}`,
        method,
        headers: checked ? withPolicyHeaders(upstreamHeaders(p, ctx.proto), checked) : upstreamHeaders(p, ctx.proto),
        body,
        idempotentRetry: !withBody && preread === undefined && IDEMPOTENT.has(method),
        headersTimeout: p.route.config.limits.timeoutMs,
        signal,
        // a body over the limit, broken off or framed badly is not the upstream's failure
        clientFailure: withBody
          ? () => failure.error ?? (req.complete ? undefined : AmbiguousRequest('the request body was broken off or malformed'))
          : undefined,
      },
      (response) => {
        routeStats(p.route, metrics).upstream.observe((performance.now() - upstreamStarted) / 1000);
        status = response.statusCode;
        // the client left, or the connection was already answered (malformed body): drop the answer
        if (res.destroyed || res.headersSent) return discardSink();
        const frame = p.route.config.frameOptions ?? state.config.headers.frameOptions;
        const headers: Record<string, string | string[]> = { ...state.securityHeaders[frame] };
        filterResponseHeaders(response.headers as Record<string, string | string[] | undefined>, headers);
        headers['x-request-id'] = p.requestId;
        if (checked) Object.assign(headers, checked.exchange.responseHeaders);
        if (p.route.config.cors) Object.assign(headers, corsHeaders(p.route, req.headers.origin, false));
        if (frame !== 'off' && headers['content-security-policy'] === undefined)
          headers['content-security-policy'] = frame === 'DENY' ? "frame-ancestors 'none'" : "frame-ancestors 'self'";
        (res as ServerResponse).writeHead(status, headers);
        return res as unknown as Writable;
      },
    )
    .then(
      () => finish(req, res, status, ctx, started, p.route, p.requestId, p.path, p.query, p.clientAddress, checked?.exchange),
      (error: unknown) => {
        if (upstream.breaker.state !== 'closed') metrics.circuit.set({ service: upstream.name }, 1);
        if (status !== 0) {
          // failed after the head was sent: all we can do is cut the response
          res.destroy();
          finish(req, res, status, ctx, started, p.route, p.requestId, p.path, p.query, p.clientAddress, checked?.exchange);
          return;
        }
        sendProblem(req, res, error, p.requestId, state, ctx, started, p.route, checked?.exchange);
      },
    )
    .catch((error: unknown) => {
      // never let one request take the process down
      ctx.logger.error({ request_id: p.requestId, err: error }, 'unexpected error while proxying');
      res.destroy();
    });
}

/** Request headers for the access log: pseudo-headers dropped (the path is logged redacted on its own). */
const CENSORED = new Set<string>(SECRET_HEADERS);

/** Request headers for the access log: credentials (and the zone's API-key header, whatever its name) censored here. */
function loggableHeaders(headers: Record<string, string | string[] | undefined>, apiKeyHeader: string): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const name in headers) {
    if (name.charCodeAt(0) === 0x3a || name === 'referer') continue;
    out[name] = CENSORED.has(name) || name === apiKeyHeader ? '[REDACTED]' : headers[name];
  }
  return out;
}

/** Where an upstream answer goes when nobody will read it. */
function discardSink(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}

interface RouteStats {
  metrics: GatewayMetrics;
  requests: Map<string, { inc(): void }>;
  duration: { observe(v: number): void };
  upstream: { observe(v: number): void };
}

function routeStats(route: CompiledRoute, metrics: GatewayMetrics): RouteStats {
  let s = route.stats as RouteStats | undefined;
  if (s === undefined || s.metrics !== metrics) {
    s = {
      metrics,
      requests: new Map(),
      duration: metrics.duration.labels(route.name),
      upstream: metrics.upstreamDuration.labels(route.config.service),
    };
    route.stats = s;
  }
  return s;
}

function statusClass(status: number): string {
  return status < 200 ? '1xx' : status < 300 ? '2xx' : status < 400 ? '3xx' : status < 500 ? '4xx' : '5xx';
}

function finish(
  req: Req,
  res: Res,
  status: number,
  ctx: PipelineContext,
  started: number,
  route: CompiledRoute | undefined,
  requestId: string,
  path: string | undefined,
  query: string | undefined,
  client: string | undefined,
  exchange?: Exchange,
): void {
  if (exchange !== undefined) for (const done of exchange.onDone) done();
  const seconds = (performance.now() - started) / 1000;
  const routeName = route?.name ?? '(none)';
  if (route) {
    // label children are looked up once per route, method and status class, not hashed per request
    const stats = routeStats(route, ctx.metrics);
    const key = `${req.method} ${status}`;
    let counter = stats.requests.get(key);
    if (!counter) stats.requests.set(key, (counter = ctx.metrics.requests.labels(routeName, req.method ?? '', statusClass(status))));
    counter.inc();
    stats.duration.observe(seconds);
  } else {
    ctx.metrics.requests.inc({ route: routeName, method: req.method ?? '', status_class: statusClass(status) });
    ctx.metrics.duration.observe({ route: routeName }, seconds);
  }
  if (ctx.accessLog) {
    const entry: Record<string, unknown> = {
      request_id: requestId,
      method: req.method,
      path: path ?? '(refused)',
      query: query ? redactQuery(query) : undefined,
      status,
      route: route?.name,
      duration_ms: Math.round(seconds * 100_000) / 100,
      client,
      http: req.httpVersion,
    };
    if (ctx.logHeaders) entry.req = { headers: loggableHeaders(req.headers, ctx.state().zoneConfig.authentication.apiKeyHeader) };
    if (exchange?.identity) entry.caller = { kind: exchange.identity.kind, sub: exchange.identity.sub, client_id: exchange.identity.clientId, jti: exchange.identity.jti };
    if (!res.writableFinished && status < 400) entry.aborted = true;
    ctx.accessLog.info(entry);
  }
}

/** The only place the gateway writes an error response. */
export function sendProblem(
  req: Req,
  res: Res,
  error: unknown,
  requestId: string,
  state: GatewayState,
  ctx: PipelineContext,
  started: number,
  route: CompiledRoute | undefined,
  exchange?: Exchange,
): void {
  const e = error instanceof GatehouseError ? error : Internal(error);
  if (e.status >= 500 && e.cause !== undefined)
    ctx.logger.warn({ request_id: requestId, code: e.code, cause: describeCause(e.cause) }, 'upstream failure');
  else if (e.code === 'internal') ctx.logger.error({ request_id: requestId, err: error }, 'gateway error');
  if (e.status === 400 || e.status === 413 || e.status === 431 || e.status === 405)
    ctx.metrics.refused.inc({ reason: e.code });
  if (res.headersSent || res.destroyed) {
    // already answered in full (e.g. a parser error on its body): leave it be
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = JSON.stringify(problemBody(e, requestId));
  const headers: Record<string, string> = {
    ...state.securityHeaders.DENY,
    ...exchange?.responseHeaders,
    ...e.headers,
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-request-id': requestId,
  };
  const http2 = isHttp2(req);
  if (e.closeConnection && !http2) headers.connection = 'close';
  (res as ServerResponse).writeHead(e.status, headers);
  res.end(body);
  if (e.closeConnection) {
    if (http2) req.stream.session?.close();
    else {
      // never read what follows a refused request: it may be a smuggled one
      const socket = (req as IncomingMessage).socket;
      refusedSockets.add(socket);
      res.once('finish', () => socket.destroySoon());
    }
  }
  finish(req, res, e.status, ctx, started, route, requestId, undefined, undefined, undefined, exchange);
}

/** The client's headers minus the route's credentials, plus what the policies add (identity token …). */
function withPolicyHeaders(headers: string[], checked: Checked): string[] {
  const strip = checked.chain.strip;
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!strip.has(headers[i])) out.push(headers[i], headers[i + 1]);
  out.push(...checked.exchange.upstreamHeaders);
  return out;
}

function describeCause(cause: unknown): string {
  const code = (cause as { code?: string }).code;
  return code ?? (cause instanceof Error ? cause.name : 'unknown');
}
