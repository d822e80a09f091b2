// The phases that read the request itself: hygiene (framing, headers, target,
// Host), route (route and method), cors (preflights are answered here).
import type { ServerResponse } from 'node:http';
import {
  AccessDenied,
  AmbiguousPath,
  BadRequest,
  GatehouseError,
  MethodNotAllowed,
  NotFound,
  PayloadTooLarge,
  UnsupportedTarget,
} from '../../shared/errors.ts';
import { normaliseAddress } from '../../shared/address.ts';
import { continueTrace } from '../../shared/trace-context.ts';
import { canonicalTarget } from '../hygiene.ts';
import { scanRequestHeaders, REQUEST_ID } from '../headers.ts';
import { normaliseHost, type CompiledRoute } from '../router.ts';
import type { GatewayState } from '../state.ts';
import { isHttp2, type GatewayExchange } from '../exchange.ts';
import { ANSWERED, type Outcome } from './outcome.ts';

export function hygiene(ex: GatewayExchange): Outcome {
  const req = ex.req;
  const http2 = isHttp2(req);
  const state = ex.state;
  ex.peer = normaliseAddress(req.socket.remoteAddress);
  ex.clientAddress = ex.peer;
  if (!http2 && req.httpVersion !== '1.1' && req.httpVersion !== '1.0')
    return BadRequest(`HTTP/${req.httpVersion} is not spoken on an HTTP/1 connection`);
  const inbound = scanRequestHeaders(req.rawHeaders, http2, req.httpVersion === '1.0');
  ex.inbound = inbound;
  const tracer = ex.ctx.tracer;
  if (tracer === undefined) ex.trace = continueTrace(inbound.traceparent, inbound.tracestate);
  else {
    const t = tracer.start({ method: ex.method, traceparent: inbound.traceparent, tracestate: inbound.tracestate, startTime: performance.timeOrigin + ex.started });
    ex.trace = t.trace;
    ex.span = t.span;
  }
  const trusted = state.isTrustedProxy(ex.peer);
  if (trusted) {
    if (inbound.requestId !== undefined && REQUEST_ID.test(inbound.requestId)) ex.requestId = inbound.requestId;
    ex.clientAddress = clientAddressOf(inbound.xForwardedFor, ex.peer, state);
  }
  if (ex.method === 'CONNECT') return UnsupportedTarget('CONNECT is not proxied');
  const target = canonicalTarget(req.url ?? '');
  ex.path = target.path;
  ex.query = target.query;
  ex.hasParameters = target.hasParameters;
  const hostname = inbound.host === undefined ? undefined : normaliseHost(inbound.host);
  if (hostname === undefined) return BadRequest('missing or malformed Host');
  ex.host = inbound.host!;
  ex.hostname = hostname;
  return undefined;
}

export function route(ex: GatewayExchange): Outcome {
  const state = ex.state;
  // fail closed: without a policy bundle in force no route exists
  if (state.closed !== undefined) return new GatehouseError('bundle_unavailable', 'The gateway has no valid policy in force; retry shortly.');
  const group = state.router.match(ex.hostname, ex.path);
  if (!group) return NotFound();
  let route = group.byMethod.get(ex.method);
  if (ex.method === 'OPTIONS' && ex.headers.origin !== undefined) {
    // a CORS preflight is answered by the gateway for the route of the method it asks about
    const asked = ex.headers['access-control-request-method'];
    const target = typeof asked === 'string' ? group.byMethod.get(asked) : undefined;
    if (target?.config.cors) {
      route = target;
      ex.preflight = true;
    }
  }
  if (!route) return MethodNotAllowed(group.allow);
  ex.route = route;
  ex.routed = true;
  ex.chain = state.chains[route.index];
  if (ex.hasParameters && !route.config.allowPathParameters) return AmbiguousPath("';' path parameters are not accepted on this route");
  ex.bodyLimit = route.config.limits.maxBodyBytes ?? state.config.limits.maxBodyBytes;
  const declared = ex.inbound!.contentLength;
  if (declared !== undefined && declared > ex.bodyLimit) return PayloadTooLarge(ex.bodyLimit);
  return undefined;
}

/** A preflight is answered here, before any policy: browsers send no credentials on it. */
export function cors(ex: GatewayExchange): Outcome {
  if (!ex.preflight) return undefined;
  const headers = corsHeaders(ex.route, ex.headers.origin, true);
  const cors = ex.route.config.cors!;
  const asked = String(ex.headers['access-control-request-method']);
  const methods: readonly string[] = cors.methods ?? [...ex.route.methods];
  const wanted = String(ex.headers['access-control-request-headers'] ?? '')
    .split(',')
    .map((x) => x.trim().toLowerCase())
    .filter(Boolean);
  const allowed = new Set(cors.headers.map((x) => x.toLowerCase()));
  if (!headers || !methods.includes(asked) || !wanted.every((w) => allowed.has(w)))
    return AccessDenied('this cross-origin request is not allowed');
  const res = ex.res;
  if (res === undefined) return BadRequest('a preflight is not an upgrade');
  ex.status = 204;
  (res as ServerResponse).writeHead(204, { ...ex.state.securityHeaders.DENY, ...headers, 'x-request-id': ex.requestId, 'content-length': '0' });
  res.end();
  return ANSWERED;
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
