// `gatehouse export k8s` on the example made ready for a cluster (each
// authority's issuer, TLS files instead of the dev CA, trusted zones by issuer:
// what the export asks for; see k8sReady): every document validates offline
// against the Kubernetes schemas (kubernetes-models), every pod meets Pod
// Security "restricted" and more, every namespace denies by default both ways,
// and the NetworkPolicies, evaluated as a cluster would, let through exactly
// the example's flows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments, parseDocument } from 'yaml';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/main.ts');
const EXAMPLE_FILE = path.resolve('examples/shop/gatehouse.yaml');

/**
 * The example as a cluster needs it, in a folder beside the example's files:
 * each authority's issuer (its Service's name), TLS files for gateways and
 * authorities (mounted from Secrets), trusted zones by issuer and JWKS URL.
 */
function k8sReady(file: string): { file: string; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-ready-'));
  for (const entry of readdirSync(path.dirname(file))) if (entry !== path.basename(file)) symlinkSync(path.join(path.dirname(file), entry), path.join(dir, entry));
  const doc = parseDocument(readFileSync(file, 'utf8'));
  const zones = doc.toJS().zones as Record<string, { gateway?: unknown; authority?: { listen: string; trustedZones?: unknown[] } }>;
  const issuer = (z: string) => `https://authority.gh-${z}.svc:${zones[z].authority!.listen.split(':').pop()}`;
  for (const [z, zone] of Object.entries(zones)) {
    if (zone.gateway) doc.setIn(['zones', z, 'gateway', 'tls'], doc.createNode({ cert: `tls/gateway-${z}.crt`, key: `tls/gateway-${z}.key` }));
    if (!zone.authority) continue;
    doc.setIn(['zones', z, 'authority', 'issuer'], issuer(z));
    doc.setIn(['zones', z, 'authority', 'tls'], doc.createNode({ cert: `tls/authority-${z}.crt`, key: `tls/authority-${z}.key` }));
    (zone.authority.trustedZones ?? []).forEach((t, i) => {
      if (typeof t === 'string') doc.setIn(['zones', z, 'authority', 'trustedZones', i], doc.createNode({ zone: t, issuer: issuer(t), jwksUri: `${issuer(t)}/jwks`, revocationFeed: { clientId: `${z}-feed`, clientSecretEnv: `${t.toUpperCase()}_FEED_SECRET` } }));
    });
  }
  const out = path.join(dir, 'gatehouse.yaml');
  writeFileSync(out, doc.toString());
  return { file: out, dir };
}
const ready = k8sReady(EXAMPLE_FILE);
process.on('exit', () => rmSync(ready.dir, { recursive: true, force: true }));
const EXAMPLE = ready.file;

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: any;
  [key: string]: any;
}

/** The NOTES.md written beside each export's manifests. */
const notesOf = new WeakMap<Map<string, string>, string>();

async function exportTo(config: string, ...extra: string[]): Promise<{ files: Map<string, string>; objects: K8sObject[] }> {
  const out = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-'));
  try {
    await run(process.execPath, [CLI, 'export', 'k8s', '--config', config, '--out', out, ...extra]);
    const files = new Map(readdirSync(out).sort().filter((f) => f.endsWith('.yaml')).map((f) => [f, readFileSync(path.join(out, f), 'utf8')]));
    notesOf.set(files, readFileSync(path.join(out, 'NOTES.md'), 'utf8'));
    const objects: K8sObject[] = [];
    for (const text of files.values())
      for (const doc of parseAllDocuments(text)) {
        assert.deepEqual(doc.errors, []);
        if (doc.contents !== null) objects.push(doc.toJS() as K8sObject);
      }
    return { files, objects };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const example = exportTo(EXAMPLE);

test('every exported document validates against the Kubernetes schemas', async () => {
  const { objects } = await example;
  const counts = new Map<string, number>();
  for (const o of objects) {
    const module = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<string, new (data: unknown) => { validate(): void }>;
    const Model = module[o.kind];
    assert.ok(Model, `${o.apiVersion} ${o.kind} is a Kubernetes kind`);
    assert.doesNotThrow(() => new Model(o).validate(), `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`);
    counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
  }
  process.stdout.write(`# validated ${objects.length} objects: ${[...counts].map(([k, n]) => `${n} ${k}`).join(', ')}\n`);
  const t = parseDocument(readFileSync(EXAMPLE, 'utf8')).toJS() as { zones: Record<string, { gateway?: unknown; authority?: unknown }>; services: Record<string, { run?: string }> };
  const zones = Object.values(t.zones);
  assert.equal(counts.get('Namespace'), zones.length + 1);
  // a gateway, an authority and a run: service each a Deployment; the CA's pod runs the control plane too (they share its state)
  const deployments = zones.filter((z) => z.gateway).length + zones.filter((z) => z.authority).length + Object.values(t.services).filter((s) => s.run).length + 1;
  assert.equal(counts.get('Deployment'), deployments);
  assert.equal(counts.get('ConfigMap'), 2 * (zones.length + 1) + 1, "the topology and the discovery files, per namespace, and the CA's attestation config");
});

test('every namespace enforces Pod Security restricted and denies all traffic by default, DNS to kube-dns excepted', async () => {
  const { objects } = await example;
  for (const ns of objects.filter((o) => o.kind === 'Namespace')) {
    const name = ns.metadata.name;
    assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted', name);
    const inNs = objects.filter((o) => o.metadata.namespace === name);
    const deny = inNs.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'default-deny');
    assert.deepEqual(deny?.spec, { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }, name);
    const dns = inNs.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'allow-dns');
    assert.deepEqual(dns?.spec.egress[0].ports, [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }]);
    assert.deepEqual(dns?.spec.egress[0].to[0].podSelector, { matchLabels: { 'k8s-app': 'kube-dns' } });
    assert.equal(dns?.spec.ingress, undefined);
    assert.ok(inNs.some((o) => o.kind === 'ResourceQuota'), `${name} has a quota`);
    assert.ok(inNs.some((o) => o.kind === 'LimitRange'), `${name} has a limit range`);
  }
});

test('every pod meets Pod Security restricted, with a read-only root, limits, no API token and no inlined secret', async () => {
  const { objects } = await example;
  for (const d of objects.filter((o) => o.kind === 'Deployment')) {
    const where = `${d.metadata.namespace}/${d.metadata.name}`;
    const pod = d.spec.template.spec;
    assert.equal(pod.automountServiceAccountToken, false, where);
    assert.equal(pod.securityContext.runAsNonRoot, true, where);
    assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault', where);
    const sa = objects.find((o) => o.kind === 'ServiceAccount' && o.metadata.namespace === d.metadata.namespace && o.metadata.name === pod.serviceAccountName);
    assert.equal(sa?.automountServiceAccountToken, false, where);
    for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
      const sc = c.securityContext;
      assert.equal(sc.runAsNonRoot, true, where);
      assert.ok(sc.runAsUser > 0, where);
      assert.equal(sc.allowPrivilegeEscalation, false, where);
      assert.deepEqual(sc.capabilities, { drop: ['ALL'] }, where);
      assert.equal(sc.seccompProfile.type, 'RuntimeDefault', where);
      assert.equal(sc.readOnlyRootFilesystem, true, where);
      for (const k of ['requests', 'limits']) assert.ok(c.resources[k].cpu && c.resources[k].memory, `${where} ${k}`);
      for (const e of c.env)
        assert.ok(
          e.name === 'NODE_ENV' ||
            e.valueFrom?.secretKeyRef ||
            (e.name === 'GATEHOUSE_JOIN_TOKEN' && e.value === 'file:/var/run/secrets/gatehouse/ca-token/token') ||
            (e.name === 'GATEHOUSE_VAULT_URL' && e.value === 'https://vault.gatehouse.svc:9450'),
          `${where}: ${e.name} comes from a Secret`,
        );
    }
    // a Secret's files are referenced by name, readable by the pod's user and group only
    for (const v of pod.volumes)
      assert.ok(
        v.emptyDir || v.configMap || v.persistentVolumeClaim || (v.secret?.secretName && v.secret.defaultMode === 0o440) || (v.name === 'ca-token' && v.projected.sources.length === 1),
        `${where}: volume ${v.name}`,
      );
    if (d.spec.replicas > 1)
      assert.ok(objects.some((o) => o.kind === 'PodDisruptionBudget' && o.metadata.namespace === d.metadata.namespace && o.metadata.name === d.metadata.name), `${where} has a PDB`);
  }
  assert.ok(!objects.some((o) => o.kind === 'Secret'), 'no Secret is written');
});

test('the CA pod initialises its state (idempotent ca init) before it serves', async () => {
  const { objects } = await example;
  const spec = pod(objects, 'gatehouse/ca').spec.template.spec;
  assert.deepEqual(spec.initContainers.map((c: { args: string[] }) => c.args.slice(0, 2)), [['ca', 'init']]);
  // the control plane and the vault beside it, on the CA's volume: they hold certificates the CA's keys issue there
  assert.deepEqual(spec.containers.map((c: { args: string[] }) => c.args.slice(0, 2)), [['ca', 'serve'], ['control', '--config'], ['vault', '--config']]);
  assert.deepEqual(spec.volumes.find((v: { name: string }) => v.name === 'state'), { name: 'state', persistentVolumeClaim: { claimName: 'ca-state' } });
  const services = objects.filter((o) => o.kind === 'Service' && o.metadata.namespace === 'gatehouse');
  assert.deepEqual(services.map((s) => [s.metadata.name, s.spec.selector['app.kubernetes.io/name'], s.spec.ports[0].port]), [['ca', 'ca', 8600], ['control', 'ca', 8700], ['vault', 'ca', 9450]]);
  // every container that opens the CA's keys gets the master key they are sealed under from the Secret
  for (const c of [...spec.initContainers, ...spec.containers])
    assert.deepEqual(c.env[1], { name: 'GATEHOUSE_MASTER_KEY', valueFrom: { secretKeyRef: { name: 'ca-secrets', key: 'GATEHOUSE_MASTER_KEY' } } }, c.name);
  const authority = pod(objects, 'gh-private/authority').spec.template.spec.containers[0];
  assert.equal(authority.env.find((e: { name: string }) => e.name === 'GATEHOUSE_MASTER_KEY').valueFrom.secretKeyRef.name, 'authority-secrets');
});

test('a sidecar service is two containers: the plain application on the pod loopback, the sidecar on the pod port', async () => {
  const { objects } = await example;
  const [app, sidecar] = pod(objects, 'gh-public/echo').spec.template.spec.containers;
  assert.equal(app.name, 'app');
  assert.deepEqual(app.ports, []);
  assert.deepEqual(app.args, ['/srv/topology/services/echo.ts', 'echo', '--plain', '--state-dir', '/var/lib/gatehouse', '--app-listen', '127.0.0.1:8081']);
  assert.equal(sidecar.name, 'sidecar');
  assert.deepEqual(sidecar.args.slice(0, 5), ['sidecar', '--service', 'echo', '--upstream', 'http://127.0.0.1:8081']);
  assert.deepEqual(sidecar.ports, [{ name: 'mtls', containerPort: 8080, protocol: 'TCP' }]);
  const service = objects.find((o) => o.kind === 'Service' && o.metadata.namespace === 'gh-public' && o.metadata.name === 'echo')!;
  assert.deepEqual(service.spec.ports, [{ name: 'mtls', port: 8080, targetPort: 'mtls', protocol: 'TCP' }]);
});

test('the NetworkPolicies let through exactly the example flows (evaluated as the cluster would)', async () => {
  const { objects } = await example;
  const allowed = (from: string, to: string, port: number) => evaluate(objects, pod(objects, from), pod(objects, to), port);
  const declared: [string, string, number][] = [
    ['gh-public/gateway', 'gh-public/catalog', 8080],
    ['gh-public/gateway', 'gh-public/echo', 8080],
    ['gh-public/gateway', 'gh-public/bff', 8080],
    ['gh-public/gateway', 'gh-public/authority', 8444],
    ['gh-public/bff', 'gh-public/catalog', 8080],
    ['gh-public/bff', 'gh-private/gateway', 9443],
    ['gh-public/bff', 'gh-private/authority', 9444],
    ['gh-private/gateway', 'gh-private/orders', 8080],
    ['gh-private/authority', 'gh-public/authority', 8444],
    ['gh-private/orders', 'gatehouse/ca', 8600],
    ['gh-public/gateway', 'gatehouse/ca', 8700], // the control plane, in the CA's pod
    ['gh-internal/authority', 'gh-corp/authority', 8744], // federated sign-in with corp
    ['gh-private/orders', 'gatehouse/ca', 9450], // the vault (orders-pii), in the CA's pod
  ];
  const undeclared: [string, string, number][] = [
    ['gh-public/bff', 'gh-private/orders', 8080], // another zone's service, no gateway between
    ['gh-public/gateway', 'gh-private/orders', 8080],
    ['gh-public/catalog', 'gh-public/bff', 8080], // catalog has no egress
    ['gh-public/echo', 'gh-public/catalog', 8080],
    ['gh-public/bff', 'gh-public/catalog', 9999], // wrong port
    ['gh-private/orders', 'gh-public/bff', 8080],
    ['gh-public/bff', 'gh-public/echo', 8080], // echo does not allow bff
    ['gatehouse/ca', 'gh-public/catalog', 8080],
    ['gh-public/catalog', 'gh-private/authority', 9444],
    ['gh-public/catalog', 'gatehouse/ca', 9450], // no vault key grants catalog anything
    ['gh-public/bff', 'gatehouse/ca', 9450],
  ];
  for (const [from, to, port] of declared) assert.ok(allowed(from, to, port), `declared ${from} → ${to}:${port} is refused`);
  for (const [from, to, port] of undeclared) assert.ok(!allowed(from, to, port), `undeclared ${from} → ${to}:${port} is allowed`);
  // clients outside the cluster reach the gateways (the example declares no ingress), and no service
  assert.ok(ingressAllowsAnyone(objects, pod(objects, 'gh-public/gateway'), 8443));
  assert.ok(!ingressAllowsAnyone(objects, pod(objects, 'gh-public/catalog'), 8080));
  // every ipBlock is in CIDR notation (the example's private ingress lists the single address ::1)
  const blocks = objects
    .filter((o) => o.kind === 'NetworkPolicy')
    .flatMap((o) => [...(o.spec.ingress ?? []).flatMap((r: any) => r.from ?? []), ...(o.spec.egress ?? []).flatMap((r: any) => r.to ?? [])])
    .flatMap((peer: any) => (peer.ipBlock ? [peer.ipBlock.cidr] : []));
  assert.ok(blocks.includes('::1/128'), blocks.join(' '));
  for (const cidr of blocks) assert.match(cidr, /\/\d{1,3}$/);
});

test('the same topology exports the same bytes', async () => {
  const a = await example;
  const b = await exportTo(EXAMPLE);
  assert.deepEqual([...b.files], [...a.files]);
  // each document names the topology line it came from
  for (const text of a.files.values())
    for (const doc of text.split(/^---\n/m).slice(1)) assert.match(doc, /^# .*\(gatehouse\.yaml:\d+\)$/m, doc.slice(0, 200));
});

test('hostile strings stay data: a run path with a newline and ---, a hostile file name', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-hostile-'));
  try {
    const run = 'x.ts"\n---\napiVersion: v1\nkind: Secret\n# \u202e';
    const file = path.join(dir, 'evil"\n---\nkind: Secret.yaml');
    writeFileSync(
      file,
      `version: 1\ntrustDomain: h.test\nzones:\n  z:\n    gateway: { listen: 127.0.0.1:8443, tls: { cert: c.pem, key: k.pem } }\n    routes: [{ path: /a, service: s, auth: anonymous }]\nservices:\n  s:\n    zone: z\n    run: ${JSON.stringify(run)}\n    allow: [{ caller: gateway, paths: [{ path: /a }] }]\n`,
    );
    const { objects, files } = await exportTo(file);
    assert.ok(!objects.some((o) => o.kind === 'Secret'));
    const deployment = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 's')!;
    assert.equal(deployment.spec.template.spec.containers[0].args[0], `/srv/topology/${run}`);
    for (const text of files.values()) for (const line of text.split('\n')) if (line.startsWith('#')) assert.doesNotMatch(line, /[^\x20-\x7e]/);
    // a look-alike name never gets this far
    writeFileSync(file, readFileSync(file, 'utf8').replace('  s:\n', '  ѕ:\n'));
    await assert.rejects(run_(file), (e: { code: number; stderr: string }) => e.code === 2 && /:9:\d+: services\["ѕ"\]/.test(e.stderr));
    await assert.rejects(run_(EXAMPLE, '--image', 'x\nkind: Secret'), (e: { code: number }) => e.code === 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function run_(config: string, ...extra: string[]) {
  return run(process.execPath, [CLI, 'export', 'k8s', '--config', config, ...extra]);
}

function pod(objects: K8sObject[], ref: string): K8sObject {
  const [namespace, name] = ref.split('/');
  const d = objects.find((o) => o.kind === 'Deployment' && o.metadata.namespace === namespace && o.metadata.name === name);
  assert.ok(d, ref);
  return d;
}

const labelsOf = (d: K8sObject): Record<string, string> => d.spec.template.metadata.labels;
const matches = (selector: { matchLabels?: Record<string, string> } | undefined, labels: Record<string, string>) =>
  Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);

/** NetworkPolicy semantics for pod → pod on TCP: each side's selecting policies (if any) must have a rule that admits the other. */
function evaluate(objects: K8sObject[], from: K8sObject, to: K8sObject, port: number): boolean {
  const policies = (d: K8sObject, type: 'Ingress' | 'Egress') =>
    objects.filter((o) => o.kind === 'NetworkPolicy' && o.metadata.namespace === d.metadata.namespace && o.spec.policyTypes.includes(type) && matches(o.spec.podSelector, labelsOf(d)));
  const peerAdmits = (peer: any, d: K8sObject) =>
    !peer.ipBlock &&
    (peer.namespaceSelector ? peer.namespaceSelector.matchLabels['kubernetes.io/metadata.name'] === d.metadata.namespace : true) &&
    matches(peer.podSelector, labelsOf(d));
  const side = (d: K8sObject, other: K8sObject, type: 'Ingress' | 'Egress') => {
    const selecting = policies(d, type);
    if (selecting.length === 0) return true;
    const key = type === 'Ingress' ? 'ingress' : 'egress';
    const peers = type === 'Ingress' ? 'from' : 'to';
    return selecting.some((p) =>
      (p.spec[key] ?? []).some(
        (r: any) => (r.ports ?? []).some((x: any) => x.protocol === 'TCP' && x.port === port) && (r[peers] === undefined || r[peers].some((peer: any) => peerAdmits(peer, other))),
      ),
    );
  };
  return side(from, to, 'Egress') && side(to, from, 'Ingress');
}

function ingressAllowsAnyone(objects: K8sObject[], d: K8sObject, port: number): boolean {
  return objects.some(
    (o) =>
      o.kind === 'NetworkPolicy' &&
      o.metadata.namespace === d.metadata.namespace &&
      matches(o.spec.podSelector, labelsOf(d)) &&
      (o.spec.ingress ?? []).some((r: any) => r.from === undefined && r.ports.some((x: any) => x.port === port)),
  );
}

test('what cannot run in a cluster is refused at its line: no issuer, a loopback issuer, tls: dev, TLS files outside the topology, a trusted zone by name', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-refused-'));
  try {
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(
      file,
      [
        'version: 1',
        'trustDomain: r.test',
        'zones:',
        '  a:',
        '    gateway: { listen: 127.0.0.1:8443, tls: dev }',
        '    authority: { listen: 127.0.0.1:8444, tls: { cert: ../etc/c.pem, key: /k.pem } }',
        '    routes: [{ path: /a, service: s, auth: anonymous }]',
        '  b:',
        '    authority:',
        '      listen: 127.0.0.1:9444',
        '      issuer: https://127.0.0.1:9444',
        '      tls: { cert: c.pem, key: k.pem }',
        '      trustedZones: [a]',
        'services:',
        '  s: { zone: a, run: s.ts, allow: [{ caller: gateway, paths: [{ path: /a }] }] }',
        '',
      ].join('\n'),
    );
    const failure = await run_(file).then(
      () => assert.fail('exported'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(failure.code, 2);
    const lines = failure.stderr.trim().split('\n');
    const expect = [
      /gatehouse\.yaml:5:\d+: zones\.a\.gateway\.tls: tls: dev issues a certificate for loopback names only/,
      /gatehouse\.yaml:6:\d+: zones\.a\.authority: an authority in Kubernetes needs issuer: .*https:\/\/authority\.gh-a\.svc:8444/,
      /gatehouse\.yaml:6:\d+: zones\.a\.authority\.tls: "\.\.\/etc\/c\.pem" must be a path below the topology's folder/,
      /gatehouse\.yaml:6:\d+: zones\.a\.authority\.tls: "\/k\.pem" must be a path below the topology's folder/,
      /gatehouse\.yaml:11:\d+: zones\.b\.authority\.issuer: issuer https:\/\/127\.0\.0\.1:9444 names this machine/,
      /gatehouse\.yaml:13:\d+: zones\.b\.authority\.trustedZones\[0\]: trusted zone a named alone is read from a state dir/,
    ];
    for (const re of expect) assert.ok(lines.some((l) => re.test(l)), `${re} in\n${failure.stderr}`);
    assert.match(lines.at(-1)!, /invalid configuration \(6 problems\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the pods find each other by Service name: gateways read services.json and their authority, services endpoints.json, from the discovery ConfigMap', async () => {
  const { objects } = await example;
  const discovery = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.namespace === 'gh-public' && o.metadata.name === 'gatehouse-discovery')!;
  const services = JSON.parse(discovery.data['services.json']).services;
  assert.equal(services.catalog.upstream, 'https://catalog.gh-public.svc:8080');
  assert.equal(services.orders.upstream, 'https://orders.gh-private.svc:8080');
  assert.deepEqual(JSON.parse(discovery.data['authority-public.json']), { issuer: 'https://authority.gh-public.svc:8444', jwks_uri: 'https://authority.gh-public.svc:8444/jwks' });
  const endpoints = JSON.parse(discovery.data['endpoints.json']);
  assert.equal(endpoints.zones.private.gateway, 'https://gateway.gh-private.svc:9443');
  assert.equal(endpoints.control, 'https://control.gatehouse.svc:8700');
  // the gateway mounts them where `gatehouse up` writes them in a shared state dir
  const gw = pod(objects, 'gh-public/gateway').spec.template.spec.containers[0];
  const mount = (c: any, at: string) => c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === at);
  assert.deepEqual(mount(gw, '/var/lib/gatehouse/services.json'), { name: 'cm-gatehouse-discovery', mountPath: '/var/lib/gatehouse/services.json', subPath: 'services.json', readOnly: true });
  assert.equal(mount(gw, '/var/lib/gatehouse/authority/public/public.json').subPath, 'authority-public.json');
  assert.equal(mount(gw, '/srv/topology/tls/gateway-public.crt').name, 'secret-gateway-tls');
  assert.deepEqual(gw.args.slice(gw.args.indexOf('--workers'), gw.args.indexOf('--workers') + 4), ['--workers', '1', '--listen', '0.0.0.0:8443']);
  // a mesh service binds the pod port it is reached at, and knows each authority at its issuer
  const catalog = pod(objects, 'gh-public/catalog').spec.template.spec.containers[0];
  assert.deepEqual(catalog.args.slice(catalog.args.indexOf('--listen'), catalog.args.indexOf('--listen') + 2), ['--listen', '0.0.0.0:8080']);
  assert.ok(catalog.args.includes('public=https://authority.gh-public.svc:8444'));
  assert.equal(mount(catalog, '/var/lib/gatehouse/pki/bundle.pem').name, 'cm-gatehouse-trust');
  assert.equal(mount(catalog, '/var/lib/gatehouse/endpoints.json').subPath, 'endpoints.json');
});

test('each gateway, authority and service pod bootstraps with a projected service-account token for the CA, which maps exactly those accounts', async () => {
  const { objects } = await example;
  const audience = 'spiffe://shop.local/ca';
  const bootstrapping: string[] = [];
  for (const d of objects.filter((o) => o.kind === 'Deployment' && o.metadata.namespace !== 'gatehouse')) {
    const where = `${d.metadata.namespace}/${d.metadata.name}`;
    const spec = d.spec.template.spec;
    const token = spec.volumes.find((v: { name: string }) => v.name === 'ca-token');
    const component = d.metadata.labels!['app.kubernetes.io/component'];
    if (component === 'authority') {
      // an enforcement point of the control plane (quarantines, revoked tokens, its events): its identity from the CA server
      const args: string[] = spec.containers.find((c: { name: string }) => c.name === 'authority')?.args ?? spec.containers.at(-1).args;
      assert.deepEqual(args.slice(-4).filter((a) => a.startsWith('--')), ['--control', '--ca-url'], where);
    }
    // the kubelet writes a token for the CA's audience, 10 minutes long, which the API server itself refuses
    assert.deepEqual(token.projected.sources, [{ serviceAccountToken: { audience, expirationSeconds: 600, path: 'token' } }], where);
    assert.equal(spec.automountServiceAccountToken, false, `${where}: no API token beside it`);
    const withToken = spec.containers.filter((c: { volumeMounts: { name: string }[] }) => c.volumeMounts.some((m) => m.name === 'ca-token'));
    assert.equal(withToken.length, 1, `${where}: only the container that bootstraps sees it`);
    assert.deepEqual(withToken[0].volumeMounts.find((m: { name: string }) => m.name === 'ca-token'), { name: 'ca-token', mountPath: '/var/run/secrets/gatehouse/ca-token', readOnly: true });
    assert.deepEqual(withToken[0].env.find((e: { name: string }) => e.name === 'GATEHOUSE_JOIN_TOKEN'), { name: 'GATEHOUSE_JOIN_TOKEN', value: 'file:/var/run/secrets/gatehouse/ca-token/token' });
    bootstrapping.push(`${d.metadata.namespace}/${spec.serviceAccountName}`);
  }
  // no join-token Secret is referenced any more
  assert.ok(!JSON.stringify(objects).includes('-join-token'), 'no join-token Secret');
  // the CA: serve with the attestation config (exported), the issuer keys (the operator's ConfigMap, a folder mount)
  const ca = pod(objects, 'gatehouse/ca').spec.template.spec;
  const serve = ca.containers[0];
  assert.deepEqual(serve.args.slice(-2), ['--k8s-attestation', '/etc/gatehouse/ca/k8s-attestation.yaml']);
  assert.deepEqual(
    serve.volumeMounts.filter((m: { mountPath: string }) => m.mountPath.startsWith('/etc/gatehouse')),
    [
      { name: 'cm-gatehouse-ca-attestation', mountPath: '/etc/gatehouse/ca/k8s-attestation.yaml', subPath: 'k8s-attestation.yaml', readOnly: true },
      { name: 'cm-gatehouse-k8s-issuer', mountPath: '/etc/gatehouse/k8s-issuer', readOnly: true },
    ],
  );
  const config = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'gatehouse-ca-attestation')!;
  const attestation = parseDocument(config.data['k8s-attestation.yaml']).toJS();
  assert.equal(attestation.issuer, 'https://kubernetes.default.svc.cluster.local');
  assert.equal(attestation.audience, audience);
  assert.deepEqual(attestation.keys, { jwksFile: '../k8s-issuer/jwks.json' });
  assert.deepEqual(attestation.serviceAccounts.map((a: { namespace: string; serviceAccount: string }) => `${a.namespace}/${a.serviceAccount}`).sort(), bootstrapping.sort());
  for (const a of attestation.serviceAccounts)
    assert.equal(
      a.workload,
      a.serviceAccount === 'gateway' || a.serviceAccount === 'authority' ? `${a.serviceAccount}:${a.namespace.slice(3)}` : a.serviceAccount,
      `${a.namespace}/${a.serviceAccount}`,
    );
  // the CA loads it against the topology (every workload known, each account once)
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-att-'));
  try {
    writeFileSync(path.join(dir, 'k8s-attestation.yaml'), config.data['k8s-attestation.yaml']);
    const { loadK8sAttestationConfig } = await import('../src/pki/index.ts');
    const { loadTopology } = await import('../src/topology/index.ts');
    assert.equal(loadK8sAttestationConfig(path.join(dir, 'k8s-attestation.yaml'), loadTopology(EXAMPLE).topology).accounts.size, bootstrapping.length);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // another cluster issuer; a bad one is refused
  const other = await exportTo(EXAMPLE, '--k8s-issuer', 'https://oidc.eks.eu-west-1.amazonaws.com/id/ABC');
  assert.match(other.objects.find((o) => o.metadata.name === 'gatehouse-ca-attestation')!.data['k8s-attestation.yaml'], /issuer: https:\/\/oidc\.eks\.eu-west-1\.amazonaws\.com\/id\/ABC/);
  await assert.rejects(exportTo(EXAMPLE, '--k8s-issuer', 'http://x\nkind: Secret'), (e: { code: number }) => e.code === 2);
});

test('NOTES.md and --secrets-template list every Secret and operator ConfigMap the manifests reference, with its keys and the command that makes it, never a value', async () => {
  const { files, objects } = await example;
  const notes = notesOf.get(files)!;
  const { stdout } = await run(process.execPath, [CLI, 'export', 'k8s', '--config', EXAMPLE, '--secrets-template']);
  assert.equal(stdout, notes, '--secrets-template prints what --out writes as NOTES.md');
  const { k8sPrerequisites } = await import('../src/deploy/index.ts');
  const { loadTopology } = await import('../src/topology/index.ts');
  const { list } = k8sPrerequisites(loadTopology(EXAMPLE));
  // what the manifests reference: Secret keys of env and volumes, the ConfigMaps the export does not write
  const exported = new Set(objects.filter((o) => o.kind === 'ConfigMap').map((o) => `${o.metadata.namespace}/${o.metadata.name}`));
  const referenced = new Set<string>();
  for (const d of objects.filter((o) => o.kind === 'Deployment')) {
    const ns = d.metadata.namespace!;
    const spec = d.spec.template.spec;
    const volumes = new Map<string, any>(spec.volumes.map((v: { name: string }) => [v.name, v]));
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      for (const e of c.env) if (e.valueFrom?.secretKeyRef) referenced.add(`${ns}/Secret/${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
      for (const m of c.volumeMounts) {
        const v = volumes.get(m.name);
        if (v.secret) referenced.add(`${ns}/Secret/${v.secret.secretName}/${m.subPath}`);
        if (v.configMap && !exported.has(`${ns}/${v.configMap.name}`)) referenced.add(`${ns}/ConfigMap/${v.configMap.name}/${m.subPath ?? 'jwks.json'}`);
      }
    }
  }
  const listed = new Set(list.flatMap((p) => p.keys.map((k) => `${p.namespace}/${p.kind}/${p.name}/${k.key}`)));
  assert.deepEqual([...listed].sort(), [...referenced].sort(), 'exactly what the manifests reference');
  for (const name of ['ca-secrets', 'gateway-tls', 'authority-tls', 'gateway-identity', 'gatehouse-trust', 'gatehouse-k8s-issuer', 'authority-secrets'])
    assert.ok(list.some((p) => p.name === name), name);
  // the federation client's secret (internal signs in with corp) and the trusted zones' feed secrets
  assert.ok(list.some((p) => p.namespace === 'gh-internal' && p.name === 'authority-secrets' && p.keys.some((k) => k.key === 'GATEHOUSE_CORP_SSO_SECRET' && /client "internal-sso"/.test(k.what))));
  // each, made with placeholder values, is a valid Kubernetes object; a TLS Secret has the keys of its type
  const { Secret } = await import('kubernetes-models/v1/Secret');
  const { ConfigMap } = await import('kubernetes-models/v1/ConfigMap');
  for (const p of list) {
    const data = Object.fromEntries(p.keys.map((k) => [k.key, 'cGxhY2Vob2xkZXI=']));
    const metadata = { name: p.name, namespace: p.namespace };
    if (p.kind === 'Secret') {
      if (p.type === 'tls') assert.deepEqual(p.keys.map((k) => k.key).sort(), ['tls.crt', 'tls.key']);
      assert.doesNotThrow(() => new Secret({ metadata, type: p.type === 'tls' ? 'kubernetes.io/tls' : 'Opaque', data }).validate(), `${p.namespace}/${p.name}`);
    } else assert.doesNotThrow(() => new ConfigMap({ metadata, data }).validate(), `${p.namespace}/${p.name}`);
    // the command names the Secret, its namespace and every key
    const command = notes.split('```sh\n').find((b) => b.includes(` create ${p.kind === 'Secret' ? `secret ${p.type}` : 'configmap'} ${p.name} `) && b.includes(` -n ${p.namespace} `));
    assert.ok(command, `a command for ${p.namespace}/${p.name}`);
    for (const k of p.keys) assert.ok(command.includes(k.flag), `${p.namespace}/${p.name}: ${k.flag}`);
  }
  assert.match(notes, /kubectl -n gatehouse create secret generic ca-secrets \\\n {4}--from-literal=GATEHOUSE_MASTER_KEY="\$GATEHOUSE_MASTER_KEY"/);
  assert.match(notes, /kubectl -n gatehouse create configmap gatehouse-k8s-issuer \\\n {4}--from-file=jwks\.json=cluster-sa-jwks\.json/);
  assert.doesNotMatch(notes, /-----BEGIN|join-token/);
  process.stdout.write(`# NOTES.md: ${list.filter((p) => p.kind === 'Secret').length} Secrets, ${list.filter((p) => p.kind === 'ConfigMap').length} ConfigMaps, ${listed.size} keys\n`);
});

test('a hostile client id reaches the notes as escaped prose only, never a command', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-notes-'));
  try {
    const doc = parseDocument(readFileSync(EXAMPLE, 'utf8'));
    const evil = 'x$(touch /tmp/pwned)`id`|</td>\n## injected';
    doc.setIn(['zones', 'internal', 'authority', 'federation', 0, 'clientId'], evil);
    for (const entry of readdirSync(ready.dir)) if (entry !== 'gatehouse.yaml') symlinkSync(path.join(ready.dir, entry), path.join(dir, entry));
    writeFileSync(path.join(dir, 'gatehouse.yaml'), doc.toString());
    const { stdout } = await run(process.execPath, [CLI, 'export', 'k8s', '--config', path.join(dir, 'gatehouse.yaml'), '--secrets-template']);
    const commands = stdout.split('```sh\n').slice(1).map((b) => b.split('```')[0]).join('');
    assert.ok(!commands.includes('touch') && !commands.includes('`'), 'no topology text in a command');
    assert.ok(!/^## injected/m.test(stdout), 'no new heading');
    assert.match(stdout, /touch \/tmp\/pwned\)\\`id\\`\\\|\\<\/td\\>/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
