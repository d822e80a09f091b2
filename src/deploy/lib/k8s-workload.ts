// One Gatehouse component as Kubernetes objects: ServiceAccount (no API
// token), Deployment whose pod meets Pod Security Standards "restricted" and
// more (read-only root, emptyDir only where written, requests and limits),
// Service, PodDisruptionBudget when replicated, a volume claim when it keeps
// state. Secrets are referenced by name and key, never written here.
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IPersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import type { IService } from 'kubernetes-models/v1/Service';
import type { IServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { IPodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import type { IVolumeMount } from 'kubernetes-models/v1/VolumeMount';

/** Where the pod finds the topology (a ConfigMap key) and keeps what it writes. */
export const TOPOLOGY_DIR = '/srv/topology';
export const TOPOLOGY_FILE = `${TOPOLOGY_DIR}/gatehouse.yaml`;
export const TOPOLOGY_CONFIGMAP = 'gatehouse-topology';
export const STATE_DIR = '/var/lib/gatehouse';
/** The image's user (Dockerfile): not root, not a user of the node. */
export const RUN_AS = 10001;

/** CPU in millicores, memory in MiB. */
export interface Resources {
  requests: { cpu: number; memory: number };
  limits: { cpu: number; memory: number };
}

/**
 * One file the component expects at a fixed path (its state dir, beside the topology), mounted
 * read-only from a key of a ConfigMap or a Secret; without a key, the whole ConfigMap or Secret
 * as a folder at `path` (which, unlike a single-file mount, the kubelet updates when it changes).
 */
export interface MountedFile {
  path: string;
  from: { configMap: string } | { secret: string };
  key?: string;
}

/** Where a container that bootstraps from the CA finds its projected service-account token (the kubelet rewrites it before it expires). */
export const CA_TOKEN_DIR = '/var/run/secrets/gatehouse/ca-token';
export const CA_TOKEN_FILE = `${CA_TOKEN_DIR}/token`;
/** The shortest lifetime Kubernetes grants a projected token; the kubelet renews it at 80%. */
export const CA_TOKEN_SECONDS = 600;

export interface ContainerSpec {
  name: string;
  command?: string[];
  args: string[];
  /** Ports served on the pod's address (probed, and the Service's); none: it listens on loopback only. */
  ports: { name: string; port: number }[];
  /** Environment variables read from Secrets: variable → Secret name (the key is the variable's name). */
  secretEnv: [variable: string, secret: string][];
  /** Environment variables with a fixed, non-secret value; absent: none. */
  env?: [variable: string, value: string][];
  /** Mounts the pod's projected service-account token for the CA at CA_TOKEN_DIR (the workload's caTokenAudience). */
  caToken?: boolean;
  /** Runs to completion before the others start (an idempotent preparation, such as `ca init`). */
  init?: boolean;
  /** Files it reads that another pod, the operator or the export provides; absent or empty: none. */
  files?: MountedFile[];
  /** Its own requests and limits; absent: the workload's. */
  resources?: Resources;
}

export interface Workload {
  name: string;
  namespace: string;
  component: 'gateway' | 'authority' | 'service' | 'ca' | 'control' | 'vault';
  replicas: number;
  /** The state dir survives restarts (CA, control plane, SQLite authority): a volume claim, one replica, Recreate. */
  persistent: boolean;
  /** One container, or an application and the `gatehouse sidecar` in front of it (they share the state dir). */
  containers: ContainerSpec[];
  /** Of each container that names none. */
  resources: Resources;
  /**
   * The audience of the projected service-account token its containers with caToken present to
   * the CA (the CA's SPIFFE ID); absent: no token is projected (automountServiceAccountToken stays
   * false either way: this token is for the CA only, the API server refuses its audience).
   */
  caTokenAudience?: string;
  /** The Services in front of the pod, each with the names of the container ports it serves; absent: one named for the workload, every port. */
  services?: { name: string; ports: string[] }[];
}

/** Requests and limits of a container of the workload. */
export function resourcesOf(w: Workload, c: ContainerSpec): Resources {
  return c.resources ?? w.resources;
}

const sourceVolume = (from: MountedFile['from']): string => ('configMap' in from ? `cm-${from.configMap}` : `secret-${from.secret}`);

export const labelsOf = (w: { name: string; component: string }): Record<string, string> => ({
  'app.kubernetes.io/name': w.name,
  'app.kubernetes.io/component': w.component,
  'app.kubernetes.io/part-of': 'gatehouse',
});

export const selectorOf = (name: string): Record<string, string> => ({ 'app.kubernetes.io/name': name });

export function cpu(millicores: number): string {
  return millicores % 1000 === 0 ? String(millicores / 1000) : `${millicores}m`;
}

export function memory(mebibytes: number): string {
  return `${mebibytes}Mi`;
}

function quantities(r: { cpu: number; memory: number }): { cpu: string; memory: string } {
  return { cpu: cpu(r.cpu), memory: memory(r.memory) };
}

export function workloadObjects(w: Workload, image: string): (IServiceAccount | IDeployment | IService | IPodDisruptionBudget | IPersistentVolumeClaim)[] {
  const metadata = { name: w.name, namespace: w.namespace, labels: labelsOf(w) };
  const volumes: IVolume[] = [
    { name: 'topology', configMap: { name: TOPOLOGY_CONFIGMAP, defaultMode: 0o444 } },
    // Node and its libraries write temporary files: the only writable place besides the state dir
    { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
    w.persistent ? { name: 'state', persistentVolumeClaim: { claimName: `${w.name}-state` } } : { name: 'state', emptyDir: { sizeLimit: '256Mi' } },
    ...(w.caTokenAudience === undefined
      ? []
      : [
          {
            name: 'ca-token',
            projected: {
              defaultMode: 0o440,
              sources: [{ serviceAccountToken: { audience: w.caTokenAudience, expirationSeconds: CA_TOKEN_SECONDS, path: 'token' } }],
            },
          },
        ]),
  ];
  // one volume per ConfigMap or Secret some container reads a file of (a Secret's files: owner and group only)
  for (const f of w.containers.flatMap((c) => c.files ?? [])) {
    const name = sourceVolume(f.from);
    if (volumes.some((v) => v.name === name)) continue;
    volumes.push(
      'configMap' in f.from
        ? { name, configMap: { name: f.from.configMap, defaultMode: 0o444 } }
        : { name, secret: { secretName: f.from.secret, defaultMode: 0o440 } },
    );
  }
  const mounts: IVolumeMount[] = [
    { name: 'topology', mountPath: TOPOLOGY_FILE, subPath: 'gatehouse.yaml', readOnly: true },
    { name: 'tmp', mountPath: '/tmp' },
    { name: 'state', mountPath: STATE_DIR },
  ];
  const specs = w.containers.map((c): IContainer => {
    const env: IEnvVar[] = [
      { name: 'NODE_ENV', value: 'production' },
      ...(c.env ?? []).map(([name, value]) => ({ name, value })),
      ...c.secretEnv.map(([variable, secret]) => ({ name: variable, valueFrom: { secretKeyRef: { name: secret, key: variable } } })),
    ];
    const probed = c.ports[0]?.port;
    const resources = resourcesOf(w, c);
    // a file inside the state dir is mounted over it (subPath): the rest of the state dir stays writable
    const files: IVolumeMount[] = (c.files ?? []).map((f) => ({ name: sourceVolume(f.from), mountPath: f.path, ...(f.key === undefined ? {} : { subPath: f.key }), readOnly: true }));
    if (c.caToken && w.caTokenAudience !== undefined) files.push({ name: 'ca-token', mountPath: CA_TOKEN_DIR, readOnly: true });
    return {
      name: c.name,
      image,
      imagePullPolicy: 'IfNotPresent',
      ...(c.command ? { command: c.command } : {}),
      args: c.args,
      ports: c.ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: 'TCP' })),
      env,
      resources: { requests: quantities(resources.requests), limits: quantities(resources.limits) },
      securityContext: {
        runAsNonRoot: true,
        runAsUser: RUN_AS,
        runAsGroup: RUN_AS,
        allowPrivilegeEscalation: false,
        privileged: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      },
      // admin listeners stay on loopback (never on a pod address): the probes test the listener itself
      ...(probed === undefined
        ? {}
        : {
            readinessProbe: { tcpSocket: { port: probed }, periodSeconds: 5, failureThreshold: 3 },
            livenessProbe: { tcpSocket: { port: probed }, initialDelaySeconds: 10, periodSeconds: 10, failureThreshold: 6 },
          }),
      volumeMounts: [...mounts, ...files],
      terminationMessagePolicy: 'FallbackToLogsOnError',
    };
  });
  const initContainers = specs.filter((_, i) => w.containers[i].init);
  const containers = specs.filter((_, i) => !w.containers[i].init);
  const ports = w.containers.flatMap((c) => c.ports);
  const deployment: IDeployment = {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata,
    spec: {
      replicas: w.replicas,
      revisionHistoryLimit: 3,
      selector: { matchLabels: selectorOf(w.name) },
      strategy: w.persistent ? { type: 'Recreate' } : { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: labelsOf(w) },
        spec: {
          serviceAccountName: w.name,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          hostNetwork: false,
          hostPID: false,
          hostIPC: false,
          securityContext: {
            runAsNonRoot: true,
            runAsUser: RUN_AS,
            runAsGroup: RUN_AS,
            fsGroup: RUN_AS,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          terminationGracePeriodSeconds: 30,
          ...(initContainers.length > 0 ? { initContainers } : {}),
          containers,
          volumes,
        },
      },
    },
  };
  const objects: (IServiceAccount | IDeployment | IService | IPodDisruptionBudget | IPersistentVolumeClaim)[] = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata, automountServiceAccountToken: false },
  ];
  if (w.persistent)
    objects.push({
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { ...metadata, name: `${w.name}-state` },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    });
  objects.push(deployment);
  for (const s of w.services ?? [{ name: w.name, ports: ports.map((p) => p.name) }])
    objects.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { ...metadata, name: s.name },
      spec: {
        type: 'ClusterIP',
        selector: selectorOf(w.name),
        ports: ports.filter((p) => s.ports.includes(p.name)).map((p) => ({ name: p.name, port: p.port, targetPort: p.name, protocol: 'TCP' })),
      },
    });
  if (w.replicas > 1)
    objects.push({
      apiVersion: 'policy/v1',
      kind: 'PodDisruptionBudget',
      metadata,
      spec: { minAvailable: w.replicas - 1, selector: { matchLabels: selectorOf(w.name) } },
    });
  return objects;
}
