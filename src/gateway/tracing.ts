// OpenTelemetry export (gateway.tracing.otlp, off by default): one SERVER
// span per request, sent in batches over OTLP/HTTP by the OpenTelemetry SDK.
// The span continues the caller's valid traceparent (or starts a trace) and
// is the parent the upstream is told about, so a service's spans hang under
// the gateway's. Spans carry the method, the route, the status and the
// refusal code — never the query, a header or an identity. Export never
// blocks a request: the batch queue is bounded and drops when full.
import { createRequire } from 'node:module';
import type { Span, Tracer } from '@opentelemetry/api';
import { parseTraceparent, boundedTracestate, type TraceContext } from '../shared/trace-context.ts';

// The SDK (some 300 modules) is loaded by createTracer, only for a gateway that
// exports spans; synchronously, as the gateway provisions its tracer. Through
// require, so the API is the same copy prom-client already loaded.
const require = createRequire(import.meta.url);

export interface TracingConfig {
  endpoint: string;
  sampleRatio: number;
}

/** A request's span: ended once, in the respond phase. */
export interface RequestSpan {
  end(o: { status: number; route: string | undefined; code: string | undefined; endTime: number }): void;
}

export interface GatewayTracer {
  /** The span of a request and the trace context to send upstream (this span as the parent). */
  start(o: { method: string; traceparent: string | undefined; tracestate: string | undefined; startTime: number }): { trace: TraceContext; span: RequestSpan };
  /** Sends what is queued and stops (the gateway's close). */
  shutdown(): Promise<void>;
}

export function createTracer(config: TracingConfig, o: { zone: string; trustDomain: string }): GatewayTracer {
  const { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } = require('@opentelemetry/api') as typeof import('@opentelemetry/api');
  const { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider } = require('@opentelemetry/sdk-trace') as typeof import('@opentelemetry/sdk-trace');
  const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = require('@opentelemetry/resources') as typeof import('@opentelemetry/resources');
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': `gatehouse-gateway-${o.zone}`, 'service.namespace': o.trustDomain }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: new OTLPTraceExporter({ url: config.endpoint, timeoutMillis: 5_000 }),
        maxQueueSize: 4096,
        maxExportBatchSize: 512,
        scheduledDelayMillis: 1_000,
        exportTimeoutMillis: 5_000,
      }),
    ],
  });
  const tracer: Tracer = provider.getTracer('gatehouse-gateway');
  return {
    start({ method, traceparent, tracestate, startTime }) {
      const parent = parseTraceparent(traceparent);
      const context = parent ? trace.setSpanContext(ROOT_CONTEXT, { ...parent, isRemote: true }) : ROOT_CONTEXT;
      const span: Span = tracer.startSpan(method, { kind: SpanKind.SERVER, startTime, attributes: { 'http.request.method': method } }, context);
      const sc = span.spanContext();
      const flags = (sc.traceFlags & TraceFlags.SAMPLED) === TraceFlags.SAMPLED ? '01' : '00';
      return {
        trace: {
          traceId: sc.traceId,
          traceparent: `00-${sc.traceId}-${sc.spanId}-${flags}`,
          tracestate: parent ? boundedTracestate(tracestate) : undefined,
        },
        span: {
          end({ status, route, code, endTime }) {
            if (route !== undefined) {
              span.setAttribute('http.route', route);
              span.updateName(`${method} ${route}`);
            }
            span.setAttribute('http.response.status_code', status);
            if (code !== undefined) span.setAttribute('gatehouse.code', code);
            if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: code });
            span.end(endTime);
          },
        },
      };
    },
    shutdown: () => provider.shutdown(),
  };
}
