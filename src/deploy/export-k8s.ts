// `gatehouse export k8s`: the topology as Kubernetes manifests. A namespace
// per zone (gh-<zone>) and one for the CA and the control plane (gatehouse),
// each enforcing Pod Security "restricted", with a quota, container limits,
// default-deny NetworkPolicies both ways, DNS to kube-dns, and one policy per
// pod allowing exactly the topology's flows (the model export nftables uses).
// Every document starts with comments naming the topology lines it came from.
// Same topology and image, same bytes.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import type { INamespace } from 'kubernetes-models/v1/Namespace';
import type { IResourceQuota } from 'kubernetes-models/v1/ResourceQuota';
import type { ILimitRange } from 'kubernetes-models/v1/LimitRange';
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import type { LoadedTopology, Topology } from '../topology/index.ts';
import { formatPath } from '../topology/config-error.ts';
import { deploymentFlows, isLoopbackHost, CA, CONTROL, VAULT, type Component, type ComponentId, type Flow, type TopologyPath } from './flows.ts';
import { Issues, commentText, sourceLine } from './lib/issues.ts';
import { CA_TOKEN_FILE, STATE_DIR, TOPOLOGY_CONFIGMAP, TOPOLOGY_DIR, TOPOLOGY_FILE, cpu, memory, resourcesOf, workloadObjects, type MountedFile, type Resources, type Workload } from './lib/k8s-workload.ts';
import { caSpiffeId } from '../pki/index.ts';
import { allowDns, denyAll, podPeer, podPolicy, type Peer, type PodRule } from './lib/k8s-network.ts';
import { Prerequisites, literalFromVariable, renderPrerequisites, type Prerequisite } from './lib/k8s-prerequisites.ts';

/** The image `docker build -t gatehouse:0.1.0 .` makes from this repository's Dockerfile. */
export const DEFAULT_IMAGE = 'gatehouse:0.1.0';
export const SYSTEM_NAMESPACE = 'gatehouse';
/**
 * Per zone namespace, written by the operator (README "Deploying"), never by
 * the export: bundle.pem (the trust domain's root, from the CA pod),
 * edge-ca.pem (the CA of the gateways' and authorities' TLS certificates) and
 * identity-jwks-<zone>.json (the public key of the zone gateway's identity tokens).
 */
export const TRUST_CONFIGMAP = 'gatehouse-trust';
/** Per zone namespace, written by the export: where every component of the trust domain answers in the cluster. */
export const DISCOVERY_CONFIGMAP = 'gatehouse-discovery';
/**
 * In the CA's namespace, written by the export: which service account of which namespace may
 * bootstrap which workload with its projected token (`ca serve --k8s-attestation`).
 */
export const ATTESTATION_CONFIGMAP = 'gatehouse-ca-attestation';
/** In the CA's namespace, written by the operator: jwks.json, the cluster's service-account issuer keys (`kubectl get --raw /openid/v1/jwks`). */
export const K8S_ISSUER_CONFIGMAP = 'gatehouse-k8s-issuer';
/** What most clusters name their service-account issuer (kubeadm, kind, k3s): `kubectl get --raw /.well-known/openid-configuration`. */
export const DEFAULT_K8S_ISSUER = 'https://kubernetes.default.svc.cluster.local';
const ATTESTATION_FILE = '/etc/gatehouse/ca/k8s-attestation.yaml';
/** A folder mount (not a single file), so that a rotated key reaches the CA without a restart. */
const K8S_ISSUER_DIR = '/etc/gatehouse/k8s-issuer';

export interface K8sExportOptions {
  /** Image of every container (a digest pins it: registry/gatehouse@sha256:…); default DEFAULT_IMAGE. */
  image?: string;
  /** The cluster's service-account issuer, which signs the tokens pods bootstrap with; default DEFAULT_K8S_ISSUER. */
  k8sIssuer?: string;
}

const RUN_SERVICE = ['node', '/app/src/cli/run-service.ts'];
/** The key the CA's and the authorities' keys are sealed under at rest (src/vault): from a Secret, never beside what it seals. */
const MASTER_KEY = 'GATEHOUSE_MASTER_KEY';
/** Where the application behind a sidecar listens, on its pod's loopback. */
const APP_LISTEN = '127.0.0.1:8081';

/** Ports of the components the topology gives none (listen port 0, the CA, the control plane, `run` services). */
const DEFAULT_PORTS = { gateway: 8443, authority: 8444, ca: 8600, control: 8700, service: 8080, vault: 8800 } as const;

const RESOURCES: Record<Workload['component'], Resources> = {
  gateway: { requests: { cpu: 250, memory: 256 }, limits: { cpu: 1000, memory: 512 } },
  authority: { requests: { cpu: 100, memory: 192 }, limits: { cpu: 500, memory: 384 } },
  service: { requests: { cpu: 100, memory: 128 }, limits: { cpu: 500, memory: 256 } },
  ca: { requests: { cpu: 50, memory: 96 }, limits: { cpu: 250, memory: 192 } },
  control: { requests: { cpu: 100, memory: 128 }, limits: { cpu: 500, memory: 256 } },
  vault: { requests: { cpu: 100, memory: 128 }, limits: { cpu: 500, memory: 256 } },
};

interface Placed {
  component: Component;
  namespace: string;
  name: string;
  /** The pod (Deployment) it runs in: its own, or the one it shares its state with (the control plane runs beside the CA). */
  pod: string;
  ports: { main: number; redirect?: number; admin?: number };
  /** Absent: not run in the cluster (a service reached at its `upstream` only). */
  workload?: Workload;
}

interface Doc {
  comments: string[];
  object: object;
}

/** registry/name[:tag][@sha256:digest]: nothing that could end a YAML scalar or a line. */
export function isImageReference(image: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/.test(image);
}

/** File name → multi-document YAML, in a fixed order. */
export function exportK8s(loaded: LoadedTopology, options: K8sExportOptions = {}): Map<string, string> {
  return buildK8s(loaded, options).files;
}

/**
 * NOTES.md: every Secret and operator ConfigMap the manifests of exportK8s reference, its keys,
 * what each holds and the command that creates it (never a value).
 */
export function k8sPrerequisites(loaded: LoadedTopology, options: K8sExportOptions = {}): { list: Prerequisite[]; notes: string } {
  const { files, prerequisites } = buildK8s(loaded, options);
  const list = prerequisites.list();
  const notes = renderPrerequisites(list, {
    topologyFile: path.basename(loaded.file),
    trustDomain: loaded.topology.trustDomain,
    namespaces: [...files.keys()].map((f) => f.replace(/\.yaml$/, '')),
    files: [...files.keys()],
  });
  return { list, notes };
}

function buildK8s(loaded: LoadedTopology, options: K8sExportOptions): { files: Map<string, string>; prerequisites: Prerequisites } {
  const t = loaded.topology;
  const image = options.image ?? DEFAULT_IMAGE;
  if (!isImageReference(image)) throw new Error(`--image ${JSON.stringify(image)} is not an image reference`);
  const k8sIssuer = options.k8sIssuer ?? DEFAULT_K8S_ISSUER;
  if (!isIssuerUrl(k8sIssuer)) throw new Error(`--k8s-issuer ${JSON.stringify(k8sIssuer)} is not an https URL`);
  const issues = new Issues(loaded);
  const model = deploymentFlows(t);
  for (const p of model.problems) issues.add(p.at, p.message);
  const where = (at: TopologyPath) => `${formatPath(at) || 'hosts'} (${sourceLine(loaded, at)})`;

  const placed = new Map<ComponentId, Placed>();
  const prerequisites = new Prerequisites();
  for (const c of model.components.values()) {
    const p = place(t, c, issues, prerequisites);
    if (p) placed.set(c.id, p);
  }
  checkClusterReady(t, placed, issues);
  const caUrl = `https://ca.${SYSTEM_NAMESPACE}.svc:${placed.get(CA)!.ports.main}`;
  const controlUrl = `https://control.${SYSTEM_NAMESPACE}.svc:${placed.get(CONTROL)!.ports.main}/v1/bundles`;
  const vault = placed.get(VAULT);
  const vaultUrl = vault ? `https://vault.${SYSTEM_NAMESPACE}.svc:${vault.ports.main}` : undefined;
  // a service learns each zone's authority at its issuer (which the topology must give: checkClusterReady)
  const authorities = Object.entries(t.zones).flatMap(([z, zone]) => (zone.authority?.issuer ? ['--authority', `${z}=${zone.authority.issuer}`] : []));
  issues.check();
  for (const p of placed.values())
    for (const c of p.workload?.containers ?? []) {
      c.args = argsOf(t, p, c.name, { caUrl, controlUrl, authorities, controlInPod: `https://127.0.0.1:${placed.get(CONTROL)!.ports.main}` });
      // the code of a service the vault grants a key to finds it by Service name (as `gatehouse up` tells it)
      if (vaultUrl && c.command === RUN_SERVICE && vaultGrantees(t).has(p.component.id)) c.env = [...(c.env ?? []), ['GATEHOUSE_VAULT_URL', vaultUrl]];
      c.files = filesOf(t, p, c.name);
      for (const f of c.files) fileNeed(prerequisites, p, f);
    }
  colocateControl(placed.get(CA)!, placed.get(CONTROL)!);
  if (vault) colocateVault(placed.get(CA)!, vault);
  const discovery = discoveryOf(t, placed);
  const attestation = attestationOf(t, placed, k8sIssuer);

  // every flow becomes an egress rule of its source pod and an ingress rule of its target pod
  const rules = new Map<string, { rules: PodRule[]; why: string[] }>();
  const ruleOf = (id: ComponentId, rule: PodRule, flow: Flow) => {
    const entry = rules.get(id) ?? { rules: [], why: [] };
    entry.rules.push(rule);
    const why = `${flow.why}: ${where(flow.at)}`;
    if (!entry.why.includes(why)) entry.why.push(why);
    rules.set(id, entry);
  };
  const peerOf = (id: ComponentId): Peer | null => {
    const p = placed.get(id);
    if (!p) return null;
    if (p.workload || p.pod !== p.name) return podPeer(p.namespace, p.pod);
    const host = upstreamHost(t, id);
    if (isIP(host) === 0) {
      issues.add(['services', id, 'upstream'], `${host} is a name: a NetworkPolicy matches addresses, so a service outside the cluster needs an IP upstream (or a run: module)`);
      return null;
    }
    return { ipBlock: { cidr: hostBlock(host) } };
  };
  const inCluster = (id: ComponentId) => {
    const p = placed.get(id);
    return p !== undefined && (p.workload !== undefined || p.pod !== p.name);
  };
  for (const flow of model.flows) {
    // a machine's own traffic (its log shipper): pods write logs to stdout, which the node collects
    if (flow.host) continue;
    if ('component' in flow.to) {
      const target = placed.get(flow.to.component);
      const port = target?.ports[flow.to.listener];
      if (!target || port === undefined) continue;
      // two containers of one pod talk over its loopback (the control plane and the CA): no network policy concerns it
      const source = 'component' in flow.from ? placed.get(flow.from.component) : undefined;
      if (source && source.pod === target.pod && source.namespace === target.namespace && inCluster(source.component.id) && inCluster(target.component.id)) continue;
      if (inCluster(flow.to.component)) {
        const peer = 'anywhere' in flow.from ? undefined : 'cidr' in flow.from ? { ipBlock: { cidr: cidrBlock(flow.from.cidr) } } : peerOf(flow.from.component);
        if (peer !== null) ruleOf(flow.to.component, { direction: 'ingress', peer, port }, flow);
      }
      if ('component' in flow.from && inCluster(flow.from.component)) {
        const peer = peerOf(flow.to.component);
        if (peer) ruleOf(flow.from.component, { direction: 'egress', peer, port }, flow);
      }
    } else if ('component' in flow.from && inCluster(flow.from.component)) {
      const { host, port } = flow.to.outside;
      // a loopback endpoint is inside the pod: no network policy concerns it
      if (isIP(host) !== 0 && !isLoopbackHost(host)) ruleOf(flow.from.component, { direction: 'egress', peer: { ipBlock: { cidr: hostBlock(host) } }, port }, flow);
    }
  }
  issues.check();

  // a gateway that clients outside the topology reach may have a load balancer; nothing else may
  const reachedFromOutside = new Set(model.flows.flatMap((f) => ('component' in f.to && !('component' in f.from) ? [f.to.component] : [])));
  const topologyText = readFileSync(loaded.file, 'utf8');
  const namespaces: { namespace: string; at: TopologyPath; about: string; members: Placed[] }[] = [
    { namespace: SYSTEM_NAMESPACE, at: placed.get(CA)!.component.at, about: `the CA and the control plane of trust domain ${t.trustDomain}`, members: [] },
    ...Object.keys(t.zones).map((zone) => ({ namespace: `gh-${zone}`, at: ['zones', zone] as TopologyPath, about: `zone ${zone}`, members: [] as Placed[] })),
  ];
  for (const p of placed.values()) if (p.workload) namespaces.find((n) => n.namespace === p.namespace)!.members.push(p);

  const files = new Map<string, string>();
  for (const ns of namespaces) {
    const docs: Doc[] = [
      { comments: [`${ns.about}: ${where(ns.at)}`], object: namespaceObject(ns.namespace) },
      { comments: [`what the pods of ${ns.about} may request together: ${where(ns.at)}`], object: quotaOf(ns.namespace, ns.members, ns.members.some((p) => p.component.kind === 'gateway' && reachedFromOutside.has(p.component.id))) },
      { comments: [`defaults and bounds of a container of ${ns.about}: ${where(ns.at)}`], object: limitRangeOf(ns.namespace) },
      { comments: [`the topology the pods of ${ns.about} read: ${where(ns.at)}`], object: configMapOf(ns.namespace, TOPOLOGY_CONFIGMAP, { 'gatehouse.yaml': topologyText }) },
      {
        comments: [`where the components of trust domain ${t.trustDomain} answer in the cluster (gateways: services.json and their authority; services: endpoints.json): ${where(ns.at)}`],
        object: configMapOf(ns.namespace, DISCOVERY_CONFIGMAP, discovery),
      },
      ...(ns.namespace === SYSTEM_NAMESPACE
        ? [
            {
              comments: [
                `the service accounts whose projected tokens the CA accepts, each for exactly one workload; the cluster's issuer keys come from ConfigMap ${K8S_ISSUER_CONFIGMAP} (README "Deploying"): ${where(ns.at)}`,
              ],
              object: configMapOf(ns.namespace, ATTESTATION_CONFIGMAP, { 'k8s-attestation.yaml': attestation }),
            },
          ]
        : []),
      { comments: [`deny by default: no pod of ${ns.about} receives or sends anything not allowed below: ${where(ns.at)}`], object: denyAll(ns.namespace) },
      { comments: [`names resolve at kube-dns (UDP and TCP 53): ${where(ns.at)}`], object: allowDns(ns.namespace) },
    ];
    for (const p of ns.members) {
      const objects = workloadObjects(p.workload!, image);
      for (const o of objects) docs.push({ comments: [`${p.component.id}: ${where(p.component.at)}`], object: o });
      const sharing = [...placed.values()].filter((q) => q.pod === p.name && q.namespace === p.namespace);
      const r = { rules: sharing.flatMap((q) => rules.get(q.component.id)?.rules ?? []), why: sharing.flatMap((q) => rules.get(q.component.id)?.why ?? []) };
      const ids = sharing.map((q) => q.component.id).join(' and ');
      docs.push({ comments: [`exactly the flows of ${ids}:`, ...r.why], object: podPolicy(p.namespace, p.name, r.rules) });
    }
    files.set(`${ns.namespace}.yaml`, render(loaded, docs));
  }
  return { files, prerequisites };
}

function place(t: Topology, c: Component, issues: Issues, needs: Prerequisites): Placed | undefined {
  const kind = c.kind;
  const namespace = c.zone === undefined ? SYSTEM_NAMESPACE : `gh-${c.zone}`;
  if (namespace.length > 63) {
    issues.add(['zones', c.zone!], `zone name too long for a Kubernetes namespace (gh-${c.zone} is over 63 characters)`);
    return undefined;
  }
  const name = kind === 'service' ? c.id : kind;
  const pod = name;
  if (kind === 'service' && (c.id === 'gateway' || c.id === 'authority' || c.id === 'ca' || c.id === 'control' || c.id === 'vault')) {
    issues.add(c.at, `a service named ${c.id} would share its Kubernetes name with a Gatehouse component: rename it`);
    return undefined;
  }
  const main = c.ports.main ?? DEFAULT_PORTS[kind];
  const ports = { main, redirect: c.ports.redirect, admin: c.ports.admin };
  const service = kind === 'service' ? t.services[c.id] : undefined;
  if (service && service.run === undefined) return { component: c, namespace, name, pod, ports };
  const authority = c.zone === undefined ? undefined : t.zones[c.zone].authority;
  const persistent = kind === 'ca' || kind === 'control' || kind === 'vault' || (kind === 'authority' && authority?.storage === 'sqlite');
  const replicas = persistent ? 1 : 2;
  const workload: Workload = {
    name,
    namespace,
    component: kind,
    replicas,
    persistent,
    containers: [
      {
        name: kind,
        args: [],
        ports: [
          { name: kind === 'gateway' || kind === 'authority' ? 'https' : kind === 'service' ? 'mtls' : kind, port: main },
          ...(ports.redirect ? [{ name: 'redirect', port: ports.redirect }] : []),
          ...(ports.admin ? [{ name: 'admin', port: ports.admin }] : []),
        ],
        secretEnv: secretEnvOf(t, c, name).map(([variable, secret, what]) => {
          needs.add({ namespace, kind: 'Secret', type: 'generic', name: secret, afterCa: false }, { key: variable, what, flag: literalFromVariable(variable) });
          return [variable, secret] as [string, string];
        }),
      },
    ],
    resources: RESOURCES[kind],
    // the admin listener (metrics, health, reload) is scraped at the pod, never served by the Service
    ...(ports.admin ? { services: [{ name, ports: ['https', ...(ports.redirect ? ['redirect'] : [])] }] } : {}),
  };
  // the CA creates its root and zone issuers on first start (ca init finds them on the next)
  if (kind === 'ca') workload.containers.unshift({ name: 'ca-init', args: [], ports: [], secretEnv: [[MASTER_KEY, `${name}-secrets`]], init: true });
  if (service?.sidecar) {
    // the application, plain HTTP on the pod's loopback, behind the sidecar that serves mTLS on the pod port
    workload.containers[0].name = 'sidecar';
    workload.containers.unshift({ name: 'app', command: RUN_SERVICE, args: [], ports: [], secretEnv: [] });
  }
  else if (kind === 'service') workload.containers[0].command = RUN_SERVICE;
  if (kind === 'gateway' || kind === 'service' || kind === 'authority') {
    // each replica, and each pod a rollout or a restart makes, bootstraps its certificate with a
    // token of its own: the projected service-account token, read from its file at each bootstrap
    workload.caTokenAudience = caSpiffeId(t.trustDomain);
    const bootstrapper = workload.containers.at(-1)!;
    bootstrapper.caToken = true;
    bootstrapper.env = [['GATEHOUSE_JOIN_TOKEN', `file:${CA_TOKEN_FILE}`]];
  }
  return { component: c, namespace, name, pod, ports, workload };
}

/**
 * The control plane signs bundles and serves mTLS with keys the CA issues
 * from its state dir, and reads the CA's revocations there: it runs as a
 * second container of the CA's pod, on the CA's volume, behind a Service of
 * its own.
 */
function colocateControl(ca: Placed, control: Placed): void {
  const w = ca.workload!;
  const own = control.workload!;
  // it opens the CA's issuer keys, sealed under the master key
  w.containers.push({ ...own.containers[0], resources: own.resources, secretEnv: [[MASTER_KEY, `${ca.name}-secrets`]] });
  w.services = [
    { name: ca.name, ports: ['ca'] },
    { name: control.name, ports: ['control'] },
  ];
  control.workload = undefined;
  control.pod = ca.pod;
}

/**
 * The vault issues its server certificate from the CA's issuer keys and reads the CA's
 * revocations on that volume, and keeps its own keys there (sealed under the same master key):
 * a third container of the CA's pod, behind a Service of its own.
 */
function colocateVault(ca: Placed, vault: Placed): void {
  const w = ca.workload!;
  const own = vault.workload!;
  w.containers.push({ ...own.containers[0], resources: own.resources });
  w.services = [...(w.services ?? []), { name: vault.name, ports: ['vault'] }];
  vault.workload = undefined;
  vault.pod = ca.pod;
}

/** Services a vault key grants an operation to. */
function vaultGrantees(t: Topology): Set<string> {
  return new Set(Object.values(t.vault?.keys ?? {}).flatMap((k) => [...k.encrypt, ...k.decrypt, ...k.rewrap, ...k.datakey, ...k.tokenize, ...k.detokenize]));
}

/**
 * What a topology needs before its pods can find and trust each other in a
 * cluster; anything missing is an error at its line, never a manifest that
 * cannot run.
 */
function checkClusterReady(t: Topology, placed: Map<ComponentId, Placed>, issues: Issues): void {
  const tlsFiles = (tls: 'dev' | { cert: string; key: string }, at: TopologyPath, svc: string) => {
    if (tls === 'dev') {
      issues.add(
        at,
        `tls: dev issues a certificate for loopback names only, from a CA each pod would make for itself: in Kubernetes give tls: { cert, key } for the names its clients use (${svc}); the export mounts them from a Secret`,
      );
      return;
    }
    for (const f of [tls.cert, tls.key]) if (!relativeInside(f)) issues.add(at, `${JSON.stringify(f)} must be a path below the topology's folder (the pod mounts it at ${TOPOLOGY_DIR}/…)`);
  };
  for (const [z, zone] of Object.entries(t.zones)) {
    const gw = placed.get(`gateway:${z}`);
    if (zone.gateway && gw) tlsFiles(zone.gateway.tls, ['zones', z, 'gateway', 'tls'], `gateway.${gw.namespace}.svc and its public name`);
    const a = placed.get(`authority:${z}`);
    if (!zone.authority || !a) continue;
    const at: TopologyPath = ['zones', z, 'authority'];
    const inCluster = `https://authority.${a.namespace}.svc:${a.ports.main}`;
    if (zone.authority.issuer === undefined)
      issues.add(at, `an authority in Kubernetes needs issuer: the https URL its clients reach it at (${inCluster} inside the cluster, or its public name); absent, it would name its listen address (0.0.0.0) in every token`);
    else {
      const host = new URL(zone.authority.issuer).hostname.replace(/^\[|\]$/g, '');
      if (isLoopbackHost(host) || host === '0.0.0.0' || host === '::')
        issues.add([...at, 'issuer'], `issuer ${zone.authority.issuer} names this machine: no other pod reaches it there (use ${inCluster} or a public name)`);
    }
    tlsFiles(zone.authority.tls, [...at, 'tls'], `authority.${a.namespace}.svc and the issuer's host`);
    (zone.authority.federation ?? []).forEach((f, i) => {
      // the upstream zone's issuer comes from the discovery ConfigMap (filesOf); its authority must say it
      if (f.zone !== undefined && !t.zones[f.zone]?.authority?.issuer)
        issues.add([...at, 'federation', i], `federation with zone ${f.zone} needs that zone's authority issuer (the URL this authority discovers it at), which the topology does not give`);
    });
    zone.authority.trustedZones.forEach((trusted, i) => {
      if (typeof trusted === 'string')
        issues.add(
          [...at, 'trustedZones', i],
          `trusted zone ${trusted} named alone is read from a state dir the authorities share, which pods do not: give { zone: ${trusted}, issuer, jwksUri, revocationFeed } (its authority's issuer, <issuer>/jwks and a feed client there)`,
        );
    });
  }
}

/** A relative path that stays below its folder once joined to it. */
function relativeInside(p: string): boolean {
  return !path.posix.isAbsolute(p) && !p.includes('\\') && !path.posix.normalize(p).startsWith('..') && p.length <= 255;
}

/** The discovery ConfigMap's files: what `gatehouse up` writes into its shared state dir, with the cluster's addresses. */
function discoveryOf(t: Topology, placed: Map<ComponentId, Placed>): Record<string, string> {
  const url = (id: ComponentId) => {
    const p = placed.get(id)!;
    return `https://${p.name}.${p.namespace}.svc:${p.ports.main}`;
  };
  const services: Record<string, { zone: string; url: string }> = {};
  for (const [name, s] of Object.entries(t.services))
    if (placed.has(name)) services[name] = { zone: s.zone, url: s.upstream ?? url(name) };
  const zones: Record<string, { gateway?: string; authority?: string }> = {};
  for (const [z, zone] of Object.entries(t.zones)) {
    const entry: { gateway?: string; authority?: string } = {};
    if (zone.gateway && placed.has(`gateway:${z}`)) entry.gateway = url(`gateway:${z}`);
    if (zone.authority?.issuer) entry.authority = zone.authority.issuer;
    zones[z] = entry;
  }
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  const files: Record<string, string> = {
    'endpoints.json': json({ trustDomain: t.trustDomain, ca: url(CA), control: url(CONTROL), ...(placed.has(VAULT) ? { vault: url(VAULT) } : {}), zones, services }),
    'services.json': json({ services: Object.fromEntries(Object.entries(services).map(([n, s]) => [n, { upstream: s.url }])) }),
  };
  // as an authority publishes itself in the state dir (public.json): the gateway of its zone reads it
  for (const [z, zone] of Object.entries(t.zones))
    if (zone.authority?.issuer) files[`authority-${z}.json`] = json({ issuer: zone.authority.issuer, jwks_uri: `${zone.authority.issuer.replace(/\/$/, '')}/jwks` });
  return files;
}

/** Files a container reads that its own state dir cannot have: discovery, trust anchors, shared keys, TLS files. */
function filesOf(t: Topology, p: Placed, container: string): MountedFile[] {
  const zone = p.component.zone;
  const discovery = (key: string, at: string): MountedFile => ({ path: path.posix.join(STATE_DIR, at), from: { configMap: DISCOVERY_CONFIGMAP }, key });
  const trust = (key: string, at: string): MountedFile => ({ path: path.posix.join(STATE_DIR, at), from: { configMap: TRUST_CONFIGMAP }, key });
  const tls = (config: { cert: string; key: string } | 'dev', secret: string): MountedFile[] =>
    config === 'dev'
      ? []
      : [
          { path: path.posix.join(TOPOLOGY_DIR, config.cert), from: { secret }, key: 'tls.crt' },
          { path: path.posix.join(TOPOLOGY_DIR, config.key), from: { secret }, key: 'tls.key' },
        ];
  switch (p.component.kind) {
    case 'gateway': {
      const z = t.zones[zone!];
      return [
        discovery('services.json', 'services.json'),
        ...(z.authority?.issuer ? [discovery(`authority-${zone}.json`, `authority/${zone}/public.json`)] : []),
        // the replicas sign identity tokens with one key, which services verify
        { path: path.posix.join(STATE_DIR, 'gateway', zone!, 'identity-key.json'), from: { secret: 'gateway-identity' }, key: 'identity-key.json' },
        trust('edge-ca.pem', 'tls/dev-ca.pem'),
        trust('bundle.pem', 'pki/bundle.pem'),
        ...tls(z.gateway!.tls, 'gateway-tls'),
      ];
    }
    case 'authority': {
      const a = t.zones[zone!].authority!;
      const upstreams = [...new Set((a.federation ?? []).flatMap((f) => (f.zone !== undefined && f.zone !== zone ? [f.zone] : [])))];
      // it calls other authorities over TLS (trusted zones' JWKS and feeds, federated sign-in): their certificates' CA
      const callsAuthorities = upstreams.length > 0 || a.trustedZones.some((z) => typeof z !== 'string') || (a.federation ?? []).length > 0;
      return [
        // clientCa: trust-domain checks workload certificates against the trust domain's root
        ...(a.clientCa === 'trust-domain' ? [trust('bundle.pem', 'pki/bundle.pem')] : []),
        ...(callsAuthorities ? [trust('edge-ca.pem', 'tls/dev-ca.pem')] : []),
        // a federation upstream given by zone: its issuer, as that authority would publish it beside this one
        ...upstreams.map((u) => discovery(`authority-${u}.json`, `authority/${u}/public.json`)),
        ...tls(a.tls, 'authority-tls'),
      ];
    }
    case 'service':
      if (container === 'app') return [];
      return [
        trust('bundle.pem', 'pki/bundle.pem'),
        trust('edge-ca.pem', 'tls/dev-ca.pem'),
        trust(`identity-jwks-${zone}.json`, `gateway/${zone}/identity-jwks.json`),
        discovery('endpoints.json', 'endpoints.json'),
      ];
    case 'vault':
      return [];
    case 'ca':
      return container === 'ca'
        ? [
            { path: ATTESTATION_FILE, from: { configMap: ATTESTATION_CONFIGMAP }, key: 'k8s-attestation.yaml' },
            { path: K8S_ISSUER_DIR, from: { configMap: K8S_ISSUER_CONFIGMAP } },
          ]
        : [];
    case 'control':
      return [];
  }
}

/**
 * The CA's attestation config: the pods that bootstrap from it (gateways, services), by the
 * service account the export gives each, mapped to their workload. Its JWKS path is relative to
 * the config's folder, so the file names no path outside its mounts.
 */
function attestationOf(t: Topology, placed: Map<ComponentId, Placed>, issuer: string): string {
  const serviceAccounts = [...placed.values()]
    .filter((p) => p.workload?.caTokenAudience !== undefined)
    .map((p) => ({ namespace: p.namespace, serviceAccount: p.workload!.name, workload: p.component.id }));
  const config = {
    issuer,
    audience: caSpiffeId(t.trustDomain),
    keys: { jwksFile: path.posix.relative(path.posix.dirname(ATTESTATION_FILE), `${K8S_ISSUER_DIR}/jwks.json`) },
    maxTokenLifetimeSeconds: 3600,
    serviceAccounts,
  };
  return `# gatehouse ca serve --k8s-attestation: written by gatehouse export k8s\n${stringify(config, { lineWidth: 0 })}`;
}

function isIssuerUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'https:' && u.username === '' && u.password === '' && value.length <= 512 && !/[\s"'#]/.test(value);
  } catch {
    return false;
  }
}

function argsOf(t: Topology, p: Placed, container: string, urls: { caUrl: string; controlUrl: string; authorities: string[]; controlInPod: string }): string[] {
  const common = ['--config', TOPOLOGY_FILE, '--state-dir', STATE_DIR];
  const listen = (port: number) => `0.0.0.0:${port}`;
  const service = p.component.kind === 'service' ? t.services[p.component.id] : undefined;
  const module = service ? path.posix.join(TOPOLOGY_DIR, service.run!) : '';
  switch (p.component.kind) {
    case 'gateway':
      return [
        'gateway',
        ...common,
        '--zone',
        p.component.zone!,
        // one process: the container's CPU limit is one core; replicas scale it
        '--workers',
        '1',
        '--listen',
        listen(p.ports.main),
        ...(p.ports.redirect ? ['--redirect-listen', listen(p.ports.redirect)] : []),
        // off loopback in the topology: on the pod address, for the scrapers only (its network policy)
        ...(p.ports.admin ? ['--admin-listen', listen(p.ports.admin)] : []),
        // its workload certificate from the CA server, with the join token of its Secret
        '--ca-url',
        urls.caUrl,
        '--control',
        urls.controlUrl,
      ];
    case 'authority':
      // an enforcement point too (quarantines, revoked tokens; its events): its workload certificate from the CA server
      return ['authority', ...common, '--zone', p.component.zone!, '--listen', listen(p.ports.main), '--control', urls.controlUrl, '--ca-url', urls.caUrl];
    case 'ca':
      // its refusals go to the control plane beside it, over the pod's loopback (colocateControl)
      return container === 'ca-init'
        ? ['ca', 'init', ...common]
        : ['ca', 'serve', ...common, '--listen', listen(p.ports.main), '--control', urls.controlInPod, '--k8s-attestation', ATTESTATION_FILE];
    case 'control':
      // beside the CA, on its volume (colocateControl)
      return ['control', ...common, '--listen', listen(p.ports.main)];
    case 'vault':
      // beside the CA, on its volume (colocateVault)
      return ['vault', ...common, '--listen', listen(p.ports.main)];
    case 'service':
      if (container === 'app') return [module, p.component.id, '--plain', '--state-dir', STATE_DIR, '--app-listen', APP_LISTEN];
      if (service!.sidecar)
        return ['sidecar', '--service', p.component.id, '--upstream', `http://${APP_LISTEN}`, ...common, '--listen', listen(p.ports.main), '--ca-url', urls.caUrl, '--control', urls.controlUrl];
      return [module, p.component.id, ...common, '--listen', listen(p.ports.main), '--ca-url', urls.caUrl, '--control', urls.controlUrl, ...urls.authorities];
  }
}

/** Secrets a component reads from its environment: the variable names the topology gives, in a Secret named for the component, and what each holds. */
function secretEnvOf(t: Topology, c: Component, name: string): [variable: string, secret: string, what: string][] {
  const zone = c.zone === undefined ? undefined : t.zones[c.zone];
  const secret = `${name}-secrets`;
  const clientAt = (clientId: string, where: string, how: string) => `the secret of client ${JSON.stringify(clientId)} at ${where} (${how})`;
  switch (c.kind) {
    case 'gateway': {
      const auth = zone!.authentication;
      const out: [string, string, string][] = [];
      if (auth.revocationFeed)
        out.push([auth.revocationFeed.clientSecretEnv, secret, clientAt(auth.revocationFeed.clientId, `the ${c.zone} authority, the revocation feed the gateway polls`, `gatehouse clients add --zone ${c.zone} --revocation-feed prints it once`)]);
      if (auth.introspection) out.push([auth.introspection.clientSecretEnv, secret, clientAt(auth.introspection.clientId, 'the introspection endpoint of the external identity provider', 'from that provider')]);
      return out;
    }
    case 'authority': {
      const a = zone!.authority!;
      return [
        // its zone's key-encryption key is sealed under the master key in its database: the same key on every replica and restart
        [MASTER_KEY, secret, `the master key the ${c.zone} authority's key-encryption key is sealed under: 32 random bytes, base64 (openssl rand -base64 32); keep a copy, its database opens nothing without it`],
        ...a.trustedZones.flatMap((z) =>
          typeof z === 'string' ? [] : [[z.revocationFeed.clientSecretEnv, secret, clientAt(z.revocationFeed.clientId, `the ${z.zone} authority, whose revocation feed this one reads before an exchange`, `gatehouse clients add --zone ${z.zone} --revocation-feed prints it once`)] as [string, string, string]],
        ),
        // its client secret at each upstream OpenID Provider it federates sign-in with
        ...(a.federation ?? []).map((f): [string, string, string] => [f.clientSecretEnv, secret, clientAt(f.clientId, `the upstream OpenID Provider ${JSON.stringify(f.name)} this authority signs users in with`, f.zone !== undefined ? `gatehouse clients add --zone ${f.zone} with redirect URI <issuer>/federation/callback prints it once` : 'registered at that provider')]),
      ];
    }
    case 'ca':
      // the root and issuer keys on its volume are sealed under it: the key itself stays in the Secret, off the volume
      return [[MASTER_KEY, secret, "the master key the CA's root and issuer keys are sealed under: 32 random bytes, base64 (openssl rand -base64 32); keep a copy, the CA's volume opens nothing without it"]];
    case 'service':
      // it bootstraps with its projected service-account token (place)
      return [];
    case 'control':
      return [];
    case 'vault':
      // its keys on the CA's volume are sealed under the CA's master key (they share the state dir)
      return [[MASTER_KEY, 'ca-secrets', "the master key the CA's root and issuer keys are sealed under: 32 random bytes, base64 (openssl rand -base64 32); keep a copy, the CA's volume opens nothing without it"]];
  }
}

/** What a mounted file from a Secret or an operator ConfigMap holds, and how to make it. */
function fileNeed(needs: Prerequisites, p: Placed, f: MountedFile): void {
  const zone = p.component.zone ?? '';
  const ns = p.namespace;
  if ('secret' in f.from) {
    const secret = f.from.secret;
    if (secret === 'gateway-tls' || secret === 'authority-tls') {
      const who = secret === 'gateway-tls' ? 'gateway' : 'authority';
      const names = `${who}.${ns}.svc${who === 'authority' ? " and the host of the zone authority's issuer" : ' and the names outside clients use'}`;
      const file = `${who}-${zone}`;
      needs.add(
        { namespace: ns, kind: 'Secret', type: 'tls', name: secret, afterCa: false },
        f.key === 'tls.crt'
          ? { key: 'tls.crt', what: `the ${zone} ${who}'s TLS certificate chain (PEM) for ${names}, from the CA your clients trust`, flag: `--cert=${file}.crt` }
          : { key: 'tls.key', what: `its private key (PEM)`, flag: `--key=${file}.key` },
      );
    } else if (secret === 'gateway-identity')
      needs.add(
        { namespace: ns, kind: 'Secret', type: 'generic', name: secret, afterCa: false },
        {
          key: f.key!,
          what: `the Ed25519 private JWK (with kid) the ${zone} gateway's replicas sign identity tokens with; its public JWK goes into gatehouse-trust of every namespace whose services it calls`,
          flag: `--from-file=${f.key}=gateway-${zone}-identity-key.json`,
        },
      );
    else throw new Error(`no description of Secret ${secret}`);
    return;
  }
  const cm = f.from.configMap;
  if (cm === TRUST_CONFIGMAP) {
    const what: Record<string, string> = {
      'bundle.pem': "the trust domain's root certificate, from the CA pod (step 2)",
      'edge-ca.pem': "the CA of the gateways' and authorities' TLS certificates (what tls.crt of gateway-tls and authority-tls chain to)",
    };
    const jwks = /^identity-jwks-(.+)\.json$/.exec(f.key!)?.[1];
    needs.add(
      { namespace: ns, kind: 'ConfigMap', type: 'generic', name: cm, afterCa: true },
      {
        key: f.key!,
        what: what[f.key!] ?? `the public JWKS of the ${jwks} gateway's identity-token key (the public part of gateway-identity in gh-${jwks})`,
        flag: `--from-file=${f.key}=${jwks === undefined ? f.key : `gateway-${jwks}-identity-jwks.json`}`,
      },
    );
  } else if (cm === K8S_ISSUER_CONFIGMAP)
    needs.add(
      { namespace: ns, kind: 'ConfigMap', type: 'generic', name: cm, afterCa: false },
      {
        key: 'jwks.json',
        what: "the cluster's service-account issuer keys (kubectl get --raw /openid/v1/jwks > cluster-sa-jwks.json); the CA verifies the pods' projected tokens with them: update it when the cluster rotates its key (the CA re-reads it)",
        flag: '--from-file=jwks.json=cluster-sa-jwks.json',
      },
    );
}

function upstreamHost(t: Topology, service: string): string {
  return new URL(t.services[service].upstream!).hostname.replace(/^\[|\]$/g, '');
}

function hostBlock(address: string): string {
  return `${address}/${isIP(address) === 4 ? 32 : 128}`;
}

/** An ipBlock needs CIDR notation: a single address becomes its /32 or /128. */
function cidrBlock(cidr: string): string {
  return cidr.includes('/') ? cidr : hostBlock(cidr);
}

function namespaceObject(name: string): INamespace {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name,
      labels: {
        'app.kubernetes.io/part-of': 'gatehouse',
        'pod-security.kubernetes.io/enforce': 'restricted',
        'pod-security.kubernetes.io/enforce-version': 'latest',
        'pod-security.kubernetes.io/audit': 'restricted',
        'pod-security.kubernetes.io/warn': 'restricted',
      },
    },
  };
}

/** Room for every replica plus one surge pod per rolling component, and nothing exposed on nodes. */
function quotaOf(namespace: string, members: Placed[], loadBalancer: boolean): IResourceQuota {
  const sum = { requests: { cpu: 0, memory: 0 }, limits: { cpu: 0, memory: 0 }, pods: 0, claims: 0 };
  for (const p of members) {
    const w = p.workload!;
    const pods = w.replicas + (w.persistent ? 0 : 1);
    sum.pods += pods;
    sum.claims += w.persistent ? 1 : 0;
    // init containers run before the others, never beside them
    for (const c of w.containers.filter((c) => !c.init))
      for (const k of ['requests', 'limits'] as const) {
        sum[k].cpu += pods * resourcesOf(w, c)[k].cpu;
        sum[k].memory += pods * resourcesOf(w, c)[k].memory;
      }
  }
  return {
    apiVersion: 'v1',
    kind: 'ResourceQuota',
    metadata: { name: 'gatehouse', namespace },
    spec: {
      hard: {
        pods: String(sum.pods),
        'requests.cpu': cpu(sum.requests.cpu),
        'requests.memory': memory(sum.requests.memory),
        'limits.cpu': cpu(sum.limits.cpu),
        'limits.memory': memory(sum.limits.memory),
        persistentvolumeclaims: String(sum.claims),
        'requests.storage': `${sum.claims}Gi`,
        services: String(members.reduce((n, p) => n + (p.workload!.services?.length ?? 1), 0)),
        'services.nodeports': '0',
        'services.loadbalancers': loadBalancer ? '1' : '0',
      },
    },
  };
}

function limitRangeOf(namespace: string): ILimitRange {
  return {
    apiVersion: 'v1',
    kind: 'LimitRange',
    metadata: { name: 'gatehouse', namespace },
    spec: {
      limits: [
        {
          type: 'Container',
          default: { cpu: '500m', memory: '256Mi' },
          defaultRequest: { cpu: '100m', memory: '128Mi' },
          max: { cpu: '2', memory: '1Gi' },
        },
      ],
    },
  };
}

function configMapOf(namespace: string, name: string, data: Record<string, string>): IConfigMap {
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels: { 'app.kubernetes.io/part-of': 'gatehouse' } },
    immutable: false,
    data,
  };
}

function render(loaded: LoadedTopology, docs: Doc[]): string {
  const header = [
    `# Written by \`gatehouse export k8s\` from ${commentText(path.basename(loaded.file))} (trust domain ${loaded.topology.trustDomain}): regenerate it from the topology, do not edit it.`,
  ];
  return (
    header.join('\n') +
    '\n' +
    docs
      .map((d) => `---\n${d.comments.map((c) => `# ${commentText(c)}`).join('\n')}\n${stringify(d.object, { lineWidth: 0, aliasDuplicateObjects: false })}`)
      .join('')
  );
}
