// The CA's Kubernetes attestation config (`gatehouse ca serve --k8s-attestation F`):
// which cluster issuer signs projected service-account tokens, the audience
// they must name, where its public keys come from, and the one workload each
// service account may become. Written by `gatehouse export k8s`; read once at
// start. Anything not listed is refused (deny by default).
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Topology } from '../../topology/schema.ts';
import { ConfigError, type ConfigIssue } from '../../topology/config-error.ts';
import { formatPath } from '../../topology/config-error.ts';
import { parseYaml } from '../../topology/load.ts';
import { authoritySpiffeId, gatewaySpiffeId, serviceSpiffeId } from '../spiffe-id.ts';

const MAX_CONFIG_BYTES = 256 * 1024;
/** A DNS-1123 label: what Kubernetes allows as a namespace or service-account name. */
const K8S_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export const K8sAttestationSchema = z
  .object({
    issuer: z
      .string()
      .url()
      .refine((u) => u.startsWith('https://'), 'must be an https URL')
      .describe("The cluster's service-account issuer (`kubectl get --raw /.well-known/openid-configuration` → issuer); a token naming another iss is refused."),
    audience: z
      .string()
      .min(1)
      .max(256)
      .describe('The audience every token must name (the projected volume asks the kubelet for it); the export uses the CA\'s SPIFFE ID. A token for any other audience is refused.'),
    keys: z
      .union([
        z.object({ jwksFile: z.string().min(1).describe("The issuer's public keys as a JWKS file (`kubectl get --raw /openid/v1/jwks`); re-read when it changes. Relative: to this file's folder.") }).strict(),
        z
          .object({
            discovery: z.literal(true).describe("Fetch <issuer>/.well-known/openid-configuration and the jwks_uri it names (https), for clusters whose issuer is public (EKS, GKE, AKS)."),
            caFile: z.string().min(1).optional().describe('PEM file of the CA that signs the discovery server\'s TLS certificate; absent: the system CAs.'),
          })
          .strict(),
      ])
      .describe('Where the public keys come from. No key: nothing is attested.'),
    maxTokenLifetimeSeconds: z
      .number()
      .int()
      .min(600)
      .max(86_400)
      .default(3600)
      .describe('A token whose exp − iat exceeds this is refused (a projected token lives as long as its volume asks, 600 s in the export; legacy Secret tokens have no exp and are refused anyway).'),
    serviceAccounts: z
      .array(
        z
          .object({
            namespace: z.string().regex(K8S_NAME, 'is not a Kubernetes namespace name'),
            serviceAccount: z.string().regex(K8S_NAME, 'is not a Kubernetes service account name'),
            workload: z.string().min(1).describe('The workload it becomes: a service of the topology, gateway:<zone> or authority:<zone>.'),
          })
          .strict(),
      )
      .describe('Each service account that may attest and the one workload it becomes; empty: none may.'),
  })
  .strict();

export type K8sAttestationConfig = z.infer<typeof K8sAttestationSchema>;

export interface K8sAttestationPlan {
  file: string;
  issuer: string;
  audience: string;
  maxTokenLifetimeSeconds: number;
  keys: { jwksFile: string } | { discovery: true; caFile?: string };
  /** `<namespace>/<serviceAccount>` → the workload and its SPIFFE ID. */
  accounts: Map<string, { workload: string; spiffeId: string }>;
}

/** Reads and checks the config against the topology; every problem names the file, line and field. */
export function loadK8sAttestationConfig(file: string, topology: Topology): K8sAttestationPlan {
  const size = statSync(file).size;
  if (size > MAX_CONFIG_BYTES) throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `larger than ${MAX_CONFIG_BYTES} bytes` }]);
  const parsed = parseYaml(readFileSync(file, 'utf8'), file);
  const issueAt = (at: readonly PropertyKey[], message: string): ConfigIssue => ({ file, ...parsed.locate(at), path: formatPath(at), message });
  const result = K8sAttestationSchema.safeParse(parsed.data);
  if (!result.success) throw new ConfigError(result.error.issues.map((i) => issueAt(i.path, i.message)));
  const c = result.data;
  const issues: ConfigIssue[] = [];
  const accounts = new Map<string, { workload: string; spiffeId: string }>();
  const taken = new Map<string, string>();
  c.serviceAccounts.forEach((a, i) => {
    const key = `${a.namespace}/${a.serviceAccount}`;
    const spiffeId = spiffeIdOf(topology, a.workload);
    if (spiffeId === undefined) issues.push(issueAt(['serviceAccounts', i, 'workload'], `the topology has no workload ${JSON.stringify(a.workload)} (a service, or gateway:<zone> / authority:<zone> of a zone that has one)`));
    else if (accounts.has(key)) issues.push(issueAt(['serviceAccounts', i], `service account ${key} is listed twice: it maps to exactly one workload`));
    else if (taken.has(a.workload)) issues.push(issueAt(['serviceAccounts', i, 'workload'], `${a.workload} is already the workload of ${taken.get(a.workload)}: one service account per workload`));
    else {
      accounts.set(key, { workload: a.workload, spiffeId });
      taken.set(a.workload, key);
    }
  });
  if (issues.length > 0) throw new ConfigError(issues);
  const dir = path.dirname(file);
  const keys = 'jwksFile' in c.keys ? { jwksFile: path.resolve(dir, c.keys.jwksFile) } : { discovery: true as const, ...(c.keys.caFile ? { caFile: path.resolve(dir, c.keys.caFile) } : {}) };
  return { file, issuer: c.issuer, audience: c.audience, maxTokenLifetimeSeconds: c.maxTokenLifetimeSeconds, keys, accounts };
}

/** The SPIFFE ID of a workload name (`gateway:<zone>`, `authority:<zone>` or a service), if the topology has it. */
export function spiffeIdOf(topology: Topology, workload: string): string | undefined {
  const zone = /^(?:gateway|authority):(.+)$/.exec(workload)?.[1];
  if (zone !== undefined) {
    const z = Object.hasOwn(topology.zones, zone) ? topology.zones[zone] : undefined;
    if (workload.startsWith('gateway:')) return z?.gateway ? gatewaySpiffeId(topology.trustDomain, zone) : undefined;
    return z?.authority ? authoritySpiffeId(topology.trustDomain, zone) : undefined;
  }
  const service = Object.hasOwn(topology.services, workload) ? topology.services[workload] : undefined;
  return service ? serviceSpiffeId(topology.trustDomain, service.zone, workload) : undefined;
}
