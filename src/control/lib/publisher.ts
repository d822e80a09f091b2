// Compile → revision → sign, for every PEP at once. A publish whose content is
// unchanged keeps the revision and the signed bytes (so ETags stay put) unless
// `force` re-signs them (the periodic refresh of issuedAt/expiresAt).
import { createHash } from 'node:crypto';
import { loadTopology, type Topology } from '../../topology/index.ts';
import {
  compileBundles,
  contentDigest,
  stampBundle,
  signBundle,
  openControlSigner,
  openRevisionStore,
  readRevokedSerials,
  bundlePath,
  type ControlSigner,
  type DecisionInputs,
  type PepKind,
} from '../../policy/index.ts';
import type { Clock } from '../../shared/clock.ts';

export interface SignedEntry {
  audience: string;
  kind: PepKind;
  /** Relative file name (zone/public/svc/orders.bundle). */
  file: string;
  bytes: Uint8Array;
  /** sha256 hex of the bytes: the ETag. */
  digest: string;
  revision: number;
}

export interface PublishResult {
  revision: number;
  /** True when any bundle's bytes changed. */
  changed: boolean;
}

export interface Publisher {
  readonly trustDomain: string;
  readonly signer: ControlSigner;
  topology(): Topology;
  revision(): number;
  entry(audience: string): SignedEntry | undefined;
  entries(): SignedEntry[];
  publish(options?: { force?: boolean }): Promise<PublishResult>;
}

export interface PublisherOptions {
  config: string;
  stateDir: string;
  clock: Clock;
  /** Lifetime of a signed bundle (default 3600 s); never beyond the signing certificate. */
  ttlSeconds?: number;
  /** Live decisions beyond the CA's revoked serials (revoked token ids, quarantines); absent: none. */
  decisions?: () => Omit<DecisionInputs, 'revokedSerials'>;
}

export async function createPublisher(options: PublisherOptions): Promise<Publisher> {
  const store = openRevisionStore(options.stateDir);
  let signer = await openControlSigner({ stateDir: options.stateDir, clock: options.clock });
  let topology = loadTopology(options.config).topology;
  let entries = new Map<string, SignedEntry>();
  let revision = store.current().revision;
  let lastDigest = '';
  let chain = Promise.resolve<PublishResult>({ revision, changed: false });

  async function run(force: boolean): Promise<PublishResult> {
    const loaded = loadTopology(options.config); // a ConfigError leaves everything as it was
    const now = options.clock.now();
    const extra = options.decisions?.() ?? {};
    const compiled = compileBundles(
      loaded.topology,
      { ...extra, revokedSerials: readRevokedSerials(options.stateDir) },
      { dir: loaded.dir, now },
    );
    const digest = contentDigest(compiled);
    topology = loaded.topology; // what only the control plane reads (monitor:) changes without a new revision
    if (!force && digest === lastDigest) return { revision, changed: false };
    if (signer.notAfter - now < 6 * 3600_000) signer = await openControlSigner({ stateDir: options.stateDir, clock: options.clock });
    const next = store.advance(digest);
    const expiresAt = Math.min(now + (options.ttlSeconds ?? 3600) * 1000, signer.notAfter);
    const map = new Map<string, SignedEntry>();
    for (const c of compiled) {
      const bytes = await signBundle(stampBundle(c, { trustDomain: loaded.topology.trustDomain, revision: next, issuedAt: now, expiresAt }), signer);
      map.set(c.audience, {
        audience: c.audience,
        kind: c.kind,
        file: bundlePath(c.audience, loaded.topology.trustDomain),
        bytes,
        digest: createHash('sha256').update(bytes).digest('hex'),
        revision: next,
      });
    }
    topology = loaded.topology;
    entries = map;
    revision = next;
    lastDigest = digest;
    return { revision, changed: true };
  }

  const publisher: Publisher = {
    get trustDomain() {
      return topology.trustDomain;
    },
    get signer() {
      return signer;
    },
    topology: () => topology,
    revision: () => revision,
    entry: (audience) => entries.get(audience),
    entries: () => [...entries.values()],
    publish(o = {}) {
      // one publish at a time, in order
      chain = chain.catch(() => undefined as never).then(() => run(o.force ?? false));
      return chain;
    },
  };
  await publisher.publish({ force: true });
  return publisher;
}
