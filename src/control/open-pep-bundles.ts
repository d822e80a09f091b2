// How an enforcement point (gateway, mesh service, sidecar) subscribes to its
// bundles: from the control plane (`--control URL`, mTLS, long-poll) or from
// exported files (`--bundles URL|DIR`, polled). It starts from the bundle kept
// on disk when there is one, then waits a little for a fresh one; with none at
// all the PEP refuses everything (fail closed) until one arrives.
import type { Logger } from '../shared/logger.ts';
import { createBundleClient, type BundleClient, type PepIdentity } from './create-bundle-client.ts';

export interface PepBundleSource {
  /** The control plane's bundles URL (`https://…/v1/bundles`): mTLS, its identity checked, long-poll. */
  control?: string;
  /** Exported bundles: a folder, or a URL of a plain web server holding them. */
  bundles?: string;
  /** How long a PEP with no bundle on disk waits for its first one at start (default 5 s); then it serves, refusing everything. */
  firstWaitMs?: number;
  /** Poll interval for exported files (default 5 s). */
  pollIntervalMs?: number;
}

export interface OpenPepBundlesOptions extends PepBundleSource {
  identity: PepIdentity | (() => PepIdentity);
  trustDomain: string;
  caBundle: string;
  stateDir: string;
  logger: Logger;
  /** Told of each refused bundle (after it is logged): its bundle_* code, for the PEP's metrics. */
  onRefused?: (code: string) => void;
}

/** Undefined when the PEP was given no bundle source (it enforces its topology file). */
export async function openPepBundles(o: OpenPepBundlesOptions): Promise<BundleClient | undefined> {
  if (o.control === undefined && o.bundles === undefined) return undefined;
  if (o.control !== undefined && o.bundles !== undefined) throw new Error('give one of --control or --bundles');
  if (o.control !== undefined && !o.control.startsWith('https://')) throw new Error(`--control takes the control plane's https URL, not ${JSON.stringify(o.control)}`);
  const from = o.control ?? o.bundles!;
  const isUrl = /^https?:\/\//.test(from);
  const client = createBundleClient({
    ...(isUrl ? { url: from } : { dir: from }),
    controlServer: o.control !== undefined,
    identity: o.identity,
    trustDomain: o.trustDomain,
    caBundle: o.caBundle,
    stateDir: o.stateDir,
    pollIntervalMs: o.pollIntervalMs,
    onBundle: (b) => o.logger.info({ revision: b.revision, expiresAt: b.bundle.expiresAt }, 'policy bundle applied'),
    onRefused: (e) => {
      o.logger.warn({ event: 'security', kind: 'bundle_refused', code: e.code, reason: e.message }, 'policy bundle refused');
      o.onRefused?.(e.code);
    },
  });
  await client.started;
  if (client.current() === undefined)
    await client.waitFor(1, o.firstWaitMs ?? 5000).catch(() =>
      o.logger.error({ source: from }, 'no valid policy bundle: every request is refused until one arrives'),
    );
  return client;
}
