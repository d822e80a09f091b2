// Opens an initialised CA from its state dir: the trust bundle, the zone
// issuers (intermediates) and their keys (sealed under the master key, see
// lib/key-seal.ts; an older version's plain keys are re-sealed here), the
// revocation list. The root key is not read (it may be offline).
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import type { Topology } from '../topology/schema.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { x509 } from './lib/x509.ts';
import type { Key } from './lib/x509.ts';
import { pkiPaths, issuerFiles, type PkiPaths } from './lib/files.ts';
import { RevocationStore } from './lib/revocations.ts';
import { GatehouseError } from '../shared/errors.ts';
import type { CaMeta } from './init-ca.ts';
import { caMasterKey, readIssuerKey, resealCaKeys, type CaKeyOptions } from './lib/key-seal.ts';

export interface CaPolicy {
  /** Lifetime of a workload certificate when the request names none (default 3600 s). */
  defaultTtlSeconds: number;
  /** Longest lifetime the CA issues (default and ceiling 86400 s). */
  maxTtlSeconds: number;
}

export const DEFAULT_CA_POLICY: CaPolicy = { defaultTtlSeconds: 3600, maxTtlSeconds: 86400 };

export interface Issuer {
  name: string;
  cert: x509.X509Certificate;
  pem: string;
  key: Key;
}

export interface Ca {
  trustDomain: string;
  /** Root certificate PEM: the trust bundle every workload pins. */
  bundlePem: string;
  bundleFile: string;
  paths: PkiPaths;
  clock: Clock;
  policy: CaPolicy;
  /** The topology whose workloads this CA certifies; absent: any well-formed ID of the trust domain. */
  topology?: Topology;
  issuers: ReadonlyMap<string, Issuer>;
  revocations: RevocationStore;
}

export interface OpenCaOptions extends CaKeyOptions {
  stateDir: string;
  topology?: Topology;
  clock?: Clock;
  policy?: Partial<CaPolicy>;
}

export async function openCa(options: OpenCaOptions): Promise<Ca> {
  const paths = pkiPaths(options.stateDir);
  if (!existsSync(paths.meta) || !existsSync(paths.bundle))
    throw new GatehouseError('ca_not_initialized', `no CA in ${paths.dir}; run \`gatehouse ca init\` first`);
  const meta = JSON.parse(readFileSync(paths.meta, 'utf8')) as CaMeta;
  if (options.topology && options.topology.trustDomain !== meta.trustDomain)
    throw new GatehouseError(
      'bad_request',
      `the CA in ${paths.dir} is for trust domain ${meta.trustDomain}, the topology says ${options.topology.trustDomain}`,
    );
  const policy = { ...DEFAULT_CA_POLICY, ...options.policy };
  if (policy.maxTtlSeconds > 86400 || policy.defaultTtlSeconds > policy.maxTtlSeconds || policy.defaultTtlSeconds < 60)
    throw new GatehouseError('bad_request', 'certificate lifetimes must be between 60 s and 24 h, default ≤ maximum');
  const kms = await caMasterKey(options.stateDir, paths, options);
  await resealCaKeys(kms, paths);
  const issuers = new Map<string, Issuer>();
  for (const f of readdirSync(paths.issuers)) {
    if (!f.endsWith('.pem')) continue;
    const name = f.slice(0, -4);
    const files = issuerFiles(paths, name);
    if (!existsSync(files.key)) continue;
    const pem = readFileSync(files.cert, 'utf8');
    // checked now by Node's parser; parsed for signing when first used (x509's parser takes
    // milliseconds a certificate, and most processes that open the CA issue under one zone)
    new X509Certificate(pem);
    let cert: x509.X509Certificate | undefined;
    const key = await readIssuerKey(kms, paths, name);
    issuers.set(name, {
      name,
      get cert() {
        return (cert ??= new x509.X509Certificate(pem));
      },
      pem,
      key,
    });
  }
  return {
    trustDomain: meta.trustDomain,
    bundlePem: readFileSync(paths.bundle, 'utf8'),
    bundleFile: paths.bundle,
    paths,
    clock: options.clock ?? systemClock,
    policy,
    topology: options.topology,
    issuers,
    revocations: new RevocationStore(paths.revoked, 0), // the CA always re-checks: renewals are rare
  };
}
