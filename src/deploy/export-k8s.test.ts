import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigError, loadTopology } from '../topology/index.ts';
import { exportK8s } from './export-k8s.ts';

const topology = (upstream: string, serviceName = 'legacy', zone = 'z') => `version: 1
trustDomain: k.test
zones:
  ${zone}:
    gateway: { listen: 127.0.0.1:8443, tls: { cert: tls/c.pem, key: tls/k.pem } }
    routes: [{ path: /a, service: ${serviceName}, auth: jwt }]
services:
  ${serviceName}:
    zone: ${zone}
    upstream: ${upstream}
    allow: [{ caller: gateway, paths: [{ path: /a }] }]
`;

function exported(text: string): ReturnType<typeof exportK8s> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-unit-'));
  try {
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(file, text);
    return exportK8s(loadTopology(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function refusal(text: string): string[] {
  try {
    exported(text);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.issues.map((i) => `${i.line}: ${i.message}`);
  }
  assert.fail('not refused');
}

test('a service outside the cluster (upstream only) is reached at its address, on its port, and runs no pod', () => {
  const files = exported(topology('https://10.1.2.3:7443'));
  const objects = parseAllDocuments(files.get('gh-z.yaml')!).map((d) => d.toJS());
  assert.ok(!objects.some((o) => o.kind === 'Deployment' && o.metadata.name === 'legacy'));
  const gateway = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'allow-gateway');
  assert.deepEqual(
    gateway.spec.egress.find((r: { to?: { ipBlock?: unknown }[] }) => r.to?.[0].ipBlock),
    { to: [{ ipBlock: { cidr: '10.1.2.3/32' } }], ports: [{ protocol: 'TCP', port: 7443 }] },
  );
});

test('what a NetworkPolicy or a Kubernetes name cannot express is refused at its line', () => {
  assert.deepEqual(refusal(topology('https://legacy.internal:7443')), [
    '10: legacy.internal is a name: a NetworkPolicy matches addresses, so a service outside the cluster needs an IP upstream (or a run: module)',
  ]);
  assert.deepEqual(refusal(topology('https://10.1.2.3:7443', 'gateway')), ['9: a service named gateway would share its Kubernetes name with a Gatehouse component: rename it']);
  const long = `z${'x'.repeat(61)}`;
  assert.deepEqual(refusal(topology('https://10.1.2.3:7443', 'legacy', long)), [`5: zone name too long for a Kubernetes namespace (gh-${long} is over 63 characters)`]);
});

test('monitoring: the gateway admin listener off loopback is a pod port for the scrapers only, never the Service; log sinks are no pod flow', () => {
  const text = topology('https://10.1.2.3:7443').replace(
    'gateway: { listen: 127.0.0.1:8443,',
    'gateway: { admin: { listen: 0.0.0.0:9901 }, listen: 127.0.0.1:8443,',
  ) + "monitor: { scrapers: [10.42.7.0/24], logSinks: ['10.0.9.20:24224'] }\n";
  const objects = parseAllDocuments(exported(text).get('gh-z.yaml')!).map((d) => d.toJS());
  const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'gateway');
  const container = deployment.spec.template.spec.containers[0];
  assert.deepEqual(container.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]), [['https', 8443], ['admin', 9901]]);
  assert.deepEqual(container.args.slice(container.args.indexOf('--admin-listen'), container.args.indexOf('--admin-listen') + 2), ['--admin-listen', '0.0.0.0:9901']);
  const service = objects.find((o) => o.kind === 'Service' && o.metadata.name === 'gateway');
  assert.deepEqual(service.spec.ports.map((p: { name: string }) => p.name), ['https']);
  const policy = objects.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'allow-gateway');
  const admin = policy.spec.ingress.filter((r: { ports: { port: number }[] }) => r.ports[0].port === 9901);
  assert.deepEqual(admin, [{ from: [{ ipBlock: { cidr: '10.42.7.0/24' } }], ports: [{ protocol: 'TCP', port: 9901 }] }]);
  const files = [...exported(text).values()];
  const policies = files.flatMap((f) => parseAllDocuments(f).map((d) => d.toJS())).filter((o) => o.kind === 'NetworkPolicy');
  assert.doesNotMatch(JSON.stringify(policies), /10\.0\.9\.20/, 'pods log to stdout: no egress to a log sink');
  assert.match(files.join(''), /# gateway:z fetches its policy bundle and sends its security events/);
});
