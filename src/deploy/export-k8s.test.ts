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
