// `gatehouse export monitoring`: the alert rules pass `promtool check rules`
// and fire (and stay quiet) as `promtool test rules` expects; every dashboard
// query is valid PromQL; the output is deterministic. Needs Debian's
// prometheus package (promtool): skipped with the reason where it is missing,
// except under CI=true (.ci/run installs it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { loadTopology } from '../src/topology/load.ts';
import { exportMonitoring, dashboardQueries } from '../src/monitor/index.ts';

const root = path.join(import.meta.dirname, '..');
const example = loadTopology(path.join(root, 'examples/shop/gatehouse.yaml')).topology;
const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p));
const skip = promtool === undefined && process.env.CI !== 'true' ? 'promtool is not installed (apt-get install prometheus); CI installs it' : false;
if (skip) process.stdout.write(`# skipped: ${skip}\n`);
const out = mkdtempSync(path.join(tmpdir(), 'gh-monitoring-'));

function run(...args: string[]): { status: number | null; output: string } {
  assert.ok(promtool, 'promtool is required under CI=true');
  const r = spawnSync(promtool, args, { encoding: 'utf8', cwd: out });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

test('the export is deterministic; the CLI writes the two files', () => {
  const a = exportMonitoring(example).files;
  const b = exportMonitoring(example).files;
  assert.deepEqual([...a.keys()], ['gatehouse-alerts.yml', 'gatehouse-dashboard.json']);
  assert.deepEqual(a, b);
  const cli = spawnSync(process.execPath, [path.join(root, 'src/cli/main.ts'), 'export', 'monitoring', '--config', 'examples/shop/gatehouse.yaml', '--out', out], { cwd: root, encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  assert.equal(readFileSync(path.join(out, 'gatehouse-alerts.yml'), 'utf8'), a.get('gatehouse-alerts.yml'));
  const dash = JSON.parse(readFileSync(path.join(out, 'gatehouse-dashboard.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[]; templating: { list: { options: { value: string }[] }[] } };
  assert.equal(dash.panels.length, dashboardQueries().length);
  assert.deepEqual(dash.templating.list[0].options.map((o) => o.value), ['corp', 'internal', 'partner', 'private', 'public']);
});

test('promtool: the rules check, every dashboard query is valid PromQL', { skip }, () => {
  const checked = run('check', 'rules', 'gatehouse-alerts.yml');
  assert.equal(checked.status, 0, checked.output);
  assert.match(checked.output, /SUCCESS: 7 rules found/);
  // the dashboard's queries (with Grafana's $zone) as recording rules: promtool parses each
  const dash = JSON.parse(readFileSync(path.join(out, 'gatehouse-dashboard.json'), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
  const rules = dash.panels.map((p, i) => ({ record: `gatehouse:dashboard_panel_${i + 1}`, expr: p.targets[0].expr }));
  writeFileSync(path.join(out, 'dashboard-queries.yml'), stringify({ groups: [{ name: 'dashboard', rules }] }));
  const queries = run('check', 'rules', 'dashboard-queries.yml');
  assert.equal(queries.status, 0, queries.output);
});

test('promtool test rules: each alert fires on its condition and stays quiet otherwise', { skip }, () => {
  const tests = {
    rule_files: ['gatehouse-alerts.yml'],
    evaluation_interval: '1m',
    tests: [
      {
        interval: '1m',
        input_series: [
          { series: 'gatehouse_gateway_circuit_open{zone="public",service="catalog",instance="a"}', values: '0 1 1 1 1' },
          { series: 'gatehouse_gateway_circuit_open{zone="public",service="echo",instance="a"}', values: '0 0 0 0 0' },
          { series: 'up{job="gatehouse-gateway",instance="gw-private"}', values: '1 0 0 0 0' },
          { series: 'gatehouse_gateway_bundles_refused_total{zone="private",code="bundle_rollback",instance="b"}', values: '0 0 1 1 1' },
          { series: 'gatehouse_gateway_requests_total{zone="public",route="echo",method="GET",status_class="4xx",instance="a"}', values: '0+600x10' },
          { series: 'gatehouse_gateway_refused_total{zone="public",reason="unauthorized",instance="a"}', values: '0+540x10' },
          { series: 'gatehouse_mesh_denials_total{service="orders",caller="catalog",reason="no_edge",instance="c"}', values: '0+30x10' },
        ],
        alert_rule_test: [
          { eval_time: '4m', alertname: 'GatehouseCircuitOpen', exp_alerts: [{ exp_labels: { severity: 'warning', zone: 'public', service: 'catalog' }, exp_annotations: { summary: 'An upstream circuit is open', description: 'The gateway of public stopped sending to catalog after repeated failures.' } }] },
          { eval_time: '1m', alertname: 'GatehouseGatewayDown', exp_alerts: [] },
          { eval_time: '3m', alertname: 'GatehouseGatewayDown', exp_alerts: [{ exp_labels: { severity: 'critical', job: 'gatehouse-gateway', instance: 'gw-private' }, exp_annotations: { summary: 'A gateway does not answer its metrics scrape', description: 'Gateway gw-private has been unreachable for a minute: its zone has no entry point.' } }] },
          { eval_time: '1m', alertname: 'GatehousePolicyBundleRefused', exp_alerts: [] },
          { eval_time: '3m', alertname: 'GatehousePolicyBundleRefused', exp_alerts: [{ exp_labels: { severity: 'critical', zone: 'private', code: 'bundle_rollback' }, exp_annotations: { summary: 'A gateway refused a policy bundle', description: 'The gateway of private refused a bundle (bundle_rollback): tampering, rollback or an expired control plane.' } }] },
          { eval_time: '10m', alertname: 'GatehouseRefusalRatioHigh', exp_alerts: [{ exp_labels: { severity: 'warning', zone: 'public' }, exp_annotations: { summary: 'Most requests of a zone are refused', description: 'More than half of the requests to zone public are refused: an attack, a scanner or a broken client.' } }] },
          { eval_time: '10m', alertname: 'GatehouseCredentialFailures', exp_alerts: [{ exp_labels: { severity: 'warning', zone: 'public' }, exp_annotations: { summary: 'Credentials keep failing at a gateway', description: 'Zone public refuses more than 2 credentials a second: credential stuffing or a misconfigured client.' } }] },
          { eval_time: '10m', alertname: 'GatehouseMeshDenials', exp_alerts: [{ exp_labels: { severity: 'warning', service: 'orders', caller: 'catalog', reason: 'no_edge' }, exp_annotations: { summary: 'A workload calls where it has no edge', description: 'catalog is refused at orders (no_edge): lateral movement, or an edge missing from the topology.' } }] },
          { eval_time: '10m', alertname: 'GatehouseIngressRefusals', exp_alerts: [] },
        ],
      },
    ],
  };
  writeFileSync(path.join(out, 'alerts.test.yml'), stringify(tests));
  const r = run('test', 'rules', 'alerts.test.yml');
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /SUCCESS/);
});
