// The exported Kubernetes manifests, run as real processes: network
// namespaces play the pods (each its own address, the Service names resolving
// through its /etc/hosts as kube-dns would answer them), every container runs
// exactly the command, arguments and environment its Deployment gives, and
// sees exactly the files its volumes mount (ConfigMaps the export wrote,
// Secrets and the trust ConfigMap the operator makes as README "Deploying"
// says), at the paths the manifest names under a folder per pod. Shown:
//   the CA pod (ca init, ca serve, the control plane beside it on one volume);
//   a mesh service pod bootstrapping its certificate over the pod network with
//   its join-token Secret, following its bundle from the control plane, and
//   serving mTLS on the pod port it is reached at by Service name;
//   the zone gateway's identity (issued by the CA pod, `gatehouse ca issue`)
//   getting the service's answer, another service's identity a 403, no
//   certificate no TLS session;
//   the zone authority pod answering discovery at its issuer, by Service name,
//   with the TLS certificate of its Secret (host name checked).
// Every pod that bootstraps from the CA (the service, two gateway replicas, a
// restarted replica whose emptyDir is gone) presents the projected
// service-account token its kubelet wrote for the CA's audience, signed by a
// test "cluster issuer" key whose JWKS the operator gives the CA; no join token.
// Needs root and `ip`: skipped with the reason elsewhere, failed under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey } from 'jose';
import { createLab, netnsUnavailable, type Lab } from './support/netns.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';

const run = promisify(execFile);
const REPO = path.resolve('.');
const CLI = path.join(REPO, 'src/cli/main.ts');
/** The image's ENTRYPOINT (Dockerfile): what a container runs when its manifest gives no command. */
const ENTRYPOINT = ['node', '/app/src/cli/main.ts'];

const TOPOLOGY = `version: 1
trustDomain: run.test
zones:
  shop:
    gateway: { listen: 127.0.0.1:8443, tls: { cert: tls/gateway.crt, key: tls/gateway.key } }
    authority:
      listen: 127.0.0.1:8444
      issuer: https://authority.gh-shop.svc:8444
      tls: { cert: tls/authority.crt, key: tls/authority.key }
      clientCa: trust-domain
      scopes: [catalog:read]
    routes:
      - { path: /api/catalog, service: catalog, auth: anonymous }
      - { path: /api/stock, service: stock, auth: anonymous }
services:
  catalog:
    zone: shop
    run: catalog.ts
    allow: [{ caller: gateway, paths: [{ path: /api/catalog }] }]
  stock:
    zone: shop
    run: catalog.ts
    allow: [{ caller: gateway, paths: [{ path: /api/stock }] }]
`;

/** The `run:` module, as a derived image would carry it under /srv/topology. */
const MODULE = `import { createService, serviceOptions } from ${JSON.stringify(path.join(REPO, 'src/mesh/index.ts'))};
export async function start(o) {
  const service = await createService({
    ...serviceOptions(o),
    handler(req, res, ctx) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ service: o.service, caller: ctx.caller?.name ?? null }));
    },
  });
  return { url: service.url, close: () => service.close() };
}
`;

const PODS = [
  { name: 'ca', address: '10.79.0.2', deployment: 'gatehouse/ca', names: ['ca.gatehouse.svc', 'control.gatehouse.svc'] },
  { name: 'catalog', address: '10.79.0.3', deployment: 'gh-shop/catalog', names: ['catalog.gh-shop.svc'] },
  { name: 'authority', address: '10.79.0.5', deployment: 'gh-shop/authority', names: ['authority.gh-shop.svc'] },
  { name: 'gateway', address: '10.79.0.4', deployment: 'gh-shop/gateway', names: ['gateway.gh-shop.svc'] },
  // the second replica of the gateway Deployment
  { name: 'gateway-2', address: '10.79.0.6', deployment: 'gh-shop/gateway', names: [] },
  { name: 'caller', address: '10.79.0.9', deployment: '', names: [] },
  // a client whose connections kube-proxy sends to the second replica
  { name: 'caller-2', address: '10.79.0.10', deployment: '', names: [] },
];
/** The process of each pod/container, as last started. */
const running = new Map<string, ChildProcess>();
/** Where the Service name leads from a pod, when not to the first pod that has it. */
const ROUTED: Record<string, Record<string, string>> = { 'caller-2': { 'gateway.gh-shop.svc': '10.79.0.6' } };
const CLUSTER_ISSUER = 'https://kubernetes.default.svc.cluster.local';

interface K8sObject {
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
  spec?: any;
}

const unavailable = await netnsUnavailable();
if (unavailable && process.env.CI === 'true') throw new Error(`CI must run the manifest run test: ${unavailable}`);

test('the exported pods run as their manifests say: the service and two gateway replicas (one replaced) bootstrap with their projected service-account tokens, hostile tokens are refused, a revocation reaches the service', { skip: unavailable, timeout: 180_000 }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'gatehouse-k8s-run-'));
  const children: ChildProcess[] = [];
  let lab: Lab | undefined;
  const netnsDirs: string[] = [];
  try {
    writeFileSync(path.join(work, 'gatehouse.yaml'), TOPOLOGY);
    await run(process.execPath, [CLI, 'export', 'k8s', '--config', path.join(work, 'gatehouse.yaml'), '--out', path.join(work, 'manifests')]);
    const objects: K8sObject[] = [];
    for (const f of readdirSync(path.join(work, 'manifests')).sort())
      for (const doc of parseAllDocuments(readFileSync(path.join(work, 'manifests', f), 'utf8'))) if (doc.contents !== null) objects.push(doc.toJS() as K8sObject);

    lab = await createLab(PODS.map((p) => ({ name: p.name, address: p.address })));
    // kube-dns, as `ip netns exec` gives each namespace its own /etc/hosts
    for (const h of lab.hosts.values()) {
      const routed = ROUTED[h.name] ?? {};
      const hosts = ['127.0.0.1 localhost', ...Object.entries(routed).map(([n, a]) => `${a} ${n}`), ...PODS.filter((p) => p.names.length).map((p) => `${p.address} ${p.names.filter((n) => !(n in routed)).join(' ')}`)].join('\n') + '\n';
      const dir = path.join('/etc/netns', h.netns);
      mkdirSync(dir, { recursive: true });
      netnsDirs.push(dir);
      writeFileSync(path.join(dir, 'hosts'), hosts);
    }
    // a run cut short (test timeout) leaves no hosts file behind either
    process.once('exit', () => netnsDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

    // what the operator creates (README "Deploying"): Secrets, and the trust ConfigMap once the CA runs
    const secrets = new Map<string, Record<string, string>>([['gatehouse/ca-secrets', { GATEHOUSE_MASTER_KEY: randomBytes(32).toString('base64url') }]]);
    const operatorConfigMaps = new Map<string, Record<string, string>>();
    // the cluster's service-account issuer: the kubelet's tokens are signed with its key, the CA gets its JWKS
    // (kubectl get --raw /openid/v1/jwks) from the operator's ConfigMap
    const cluster = await generateKeyPair('RS256', { extractable: true });
    operatorConfigMaps.set('gatehouse/gatehouse-k8s-issuer', { 'jwks.json': JSON.stringify({ keys: [{ ...(await exportJWK(cluster.publicKey)), kid: 'sa-1', alg: 'RS256', use: 'sig' }] }) });
    const kubelet: Kubelet = { key: cluster.privateKey, kid: 'sa-1', issuer: CLUSTER_ISSUER };
    const outputs = new Map<string, string[]>();

    // 1. the CA pod: ca init (init container), then ca serve and the control plane on the same volume
    const caPod = podOf(objects, 'gatehouse/ca');
    const caRoot = path.join(work, 'pods', 'ca');
    await materialize(caPod, objects, caRoot, secrets, operatorConfigMaps, kubelet, 'ca-0');
    for (const c of caPod.spec.template.spec.initContainers) await runToEnd(lab, 'ca', caRoot, c, secrets, 'gatehouse');
    const caReady = caPod.spec.template.spec.containers.map((c: Container) => start(lab!, 'ca', caRoot, c, secrets, 'gatehouse', children, outputs));
    const [ca, control] = await Promise.all(caReady);
    assert.match(ca, /ready: ca https:\/\/0\.0\.0\.0:8600/);
    assert.match(control, /ready: control https:\/\/0\.0\.0\.0:8700/);
    // the CA's keys are sealed under the master key of its Secret, which is not on its volume
    assert.ok(!existsSync(path.join(caRoot, 'var/lib/gatehouse/vault/master.key')), 'no master key file on the CA volume');
    assert.match(readFileSync(path.join(caRoot, 'var/lib/gatehouse/pki/issuers/shop.key'), 'utf8'), /"sealed"/);

    // 2. the operator, through `kubectl exec` into the CA pod: the trust bundle, identities for the test's direct callers
    // kubectl exec runs in the container's environment (its Secrets included)
    const caEnv = processOf(caRoot, caPod.spec.template.spec.containers[0], secrets, 'gatehouse').env;
    const caExec = async (args: string[]) => (await run(process.execPath, [CLI, ...mapArgs(args, caRoot, caPod.spec.template.spec.containers[0])], { env: caEnv })).stdout;
    const state = path.join(caRoot, 'var/lib/gatehouse');
    const config = '/srv/topology/gatehouse.yaml';
    const bundle = readFileSync(path.join(state, 'pki', 'bundle.pem'), 'utf8');
    const edge = await openDevCa(path.join(work, 'edge-ca'), 'run.test'); // the CA of the gateways' TLS certificates (any CA)
    const { publicKey, privateKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const gatewayTls = await edge.issueServer(['gateway.gh-shop.svc']);
    secrets.set('gh-shop/gateway-tls', { 'tls.crt': gatewayTls.cert, 'tls.key': gatewayTls.key });
    secrets.set('gh-shop/gateway-identity', { 'identity-key.json': JSON.stringify({ ...(await exportJWK(privateKey)), alg: 'EdDSA', use: 'sig', kid: 'k1' }) });
    operatorConfigMaps.set('gh-shop/gatehouse-trust', {
      'bundle.pem': bundle,
      'edge-ca.pem': edge.caPem,
      'identity-jwks-shop.json': JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), alg: 'EdDSA', use: 'sig', kid: 'k1' }] }),
    });
    // the authority pod: its TLS certificate for its Service name, its master key, the trust bundle
    const authorityTls = await edge.issueServer(['authority.gh-shop.svc']);
    secrets.set('gh-shop/authority-tls', { 'tls.crt': authorityTls.cert, 'tls.key': authorityTls.key });
    secrets.set('gh-shop/authority-secrets', { GATEHOUSE_MASTER_KEY: randomBytes(32).toString('base64url') });
    const authorityPod = podOf(objects, 'gh-shop/authority');
    const authorityRoot = path.join(work, 'pods', 'authority');
    await materialize(authorityPod, objects, authorityRoot, secrets, operatorConfigMaps, kubelet, 'authority-0');
    const authorityReady = start(lab, 'authority', authorityRoot, authorityPod.spec.template.spec.containers[0], secrets, 'gh-shop', children, outputs);

    const gatewayId = path.join(work, 'gateway-id');
    const stockId = path.join(work, 'stock-id');
    await caExec(['ca', 'issue', '--gateway', 'shop', '--out', gatewayId, '--config', config, '--state-dir', '/var/lib/gatehouse']);
    await caExec(['ca', 'issue', '--service', 'stock', '--out', stockId, '--config', config, '--state-dir', '/var/lib/gatehouse']);

    // 3. the catalog pod: run-service with the pod port, the CA and the control plane by Service name
    const catalogPod = podOf(objects, 'gh-shop/catalog');
    const [container] = catalogPod.spec.template.spec.containers as Container[];
    assert.deepEqual(container.command, ['node', '/app/src/cli/run-service.ts']);
    assert.ok(container.args.includes('--listen') && container.args.includes('https://ca.gatehouse.svc:8600'), container.args.join(' '));
    const catalogRoot = path.join(work, 'pods', 'catalog');
    await materialize(catalogPod, objects, catalogRoot, secrets, operatorConfigMaps, kubelet, 'catalog-5c7d-x1');
    writeFileSync(path.join(catalogRoot, 'srv/topology/catalog.ts'), MODULE); // the derived image's module
    const catalogReady = await start(lab, 'catalog', catalogRoot, container, secrets, 'gh-shop', children, outputs);
    assert.match(catalogReady, /ready: service https:\/\/0\.0\.0\.0:8080/);

    // 4. callers in another pod, by Service name and port
    const url = 'https://catalog.gh-shop.svc:8080/api/catalog';
    const trustBundle = path.join(gatewayId, 'bundle.pem');
    const asGateway = await call(lab, 'caller', url, trustBundle, gatewayId);
    assert.equal(asGateway.status, 200, JSON.stringify(asGateway));
    assert.deepEqual(JSON.parse(asGateway.body), { service: 'catalog', caller: 'gateway' });
    assert.equal(asGateway.peer, 'spiffe://run.test/zone/shop/svc/catalog', 'the pod serves the certificate it bootstrapped');
    assert.equal(asGateway.address, '10.79.0.3', 'by Service name, at the pod address');
    const asStock = await call(lab, 'caller', url, trustBundle, stockId);
    assert.equal(asStock.status, 403, JSON.stringify(asStock));
    const anonymous = await call(lab, 'caller', url, trustBundle, undefined);
    assert.equal(anonymous.status, 0, JSON.stringify(anonymous));
    assert.ok(anonymous.error, 'no certificate, no TLS session');
    // the authority answers at its issuer, by Service name, with the certificate of its Secret
    assert.match(await authorityReady, /ready: authority https:\/\/authority\.gh-shop\.svc:8444/);
    const discovery = await call(lab, 'caller', 'https://authority.gh-shop.svc:8444/.well-known/openid-configuration', path.join(work, 'edge-ca', 'tls', 'dev-ca.pem'), undefined, true);
    assert.equal(discovery.status, 200, JSON.stringify(discovery));
    assert.equal(JSON.parse(discovery.body).issuer, 'https://authority.gh-shop.svc:8444');
    assert.equal(discovery.address, '10.79.0.5');
    // 5. the gateway Deployment's two replicas: each its certificate from the CA server with its own projected token,
    // its bundle from the control plane, its routes to the services by Service name (discovery ConfigMap);
    // a client outside reaches the service through either
    const gatewayPod = podOf(objects, 'gh-shop/gateway');
    assert.equal(gatewayPod.spec.replicas, 2);
    const gatewayContainer = gatewayPod.spec.template.spec.containers[0] as Container;
    const edgeCa = path.join(work, 'edge-ca', 'tls', 'dev-ca.pem');
    const runGateway = async (pod: string, podName: string) => {
      const root = path.join(work, 'pods', pod);
      await materialize(gatewayPod, objects, root, secrets, operatorConfigMaps, kubelet, podName);
      assert.match(await start(lab!, pod, root, gatewayContainer, secrets, 'gh-shop', children, outputs), /ready: gateway https:\/\/0\.0\.0\.0:8443/);
    };
    const through = async (caller: string) => {
      let r = await call(lab!, caller, 'https://gateway.gh-shop.svc:8443/api/catalog', edgeCa, undefined, true);
      // the bundle may still be on its way: the gateway refuses until one is in force (deny by default)
      for (let i = 0; i < 40 && r.status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        r = await call(lab!, caller, 'https://gateway.gh-shop.svc:8443/api/catalog', edgeCa, undefined, true);
      }
      return r;
    };
    await Promise.all([runGateway('gateway', 'gateway-6b8f-a'), runGateway('gateway-2', 'gateway-6b8f-b')]);
    const first = await through('caller');
    assert.equal(first.status, 200, JSON.stringify(first));
    assert.deepEqual(JSON.parse(first.body), { service: 'catalog', caller: 'gateway' }, 'the service saw the gateway certificate');
    assert.equal(first.address, '10.79.0.4');
    const second = await through('caller-2');
    assert.equal(second.status, 200, JSON.stringify(second));
    assert.deepEqual(JSON.parse(second.body), { service: 'catalog', caller: 'gateway' });
    assert.equal(second.address, '10.79.0.6', 'the second replica answered');
    const unrouted = await call(lab, 'caller', 'https://gateway.gh-shop.svc:8443/api/other', edgeCa, undefined, true);
    assert.equal(unrouted.status, 404, JSON.stringify(unrouted));

    // 6. the second replica's pod is replaced (a rollout, an eviction): a new pod, an empty state dir, a new token
    const old = running.get('gateway-2/gateway')!;
    old.kill('SIGTERM');
    await new Promise((resolve) => (old.exitCode === null && old.signalCode === null ? old.once('exit', resolve) : resolve(undefined)));
    rmSync(path.join(work, 'pods', 'gateway-2'), { recursive: true, force: true });
    await runGateway('gateway-2', 'gateway-6b8f-c');
    const restarted = await through('caller-2');
    assert.equal(restarted.status, 200, JSON.stringify(restarted));
    assert.equal(restarted.address, '10.79.0.6');

    // 7. hostile pods of the cluster, over the pod network: a token of an account the CA does not map, of another
    // workload's account, for the API server's audience, signed by another cluster's key, expired: refused, nothing issued
    const attempt = path.join(work, 'attempt.ts');
    writeFileSync(
      attempt,
      `import { bootstrapIdentity } from ${JSON.stringify(path.join(REPO, 'src/pki/index.ts'))};
import { readFileSync } from 'node:fs';
const [token, service, bundle] = process.argv.slice(2);
bootstrapIdentity({ caUrl: 'https://ca.gatehouse.svc:8600', joinToken: token, service, trustDomain: 'run.test', bundlePem: readFileSync(bundle, 'utf8') }).then(
  (id) => console.log('issued ' + id.spiffeId),
  (e) => console.log('refused ' + e.code + ': ' + e.message),
);
`,
    );
    const stranger = await generateKeyPair('RS256');
    const tokenFor = (o: { sa: string; aud?: string; key?: CryptoKey; ageSeconds?: number }) => {
      const now = Math.floor(Date.now() / 1000) - (o.ageSeconds ?? 0);
      return new SignJWT({ 'kubernetes.io': { namespace: 'gh-shop', pod: { name: `${o.sa}-x`, uid: randomUUID() }, serviceaccount: { name: o.sa, uid: randomUUID() } } })
        .setProtectedHeader({ alg: 'RS256', kid: 'sa-1' })
        .setIssuer(CLUSTER_ISSUER)
        .setAudience(o.aud ?? 'spiffe://run.test/ca')
        .setSubject(`system:serviceaccount:gh-shop:${o.sa}`)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(o.key ?? cluster.privateKey);
    };
    const hostile: [string, Promise<string>, string, RegExp][] = [
      ["the namespace's default account (not mapped)", tokenFor({ sa: 'default' }), 'gateway:shop', /refused unknown_workload: .*service account gh-shop\/default is not mapped/],
      ["the authority's account asking for the gateway", tokenFor({ sa: 'authority' }), 'gateway:shop', /refused token_wrong_service: .*attests authority:shop/],
      ["catalog's account asking for the gateway", tokenFor({ sa: 'catalog' }), 'gateway:shop', /refused token_wrong_service/],
      ["the API server's audience", tokenFor({ sa: 'gateway', aud: 'https://kubernetes.default.svc.cluster.local' }), 'gateway:shop', /refused token_invalid: .*audience is not this CA/],
      ["another cluster's key", tokenFor({ sa: 'gateway', key: stranger.privateKey }), 'gateway:shop', /refused token_invalid: .*no key of the cluster issuer/],
      ['an expired token', tokenFor({ sa: 'gateway', ageSeconds: 3600 }), 'gateway:shop', /refused token_expired/],
    ];
    const before = (outputs.get('ca/ca') ?? []).join('').split('\n').filter((l) => l.includes('"certificate_issued"')).length;
    for (const [name, token, service, want] of hostile) {
      const { stdout } = await lab.exec('caller', process.execPath, [attempt, await token, service, path.join(gatewayId, 'bundle.pem')]);
      assert.match(stdout.trim(), want, name);
      process.stdout.write(`# ${name} → ${stdout.trim()}\n`);
    }
    assert.equal((outputs.get('ca/ca') ?? []).join('').split('\n').filter((l) => l.includes('"certificate_issued"')).length, before, 'nothing issued');

    // 8. a revocation reaches the service pod: `kubectl exec` into the CA pod revokes the certificate the operator
    // issued for a gateway identity; the catalog pod (which polls the CA's list) refuses it within the refresh bound,
    // while the gateway replicas' own certificates keep working
    const revokedSerial = new X509Certificate(readFileSync(path.join(gatewayId, 'cert.pem'))).serialNumber;
    await caExec(['ca', 'revoke', revokedSerial, '--reason', 'test', '--config', config, '--state-dir', '/var/lib/gatehouse']);
    const revokedAt = Date.now();
    let refused = await call(lab, 'caller', url, trustBundle, gatewayId);
    while (refused.status === 200 && Date.now() - revokedAt < 25_000) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      refused = await call(lab, 'caller', url, trustBundle, gatewayId);
    }
    assert.notEqual(refused.status, 200, `the revoked certificate still passes after ${Date.now() - revokedAt} ms`);
    const stillThrough = await through('caller');
    assert.equal(stillThrough.status, 200, JSON.stringify(stillThrough));
    process.stdout.write(`# revoked ${revokedSerial}: catalog refuses it after ${Date.now() - revokedAt} ms (${refused.status || refused.error}); the gateway replicas still pass (${stillThrough.status})\n`);

    // the CA's issuance lines: one per pod, each naming the pod its token was bound to; no join token anywhere
    const issued = (outputs.get('ca/ca') ?? []).join('').split('\n').filter((l) => l.includes('"certificate_issued"')).map((l) => JSON.parse(l));
    const byPod = issued.filter((l) => l.via === 'k8s_psat').map((l) => `${l.namespace}/${l.serviceAccount} ${l.pod} → ${l.spiffeId}`);
    assert.deepEqual(byPod.sort(), [
      // the authority pod too: an enforcement point of the control plane (quarantines, revoked tokens, its events)
      'gh-shop/authority authority-0 → spiffe://run.test/zone/shop/authority',
      'gh-shop/catalog catalog-5c7d-x1 → spiffe://run.test/zone/shop/svc/catalog',
      'gh-shop/gateway gateway-6b8f-a → spiffe://run.test/zone/shop/gateway',
      'gh-shop/gateway gateway-6b8f-b → spiffe://run.test/zone/shop/gateway',
      'gh-shop/gateway gateway-6b8f-c → spiffe://run.test/zone/shop/gateway',
    ]);
    assert.ok(!issued.some((l) => l.via === 'bootstrap'), 'no join token was used');
    process.stdout.write(byPod.map((l) => `# CA issued by service-account token: ${l}\n`).join(''));
    process.stdout.write(`# client → https://gateway.gh-shop.svc:8443/api/catalog → replica 1 ${first.status} ${first.body}, replica 2 ${second.status}, replica 2 replaced ${restarted.status}\n`);
    process.stdout.write(
      `# ${url}: gateway identity → ${asGateway.status}, stock identity → ${asStock.status}, no certificate → ${anonymous.error}\n`,
    );
  } finally {
    for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
    await lab?.dispose();
    for (const d of netnsDirs) rmSync(d, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  }
});

interface Container {
  name: string;
  command?: string[];
  args: string[];
  env: { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }[];
  volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[];
}

function podOf(objects: K8sObject[], ref: string): K8sObject {
  const [namespace, name] = ref.split('/');
  const d = objects.find((o) => o.kind === 'Deployment' && o.metadata.namespace === namespace && o.metadata.name === name);
  assert.ok(d, ref);
  return d;
}

/** The kubelet's side of a `serviceAccountToken` projected volume: a token bound to the pod, signed by the cluster issuer. */
interface Kubelet {
  key: CryptoKey;
  kid: string;
  issuer: string;
}

/**
 * Lays out the pod's volumes under `root` at the paths its containers mount
 * them: a directory for the state and /tmp, each file of a ConfigMap or Secret
 * (the exported ones, or the operator's) where a subPath mount puts it, every
 * key of one mounted as a folder, and the projected service-account token the
 * kubelet would write for the pod `podName`.
 * A source that does not exist fails, as the kubelet would refuse to start the pod.
 */
async function materialize(
  d: K8sObject,
  objects: K8sObject[],
  root: string,
  secrets: Map<string, Record<string, string>>,
  operator: Map<string, Record<string, string>>,
  kubelet: Kubelet,
  podName: string,
): Promise<void> {
  const ns = d.metadata.namespace!;
  const spec = d.spec.template.spec;
  const volumes = new Map<string, any>(spec.volumes.map((v: { name: string }) => [v.name, v]));
  const podUid = randomUUID();
  for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Container[])
    for (const m of c.volumeMounts) {
      const v = volumes.get(m.name);
      assert.ok(v, `${d.metadata.name}: volume ${m.name}`);
      const at = path.join(root, m.mountPath);
      if (v.projected) {
        mkdirSync(at, { recursive: true });
        for (const source of v.projected.sources) {
          const t = source.serviceAccountToken;
          assert.ok(t, `${d.metadata.name}: only service-account tokens are projected`);
          const now = Math.floor(Date.now() / 1000);
          const token = await new SignJWT({
            'kubernetes.io': { namespace: ns, pod: { name: podName, uid: podUid }, serviceaccount: { name: spec.serviceAccountName, uid: randomUUID() } },
          })
            .setProtectedHeader({ alg: 'RS256', kid: kubelet.kid })
            .setIssuer(kubelet.issuer)
            .setAudience(t.audience)
            .setSubject(`system:serviceaccount:${ns}:${spec.serviceAccountName}`)
            .setIssuedAt(now)
            .setNotBefore(now)
            .setExpirationTime(now + t.expirationSeconds)
            .sign(kubelet.key);
          writeFileSync(path.join(at, t.path), token);
          chmodSync(path.join(at, t.path), v.projected.defaultMode ?? 0o644);
        }
        continue;
      }
      if (v.emptyDir || v.persistentVolumeClaim) {
        assert.equal(m.subPath, undefined);
        mkdirSync(at, { recursive: true });
        continue;
      }
      let data: Record<string, string> | undefined;
      if (v.configMap)
        data = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.namespace === ns && o.metadata.name === v.configMap.name)?.data ?? operator.get(`${ns}/${v.configMap.name}`);
      else if (v.secret) data = secrets.get(`${ns}/${v.secret.secretName}`);
      const source = v.configMap ? `ConfigMap ${v.configMap.name}` : `Secret ${v.secret?.secretName}`;
      assert.ok(data !== undefined, `${ns}/${d.metadata.name}: no ${source} (the pod would not start)`);
      const files = m.subPath === undefined ? Object.keys(data).map((k) => [k, path.join(at, k)]) : [[m.subPath, at]];
      for (const [key, file] of files) {
        assert.ok(key in data, `${ns}/${d.metadata.name}: ${source} has no key ${key} (the pod would not start)`);
        mkdirSync(path.dirname(file), { recursive: true });
        writeFileSync(file, data[key]);
        chmodSync(file, v.secret ? 0o440 : 0o444);
      }
    }
}

/** Rewrites every path under a mount of the container (and the image's /app) to the pod's folder. */
function mapArgs(args: string[], root: string, c: Container): string[] {
  const mounts = c.volumeMounts.map((m) => m.mountPath).filter((p) => p !== '/tmp');
  return args.map((a) => {
    if (a.startsWith('/app/')) return path.join(REPO, a.slice('/app/'.length));
    const under = mounts.find((p) => a === p || a.startsWith(p.endsWith('/') ? p : `${p}/`) || a.startsWith(`${path.posix.dirname(p)}/`));
    return under ? path.join(root, a) : a;
  });
}

function processOf(root: string, c: Container, secrets: Map<string, Record<string, string>>, ns: string) {
  const argv = mapArgs([...(c.command ?? ENTRYPOINT), ...c.args], root, c);
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/tmp', NODE_OPTIONS: '--disable-warning=ExperimentalWarning' };
  for (const e of c.env) {
    // a file the container reads (file:<path>) is in its mounts, under the pod's folder
    if (e.value !== undefined) env[e.name] = e.value.startsWith('file:/') ? `file:${mapArgs([e.value.slice(5)], root, c)[0]}` : e.value;
    else {
      const ref = e.valueFrom!.secretKeyRef;
      const value = secrets.get(`${ns}/${ref.name}`)?.[ref.key];
      assert.ok(value !== undefined, `${c.name}: Secret ${ns}/${ref.name} has no key ${ref.key}`);
      env[e.name] = value;
    }
  }
  assert.equal(argv[0], 'node');
  return { file: process.execPath, args: argv.slice(1), env };
}

async function runToEnd(lab: Lab, pod: string, root: string, c: Container, secrets: Map<string, Record<string, string>>, ns: string): Promise<void> {
  const p = processOf(root, c, secrets, ns);
  await run('ip', ['netns', 'exec', lab.hosts.get(pod)!.netns, 'env', '-i', ...Object.entries(p.env).map(([k, v]) => `${k}=${v}`), p.file, ...p.args]);
}

/** Starts a long-running container; resolves with its ready line, rejects with its output when it exits first. */
function start(lab: Lab, pod: string, root: string, c: Container, secrets: Map<string, Record<string, string>>, ns: string, children: ChildProcess[], outputs: Map<string, string[]>): Promise<string> {
  const p = processOf(root, c, secrets, ns);
  const child = spawn('ip', ['netns', 'exec', lab.hosts.get(pod)!.netns, 'env', '-i', ...Object.entries(p.env).map(([k, v]) => `${k}=${v}`), p.file, ...p.args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  running.set(`${pod}/${c.name}`, child);
  let output = '';
  const kept: string[] = [];
  outputs.set(`${pod}/${c.name}`, kept);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${pod}/${c.name} not ready in 90 s:\n${output}`)), 90_000);
    const onData = (d: Buffer) => {
      output += d.toString();
      kept.push(d.toString());
      const line = output.split('\n').find((l) => / ready: /.test(l));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${pod}/${c.name} exited (${code}) before it was ready:\n${output}`));
    });
  });
}

/** One HTTPS request from a pod, trusting `bundle`, with the identity in `idDir` (cert.pem, key.pem) or none. */
async function call(lab: Lab, pod: string, url: string, bundle: string, idDir: string | undefined, checkName = false): Promise<{ status: number; body: string; peer?: string; address?: string; error?: string }> {
  const script = `
const https = require('node:https');
const fs = require('node:fs');
const [url, dir, ca, checkName] = process.argv.slice(1);
const tls = dir ? { cert: fs.readFileSync(dir + '/cert.pem'), key: fs.readFileSync(dir + '/key.pem') } : {};
// a workload's certificate names its SPIFFE ID, not a host (checked below); a TLS server's names its host
const req = https.get(url, { ...tls, ca: fs.readFileSync(ca), ...(checkName === '1' ? {} : { checkServerIdentity: () => undefined }), timeout: 10000 }, (res) => {
  const peer = res.socket.getPeerCertificate().subjectaltname ?? '';
  const address = res.socket.remoteAddress;
  let body = '';
  res.on('data', (d) => (body += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body, peer: (/URI:([^,]+)/.exec(peer) ?? [])[1], address })));
});
req.on('error', (e) => console.log(JSON.stringify({ status: 0, body: '', error: e.code ?? e.message })));
req.on('timeout', () => req.destroy(new Error('timeout')));
`;
  const { stdout } = await lab.exec(pod, process.execPath, ['-e', script, url, idDir ?? '', bundle, checkName ? '1' : '0']);
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}
