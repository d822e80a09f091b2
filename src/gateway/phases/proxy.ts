// The proxy phase: the request goes to the route's upstream (over its pool and
// its circuit breaker) and the answer streams back; a WebSocket upgrade becomes
// a tunnel. Who broke a request off decides who is blamed: a client that stops
// its own upload is the client's failure (neutral for the breaker), an upstream
// that resets while the body is still coming is the upstream's (502
// upstream_reset, counted).
import { Readable, Writable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants as http2Constants, type ServerHttp2Stream } from 'node:http2';
import { AmbiguousRequest, PayloadTooLarge, UnsupportedUpgrade } from '../../shared/errors.ts';
import { asProblem } from '../../shared/problem.ts';
import { filterResponseHeaders } from '../headers.ts';
import { upstreamPath } from '../router.ts';
import type { Upstream, Upload } from '../upstream.ts';
import { isHttp2, type GatewayExchange, type Req } from '../exchange.ts';
import { corsHeaders } from './request.ts';
import { routeStats } from './respond.ts';
import { ANSWERED, type Outcome } from './outcome.ts';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** Uploads still being forwarded, by response: a parser error on the client's body breaks them off. */
const uploads = new WeakMap<object, Upload>();
export function abortUpload(res: object): void {
  const upload = uploads.get(res);
  if (upload === undefined) return;
  upload.clientAborted = true;
  upload.abort.abort();
}

export function proxy(ex: GatewayExchange): Outcome | Promise<Outcome> {
  const upstream = ex.state.upstreams.get(ex.route.config.service)!;
  if (ex.upgrade !== undefined) return tunnel(ex, upstream);
  // a unit that read the body (the contract) hands the very bytes it checked to the upstream
  if (ex.body !== undefined) return ex.body.then((bytes) => send(ex, upstream, bytes));
  return send(ex, upstream, undefined);
}

/**
 * Headers the upstream receives: the client's, cleaned and without its
 * credentials, plus the gateway's own. Host is the upstream's own authority,
 * which undici writes from the pool's origin (a Host given here would cost a
 * parse of it on every request, for the same bytes).
 */
export function upstreamHeaders(ex: GatewayExchange): string[] {
  const inbound = ex.inbound!;
  const strip = ex.stripHeaders;
  let h = inbound.forward;
  if (strip !== undefined && strip.size > 0) {
    h = [];
    const f = inbound.forward;
    for (let i = 0; i < f.length; i += 2) if (!strip.has(f[i])) h.push(f[i], f[i + 1]);
  }
  const peer = ex.peer;
  const trusted = ex.state.isTrustedProxy(peer);
  const proto = ex.ctx.proto;
  const element = `for=${forwardedNode(peer)};proto=${proto};host=${quoted(ex.host)}`;
  h.push(
    'x-forwarded-for',
    trusted && inbound.xForwardedFor !== undefined ? `${inbound.xForwardedFor}, ${peer}` : peer,
    'x-forwarded-proto',
    trusted && inbound.xForwardedProto !== undefined ? inbound.xForwardedProto : proto,
    'x-forwarded-host',
    trusted && inbound.xForwardedHost !== undefined ? inbound.xForwardedHost : ex.host,
    'forwarded',
    trusted && inbound.forwarded !== undefined ? `${inbound.forwarded}, ${element}` : element,
    'x-request-id',
    ex.requestId,
    'traceparent',
    ex.trace!.traceparent,
  );
  if (ex.trace!.tracestate !== undefined) h.push('tracestate', ex.trace!.tracestate);
  const added = ex.upstreamHeaders;
  for (let i = 0; i < added.length; i++) h.push(added[i]);
  return h;
}

/** RFC 7239 §6: an IPv6 node is a quoted "[…]"; an IPv4 one a plain token. */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address === '' ? 'unknown' : address;
}

/** RFC 7239 §4 / RFC 9110 §5.6.4: a quoted-string with `"` and `\` escaped, controls dropped. */
export function quoted(value: string): string {
  // the Host it quotes passed its grammar already: the escaping is for anything else
  if (!NEEDS_ESCAPE.test(value)) return `"${value}"`;
  return `"${value.replace(/[\u0000-\u001f\u007f]/g, '').replace(/["\\]/g, '\\$&')}"`;
}
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f]/;

function hasBody(ex: GatewayExchange): boolean {
  const req = ex.req;
  const inbound = ex.inbound!;
  if (isHttp2(req)) return !(req.stream.endAfterHeaders || inbound.contentLength === 0);
  return inbound.chunked || (inbound.contentLength !== undefined && inbound.contentLength > 0);
}

function cancelStream(this: ServerHttp2Stream): void {
  this.close(http2Constants.NGHTTP2_CANCEL);
}

/** Give an HTTP/2 stream the request timeout HTTP/1 connections get from the server. */
export function limitStream(req: Req, timeoutMs: number): void {
  if (isHttp2(req)) req.stream.setTimeout(timeoutMs, cancelStream);
}

function send(ex: GatewayExchange, upstream: Upstream, preread: Buffer | undefined): Promise<Outcome> {
  const req = ex.req;
  const res = ex.res!;
  const inbound = ex.inbound!;
  const withBody = preread === undefined && hasBody(ex);
  let upload: Upload | undefined;
  let body: Buffer | Readable | undefined = preread;
  if (withBody) {
    const u: Upload = (upload = { ended: false, clientAborted: false, error: undefined, abort: new AbortController() });
    uploads.set(res, u);
    // the client's side went away before its whole body arrived: its doing (HTTP/2 says so
    // with 'aborted'; an HTTP/1 request closes incomplete — `complete` is not that on HTTP/2)
    const clientGone = () => {
      if (u.ended || ex.status !== 0) return;
      u.clientAborted = true;
      u.abort.abort();
    };
    if (isHttp2(req)) req.once('aborted', clientGone);
    else
      req.once('close', () => {
        if (!(req as IncomingMessage).complete) clientGone();
      });
    body = Readable.from(bodyChunks(req, ex.bodyLimit, inbound.contentLength, u), { objectMode: false });
    ex.continueBody();
  }
  const route = ex.route;
  const path = upstreamPath(route, ex.path);
  const headers = upstreamHeaders(ex);
  if (preread !== undefined) headers.push('content-length', String(preread.length));
  else if (inbound.contentLength !== undefined) headers.push('content-length', String(inbound.contentLength));
  const upstreamStarted = performance.now();
  const state = ex.state;
  return upstream
    .stream(
      {
        path: ex.query === '' ? path : `${path}?${ex.query}`,
        method: ex.method,
        headers,
        body,
        idempotentRetry: !withBody && preread === undefined && IDEMPOTENT.has(ex.method),
        headersTimeout: route.config.limits.timeoutMs,
        upload,
      },
      (response) => {
        routeStats(route, ex.ctx.metrics).upstream.observe((performance.now() - upstreamStarted) / 1000);
        // the client left, or the connection was already answered (malformed body): drop the answer
        if (res.destroyed || res.headersSent) return discardSink();
        ex.status = response.statusCode;
        const frame = route.config.frameOptions ?? state.config.headers.frameOptions;
        const out: Record<string, string | string[]> = { ...state.securityHeaders[frame] };
        filterResponseHeaders(response.headers as Record<string, string | string[] | undefined>, out);
        out['x-request-id'] = ex.requestId;
        for (const name in ex.responseHeaders) out[name] = ex.responseHeaders[name];
        if (route.config.cors) Object.assign(out, corsHeaders(route, ex.headers.origin, false));
        // draining: an answer that started before shutdown is still this connection's last
        if (ex.ctx.draining && !isHttp2(req)) out.connection = 'close';
        (res as ServerResponse).writeHead(ex.status, out);
        return res as unknown as Writable;
      },
    )
    .then(
      (): Outcome => undefined,
      (error: unknown): Outcome => {
        // failed after the head was sent: all that can be done is to cut the response
        if (ex.status !== 0) {
          if (!res.writableEnded) res.destroy();
          return ANSWERED;
        }
        return asProblem(error);
      },
    );
}

/**
 * The client's body, counted against the route's limit and its declared length.
 * Only a failure to read from the client is the client's: an error the upstream
 * side throws into this generator (undici destroying the body) passes through.
 */
async function* bodyChunks(req: Req, limit: number, declared: number | undefined, upload: Upload): AsyncGenerator<Buffer> {
  const chunks = (req as Readable).iterator({ destroyOnReturn: false });
  let total = 0;
  for (;;) {
    let next: IteratorResult<Buffer>;
    try {
      next = await chunks.next();
    } catch (error) {
      upload.clientAborted = true;
      throw (upload.error ??= AmbiguousRequest('the request body was broken off', error));
    }
    if (next.done) break;
    total += next.value.length;
    if (total > limit) throw (upload.error = PayloadTooLarge(limit));
    if (declared !== undefined && total > declared) throw (upload.error = AmbiguousRequest('the body is longer than its content-length'));
    yield next.value;
  }
  // HTTP/2: a body ends at END_STREAM; a stream reset without it ends the request too —
  // a reset stream is closed (and has its code) by the time its end is read
  if (isHttp2(req) && (req.stream.destroyed || (req.stream.rstCode ?? 0) !== 0)) upload.clientAborted = true;
  if (upload.clientAborted) throw (upload.error ??= AmbiguousRequest('the request body was broken off'));
  if (declared !== undefined && total !== declared) throw (upload.error = AmbiguousRequest('the body is shorter than its content-length'));
  upload.ended = true;
}

/** A WebSocket upgrade, once every phase said yes: the upstream's 101, then bytes both ways. */
function tunnel(ex: GatewayExchange, upstream: Upstream): Outcome | Promise<Outcome> {
  if (ex.method !== 'GET' || ex.inbound!.upgrade?.toLowerCase() !== 'websocket')
    return UnsupportedUpgrade('only WebSocket upgrades (GET, Upgrade: websocket) are proxied');
  const { socket, head } = ex.upgrade!;
  const path = upstreamPath(ex.route, ex.path);
  socket.on('error', () => socket.destroy());
  return upstream
    .upgrade({ path: ex.query ? `${path}?${ex.query}` : path, headers: upstreamHeaders(ex) })
    .then(({ headers, socket: upSocket }) => {
      if (socket.destroyed) {
        upSocket.destroy();
        return ANSWERED;
      }
      let response = 'HTTP/1.1 101 Switching Protocols\r\n';
      for (const [name, value] of Object.entries(headers)) {
        if (value === undefined || name === 'server' || name === 'x-powered-by' || name.startsWith('x-gatehouse-')) continue;
        for (const v of Array.isArray(value) ? value : [value]) response += `${name}: ${v}\r\n`;
      }
      response += `x-request-id: ${ex.requestId}\r\n\r\n`;
      socket.write(response);
      if (head.length > 0) upSocket.write(head);
      upSocket.on('error', () => socket.destroy());
      socket.on('close', () => upSocket.destroy());
      upSocket.on('close', () => socket.destroy());
      upSocket.pipe(socket);
      socket.pipe(upSocket);
      ex.status = 101;
      // the request lasts as long as its tunnel: what it holds (a concurrency slot) is released, and it is logged, at close
      return new Promise<Outcome>((resolve) => socket.once('close', () => resolve(ANSWERED)));
    });
}

/** Where an upstream answer goes when nobody will read it. */
function discardSink(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}
