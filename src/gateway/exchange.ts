// The per-request object: one per request, whatever its way in (HTTP/1.1,
// HTTP/2, a WebSocket upgrade). Every phase reads and adds to it; the policy
// units see only its `Exchange` side (policies/policy.ts), never the rest.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AccessLog, Logger } from '../shared/logger.ts';
import type { Clock } from '../shared/clock.ts';
import type { GatehouseError } from '../shared/errors.ts';
import { readBody } from '../shared/body.ts';
import type { InboundHeaders } from './headers.ts';
import { pathParams, type CompiledRoute } from './router.ts';
import type { GatewayState } from './state.ts';
import type { EventFields } from '../monitor/event.ts';
import type { TraceContext } from '../shared/trace-context.ts';
import type { GatewayMetrics } from './metrics.ts';
import type { GatewayTracer, RequestSpan } from './tracing.ts';
import type { UsageEvents } from './usage-events.ts';
import type { Chain } from './policies/chain.ts';
import type { Exchange, Identity } from './policies/policy.ts';

export type Req = IncomingMessage | Http2ServerRequest;
export type Res = ServerResponse | Http2ServerResponse;

/** What the pipeline needs from the listener that received the request. */
export interface PipelineContext {
  state(): GatewayState;
  metrics: GatewayMetrics;
  accessLog: AccessLog | undefined;
  logHeaders: boolean;
  /** 'https' or 'http': what this listener speaks. */
  proto: 'https' | 'http';
  logger: Logger;
  clock: Clock;
  /** Shutting down: HTTP/1 answers carry Connection: close, new HTTP/2 sessions get GOAWAY. */
  draining: boolean;
  /** Security events for the control plane (refusals); absent: none are sent. Never blocks. */
  events?: (fields: EventFields) => void;
  /** OpenTelemetry export (gateway.tracing.otlp); absent: only the W3C context is propagated. */
  tracer?: GatewayTracer;
  /** What the monitor learns from requests let through (token use, upstream 403/404, traffic); absent with `events`. */
  usage?: UsageEvents;
}

/** HTTP/2 is the connection's protocol, not the version a request line claims. */
export const isHttp2 = (req: Req): req is Http2ServerRequest => (req as Http2ServerRequest).stream !== undefined;

/** A WebSocket upgrade: the client's socket and the bytes read past the request head. */
export interface Upgrade {
  socket: Duplex;
  head: Buffer;
}

export class GatewayExchange implements Exchange {
  // --- what policy units see -------------------------------------------------
  readonly method: string;
  path = '';
  query = '';
  /** The Host (or :authority) as sent; `hostname` is the normalised one the router matched. */
  host = '';
  readonly headers: IncomingMessage['headers'];
  clientAddress = '';
  requestId: string;
  readonly zone: string;
  route!: CompiledRoute;
  /** The one instant of this request (rate limits, Cedar and tokens read the same). */
  readonly now: number;
  identity?: Identity;
  upstreamHeaders: string[] = [];
  responseHeaders: Record<string, string> = {};
  onDone: (() => void)[] = [];
  stripHeaders?: ReadonlySet<string>;

  // --- what only the pipeline sees --------------------------------------------
  readonly req: Req;
  /** The response; undefined for an upgrade (answered on `upgrade.socket`). */
  readonly res: Res | undefined;
  readonly upgrade: Upgrade | undefined;
  readonly ctx: PipelineContext;
  /** The configuration generation this request started with; a reload never changes it mid-request. */
  readonly state: GatewayState;
  readonly started: number;
  peer = '';
  hostname = '';
  inbound: InboundHeaders | undefined;
  /** W3C trace context for the upstream (set by hygiene once the headers are read). */
  trace: TraceContext | undefined;
  /** This request's exported span, when tracing is on; ended by respond. */
  span: RequestSpan | undefined;
  /** The request target contained ';' path parameters. */
  hasParameters = false;
  /** The route was matched (`route` is set). */
  routed = false;
  chain: Chain | undefined;
  bodyLimit = 0;
  /** A CORS preflight the gateway answers for `route`. */
  preflight = false;
  /** The body as a policy read it; the upstream then gets exactly these bytes. */
  body: Promise<Buffer> | undefined;
  /** Status sent to the client (0: none yet). */
  status = 0;
  /** Why the gateway refused the request, when it did. */
  error: GatehouseError | undefined;
  /** A 100 Continue was sent (see continueBody). */
  continued = false;

  constructor(req: Req, res: Res | undefined, upgrade: Upgrade | undefined, ctx: PipelineContext) {
    this.req = req;
    this.res = res;
    this.upgrade = upgrade;
    this.ctx = ctx;
    this.state = ctx.state();
    this.zone = this.state.zone;
    this.method = req.method ?? '';
    this.headers = req.headers;
    this.now = ctx.clock.now();
    this.started = performance.now();
    this.requestId = randomUUID();
  }

  peerCertificate(): Buffer | undefined {
    const socket = (isHttp2(this.req) ? this.req.stream.session?.socket : this.req.socket) as TLSSocket | undefined;
    if (typeof socket?.getPeerCertificate !== 'function') return undefined;
    return socket.getPeerCertificate(false)?.raw;
  }

  pathParams(): Record<string, string> {
    return pathParams(this.route, this.path);
  }

  requestUrl(): string {
    return `${this.ctx.proto}://${this.host}${this.path}`;
  }

  readBody(): Promise<Buffer> {
    if (this.body !== undefined) return this.body;
    const inbound = this.inbound!;
    const withBody = isHttp2(this.req)
      ? !(this.req.stream.endAfterHeaders || inbound.contentLength === 0)
      : inbound.chunked || (inbound.contentLength !== undefined && inbound.contentLength > 0);
    if (withBody) this.continueBody();
    return (this.body = withBody ? readBody(this.req, this.bodyLimit) : Promise.resolve(Buffer.alloc(0)));
  }

  /**
   * `Expect: 100-continue`: the client waits for a 100 before it sends its body.
   * It gets one only here, when the body is about to be read — past every check:
   * a request refused before never has its upload started.
   */
  continueBody(): void {
    const res = this.res;
    if (res === undefined || res.headersSent || this.continued) return;
    const expect = this.headers.expect;
    if (expect === undefined || !CONTINUE.test(expect)) return;
    this.continued = true;
    res.writeContinue();
  }
}

const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;
