// The end of every request: `refuse` writes the problem for a refusal (the only
// place the gateway does), `respond` counts and logs every request, refused or
// not — always the last phase.
import type { IncomingMessage } from 'node:http';
import { writeProblem, writeRawProblem } from '../../shared/problem.ts';
import type { GatehouseError } from '../../shared/errors.ts';
import { redactQuery, SECRET_HEADERS } from '../../shared/logger.ts';
import { maskText } from '../../shared/mask.ts';
import type { CompiledRoute } from '../router.ts';
import type { GatewayMetrics } from '../metrics.ts';
import { isHttp2, type GatewayExchange } from '../exchange.ts';
import type { EventFields } from '../../monitor/event.ts';
import type { CounterChild } from '../../shared/fast-metrics.ts';

/** Sockets on which a request was refused for framing reasons: nothing more is read from them. */
const refusedSockets = new WeakSet<object>();
export const wasRefused = (socket: object): boolean => refusedSockets.has(socket);

export function refuse(ex: GatewayExchange, error: GatehouseError): void {
  ex.error = error;
  const log = ex.ctx.logger;
  if (error.status >= 500 && error.cause !== undefined)
    log.warn({ request_id: ex.requestId, code: error.code, cause: describeCause(error.cause) }, 'upstream failure');
  else if (error.code === 'internal') log.error({ request_id: ex.requestId, err: error.cause }, 'gateway error');
  if (ex.upgrade) {
    ex.status = error.status;
    writeRawProblem(ex.upgrade.socket, error, ex.requestId, baseHeaders(ex));
    return;
  }
  const res = ex.res!;
  if (res.headersSent) {
    // failed after the head went out (the upstream broke off its answer): all we can do is cut it
    if (!res.writableEnded) res.destroy();
    return;
  }
  ex.status = error.status;
  const http2 = isHttp2(ex.req);
  writeProblem(res, error, ex.requestId, { baseHeaders: baseHeaders(ex), http2 });
  if (!error.closeConnection) return;
  if (isHttp2(ex.req)) ex.req.stream.session?.close();
  else {
    // never read what follows a refused request: it may be a smuggled one
    const socket = (ex.req as IncomingMessage).socket;
    refusedSockets.add(socket);
    res.once('finish', () => socket.destroySoon());
  }
}

function baseHeaders(ex: GatewayExchange): Record<string, string> {
  const security = ex.state.securityHeaders.DENY;
  if (ex.ctx.draining && !isHttp2(ex.req)) return { ...security, ...ex.responseHeaders, connection: 'close' };
  for (const _ in ex.responseHeaders) return { ...security, ...ex.responseHeaders };
  return security;
}

/** The respond phase: metrics and the access log, for every request. */
export function respond(ex: GatewayExchange): undefined {
  const onDone = ex.onDone;
  for (let i = 0; i < onDone.length; i++) onDone[i]();
  const ctx = ex.ctx;
  const seconds = (performance.now() - ex.started) / 1000;
  const route = ex.routed ? ex.route : undefined;
  ex.span?.end({ status: ex.status, route: route?.name, code: ex.error?.code, endTime: performance.timeOrigin + performance.now() });
  if (ex.error !== undefined) {
    ctx.metrics.refused.inc({ reason: ex.error.code });
    ctx.events?.({
      type: 'request_refused',
      code: ex.error.code,
      status: ex.status,
      source: ex.clientAddress,
      route: route?.name,
      method: ex.method,
      path: ex.path === '' ? undefined : maskText(ex.path),
      subject: ex.identity?.sub,
      client: ex.identity?.clientId,
    });
  }
  ctx.usage?.observe(ex);
  if (route) {
    // label children are looked up once per route, method and status class, not hashed per request
    const stats = routeStats(route, ctx.metrics);
    let byClass = stats.requests.get(ex.method);
    if (byClass === undefined) stats.requests.set(ex.method, (byClass = []));
    const c = classIndex(ex.status);
    (byClass[c] ??= ctx.metrics.requests.labels(route.name, ex.method, STATUS_CLASSES[c])).inc();
    stats.duration.observe(seconds);
  } else {
    ctx.metrics.requests.inc({ route: '(none)', method: ex.method, status_class: statusClass(ex.status) });
    ctx.metrics.duration.observe({ route: '(none)' }, seconds);
  }
  if (ctx.accessLog) {
    const entry: Record<string, unknown> = {
      request_id: ex.requestId,
      method: ex.method,
      // path, query and a raw target are the entry's only client-chosen text: masked (cards, e-mails, JWTs …)
      path: ex.path === '' ? undefined : maskText(ex.path),
      query: ex.query ? maskText(redactQuery(ex.query)) : undefined,
      status: ex.status,
      route: route?.name,
      duration_ms: Math.round(seconds * 100_000) / 100,
      client: ex.clientAddress,
      http: ex.req.httpVersion,
      trace_id: ex.trace?.traceId,
    };
    if (ex.error !== undefined) {
      entry.code = ex.error.code;
      // a target that could not be made canonical is logged as sent, bounded (the logger escapes it)
      if (ex.path === '') entry.target = maskText(rawTarget(ex.req.url ?? ''));
    }
    if (ex.upgrade) entry.upgrade = 'websocket';
    if (ctx.logHeaders) entry.req = { headers: loggableHeaders(ex.headers, ex.state.zoneConfig.authentication.apiKeyHeader) };
    const id = ex.identity;
    if (id) entry.caller = { kind: id.kind, sub: id.sub, client_id: id.clientId, jti: id.jti };
    if (ex.res !== undefined && !ex.res.writableFinished && ex.status < 400) entry.aborted = true;
    ctx.accessLog.info(entry);
  }
  return undefined;
}

/** A refusal before the gateway read a request (parser errors): one access-log line and one count. */
export function logUnparsed(
  ctx: { metrics: GatewayMetrics; accessLog: { info(o: object): void } | undefined; events?: (fields: EventFields) => void },
  error: GatehouseError,
  requestId: string,
  client: string,
): void {
  ctx.metrics.refused.inc({ reason: error.code });
  ctx.events?.({ type: 'request_refused', code: error.code, status: error.status, source: client });
  ctx.metrics.requests.inc({ route: '(none)', method: '', status_class: statusClass(error.status) });
  ctx.accessLog?.info({ request_id: requestId, status: error.status, code: error.code, client, target: '(unparsed)' });
}

const clip = (s: string): string => (s.length > 512 ? `${s.slice(0, 512)}…` : s);

/** A target that could not be made canonical, as sent: its query's secret-looking values redacted, then bounded. */
export function rawTarget(url: string): string {
  const q = url.indexOf('?');
  return clip(q === -1 ? url : `${url.slice(0, q)}?${redactQuery(url.slice(q + 1))}`);
}

/** Credentials (and the zone's API-key header, whatever its name) are censored here; pseudo-headers and Referer dropped. */
const CENSORED = new Set<string>(SECRET_HEADERS);
function loggableHeaders(headers: Record<string, string | string[] | undefined>, apiKeyHeader: string): Record<string, string | string[] | undefined> {
  const out: Record<string, string | string[] | undefined> = {};
  for (const name in headers) {
    if (name.charCodeAt(0) === 0x3a || name === 'referer') continue;
    out[name] = CENSORED.has(name) || name === apiKeyHeader ? '[REDACTED]' : headers[name];
  }
  return out;
}

interface RouteStats {
  metrics: GatewayMetrics;
  /** by method, then by status class index */
  requests: Map<string, CounterChild[]>;
  duration: { observe(v: number): void };
  upstream: { observe(v: number): void };
}

export function routeStats(route: CompiledRoute, metrics: GatewayMetrics): RouteStats {
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

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const classIndex = (status: number): number => (status < 200 ? 0 : status < 300 ? 1 : status < 400 ? 2 : status < 500 ? 3 : 4);

export function statusClass(status: number): string {
  return STATUS_CLASSES[classIndex(status)];
}

function describeCause(cause: unknown): string {
  const code = (cause as { code?: string }).code;
  return code ?? (cause instanceof Error ? cause.name : 'unknown');
}
