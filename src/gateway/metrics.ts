// Gateway metrics (prom-client), one registry per gateway so several gateways
// can live in one process (tests) and workers can be aggregated.
import client from 'prom-client';
import { FastCounter, FastHistogram } from '../shared/fast-metrics.ts';

export interface GatewayMetrics {
  registry: client.Registry;
  /** counted on every request: children kept per route, method and status class (see FastCounter) */
  requests: FastCounter<'route' | 'method' | 'status_class'>;
  /** observed on every request: children kept per route (see FastHistogram) */
  duration: FastHistogram<'route'>;
  upstreamDuration: FastHistogram<'service'>;
  connections: client.Gauge;
  tlsFailures: client.Counter;
  refused: client.Counter<'reason'>;
  circuit: client.Gauge<'service'>;
  circuitOpened: client.Counter<'service' | 'reason'>;
  connectionsShed: client.Counter<'reason'>;
  http2SessionErrors: client.Counter;
  reloads: client.Counter<'result'>;
  bundleRevision: client.Gauge;
  bundlesRefused: client.Counter<'code'>;
  ingressRefused: client.Counter<'reason'>;
}

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(labels: Record<string, string>): GatewayMetrics {
  const registry = new client.Registry();
  registry.setDefaultLabels(labels);
  const registers = [registry];
  return {
    registry,
    requests: new FastCounter({
      name: 'gatehouse_gateway_requests_total',
      help: 'Requests answered, by route, method and status class',
      labelNames: ['route', 'method', 'status_class'] as const,
      registers,
    }),
    duration: new FastHistogram({
      name: 'gatehouse_gateway_request_duration_seconds',
      help: 'Time from request to response end, by route',
      labelNames: ['route'] as const,
      buckets: BUCKETS,
      registers,
    }),
    upstreamDuration: new FastHistogram({
      name: 'gatehouse_gateway_upstream_duration_seconds',
      help: 'Time until the upstream sent response headers, by service',
      labelNames: ['service'] as const,
      buckets: BUCKETS,
      registers,
    }),
    connections: new client.Gauge({
      name: 'gatehouse_gateway_open_connections',
      help: 'Open client connections',
      registers,
    }),
    tlsFailures: new client.Counter({
      name: 'gatehouse_gateway_tls_handshake_failures_total',
      help: 'TLS handshakes that failed',
      registers,
    }),
    refused: new client.Counter({
      name: 'gatehouse_gateway_refused_total',
      help: 'Requests the gateway answered with a problem of its own (refusals, upstream failures), by code; shadow_<code>: what a unit in shadow mode would have refused',
      labelNames: ['reason'] as const,
      registers,
    }),
    circuit: new client.Gauge({
      name: 'gatehouse_gateway_circuit_open',
      help: '1 while the circuit breaker of an upstream is open or half open',
      labelNames: ['service'] as const,
      registers,
    }),
    circuitOpened: new client.Counter({
      name: 'gatehouse_gateway_circuit_opened_total',
      help: 'Times the circuit breaker of an upstream opened, by the failure that opened it',
      labelNames: ['service', 'reason'] as const,
      registers,
    }),
    connectionsShed: new client.Counter({
      name: 'gatehouse_gateway_connections_shed_total',
      help: 'Client connections closed by the gateway to protect the others: handshake_timeout, per_source, shed (made room), full',
      labelNames: ['reason'] as const,
      registers,
    }),
    http2SessionErrors: new client.Counter({
      name: 'gatehouse_gateway_http2_session_errors_total',
      help: 'HTTP/2 sessions that ended in an error (a client that reset or vanished)',
      registers,
    }),
    reloads: new client.Counter({
      name: 'gatehouse_gateway_reloads_total',
      help: 'Configuration reloads, by result',
      labelNames: ['result'] as const,
      registers,
    }),
    bundleRevision: new client.Gauge({
      name: 'gatehouse_gateway_bundle_revision',
      help: 'The policy bundle revision in force (0: none, every request refused; or the gateway enforces its topology file)',
      registers,
    }),
    bundlesRefused: new client.Counter({
      name: 'gatehouse_gateway_bundles_refused_total',
      help: 'Policy bundles refused (never applied), by bundle_* code',
      labelNames: ['code'] as const,
      registers,
    }),
    ingressRefused: new client.Counter({
      name: 'gatehouse_gateway_ingress_refused_total',
      help: "Connections closed at the zone's locked ingress, by reason (source, no_certificate, certificate_invalid, not_a_caller)",
      labelNames: ['reason'] as const,
      registers,
    }),
  };
}
