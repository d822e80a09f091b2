// `gatehouse export monitoring`: Prometheus alert rules and a Grafana
// dashboard over the metrics every enforcement point already exports, scoped
// to the topology's zones and services. Deterministic output (same topology,
// same bytes). The rules are checked with `promtool check rules` and unit
// tested with `promtool test rules` in the test suite.
import { stringify } from 'yaml';
import type { Topology } from '../topology/schema.ts';

export interface MonitoringFiles {
  /** file name → contents */
  files: Map<string, string>;
}

interface Rule {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: 'critical' | 'warning' };
  annotations: { summary: string; description: string };
}

/** The alert rules (one group), by what each means for the topology. */
export function alertRules(): Rule[] {
  return [
    {
      alert: 'GatehouseGatewayDown',
      expr: 'up{job="gatehouse-gateway"} == 0',
      for: '1m',
      labels: { severity: 'critical' },
      annotations: { summary: 'A gateway does not answer its metrics scrape', description: 'Gateway {{ $labels.instance }} has been unreachable for a minute: its zone has no entry point.' },
    },
    {
      alert: 'GatehouseRefusalRatioHigh',
      expr:
        'sum by (zone) (rate(gatehouse_gateway_refused_total[5m])) / sum by (zone) (rate(gatehouse_gateway_requests_total[5m])) > 0.5 and sum by (zone) (rate(gatehouse_gateway_requests_total[5m])) > 1',
      for: '5m',
      labels: { severity: 'warning' },
      annotations: { summary: 'Most requests of a zone are refused', description: 'More than half of the requests to zone {{ $labels.zone }} are refused: an attack, a scanner or a broken client.' },
    },
    {
      alert: 'GatehouseCredentialFailures',
      expr: 'sum by (zone) (rate(gatehouse_gateway_refused_total{reason=~"unauthorized|token_.*|insufficient_scope"}[5m])) > 2',
      for: '5m',
      labels: { severity: 'warning' },
      annotations: { summary: 'Credentials keep failing at a gateway', description: 'Zone {{ $labels.zone }} refuses more than 2 credentials a second: credential stuffing or a misconfigured client.' },
    },
    {
      alert: 'GatehouseCircuitOpen',
      expr: 'max by (zone, service) (gatehouse_gateway_circuit_open) == 1',
      for: '1m',
      labels: { severity: 'warning' },
      annotations: { summary: 'An upstream circuit is open', description: 'The gateway of {{ $labels.zone }} stopped sending to {{ $labels.service }} after repeated failures.' },
    },
    {
      alert: 'GatehousePolicyBundleRefused',
      expr: 'sum by (zone, code) (increase(gatehouse_gateway_bundles_refused_total[10m])) > 0',
      for: '0m',
      labels: { severity: 'critical' },
      annotations: { summary: 'A gateway refused a policy bundle', description: 'The gateway of {{ $labels.zone }} refused a bundle ({{ $labels.code }}): tampering, rollback or an expired control plane.' },
    },
    {
      alert: 'GatehouseIngressRefusals',
      expr: 'sum by (zone, reason) (rate(gatehouse_gateway_ingress_refused_total[5m])) > 0.1',
      for: '5m',
      labels: { severity: 'warning' },
      annotations: { summary: 'Connections are refused at a locked ingress', description: 'Zone {{ $labels.zone }} closes connections at its ingress ({{ $labels.reason }}): someone without a workload identity keeps trying.' },
    },
    {
      alert: 'GatehouseMeshDenials',
      expr: 'sum by (service, caller, reason) (rate(gatehouse_mesh_denials_total[5m])) > 0.05',
      for: '5m',
      labels: { severity: 'warning' },
      annotations: { summary: 'A workload calls where it has no edge', description: '{{ $labels.caller }} is refused at {{ $labels.service }} ({{ $labels.reason }}): lateral movement, or an edge missing from the topology.' },
    },
  ];
}

/** Every PromQL expression the dashboard uses (also checked with promtool, as recording rules). */
export function dashboardQueries(): { title: string; expr: string; unit: string }[] {
  return [
    { title: 'Requests per second by zone', expr: 'sum by (zone) (rate(gatehouse_gateway_requests_total[1m]))', unit: 'reqps' },
    { title: 'Refusals per second by reason', expr: 'sum by (zone, reason) (rate(gatehouse_gateway_refused_total[1m]))', unit: 'reqps' },
    { title: 'p99 latency by zone', expr: 'histogram_quantile(0.99, sum by (zone, le) (rate(gatehouse_gateway_request_duration_seconds_bucket[5m])))', unit: 's' },
    { title: 'Open circuits', expr: 'max by (zone, service) (gatehouse_gateway_circuit_open)', unit: 'short' },
    { title: 'Mesh denials by caller', expr: 'sum by (service, caller, reason) (rate(gatehouse_mesh_denials_total[5m]))', unit: 'reqps' },
    { title: 'Policy bundle revision per gateway', expr: 'max by (zone) (gatehouse_gateway_bundle_revision)', unit: 'short' },
    { title: 'Connections refused at the ingress', expr: 'sum by (zone, reason) (rate(gatehouse_gateway_ingress_refused_total[5m]))', unit: 'cps' },
  ];
}

function dashboard(topology: Topology): unknown {
  const zones = Object.keys(topology.zones).sort();
  return {
    title: `Gatehouse — ${topology.trustDomain}`,
    uid: `gatehouse-${topology.trustDomain.replace(/[^a-z0-9-]/g, '-')}`.slice(0, 40),
    schemaVersion: 39,
    version: 1,
    editable: false,
    time: { from: 'now-1h', to: 'now' },
    refresh: '10s',
    tags: ['gatehouse'],
    templating: {
      list: [
        {
          name: 'zone',
          type: 'custom',
          query: zones.join(','),
          multi: true,
          includeAll: true,
          current: { text: 'All', value: '$__all' },
          options: zones.map((z) => ({ text: z, value: z, selected: false })),
        },
      ],
    },
    panels: dashboardQueries().map((q, i) => ({
      id: i + 1,
      type: 'timeseries',
      title: q.title,
      gridPos: { h: 8, w: 12, x: (i % 2) * 12, y: Math.floor(i / 2) * 8 },
      fieldConfig: { defaults: { unit: q.unit }, overrides: [] },
      targets: [{ refId: 'A', expr: q.expr.replace(/\(gatehouse_gateway_(\w+)(\{[^}]*\})?/, (_m, name: string, sel?: string) => `(gatehouse_gateway_${name}{${sel ? `${sel.slice(1, -1)},` : ''}zone=~"$zone"}`) }],
    })),
  };
}

export function exportMonitoring(topology: Topology): MonitoringFiles {
  const files = new Map<string, string>();
  files.set(
    'gatehouse-alerts.yml',
    `# Prometheus alert rules for the Gatehouse topology of ${topology.trustDomain} (gatehouse export monitoring).\n` +
      stringify({ groups: [{ name: 'gatehouse', rules: alertRules() }] }, { lineWidth: 0 }),
  );
  files.set('gatehouse-dashboard.json', JSON.stringify(dashboard(topology), null, 2) + '\n');
  return { files };
}
