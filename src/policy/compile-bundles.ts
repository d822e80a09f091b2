// Compiles a topology and the live decision lists into one bundle per
// enforcement point, deterministically: the same inputs give the same bytes.
//   gateway of zone Z (spiffe://<td>/zone/Z/gateway): Z's gateway settings,
//     routes (Cedar texts inlined from their files), policy defaults,
//     authentication (trusted issuers), auth-failure limits, trusted zones;
//   authority of zone Z (…/zone/Z/authority): the zone it serves; what it
//     enforces is in the decisions (quarantined clients and subjects obtain
//     no token and cannot sign in; revoked token ids);
//   service S (…/zone/Z/svc/S, kind `sidecar` when a sidecar fronts it): its
//     own allow edges and egress list.
// Every bundle carries the decisions (revoked token ids, revoked certificate
// serials, quarantines still in force), sorted. The revoked token ids (up to
// 100k, the authorities' token_revoked reports) go to the PEPs that check
// access tokens, gateways and authorities; a service's or sidecar's list is
// empty (the mesh verifies no token against it), which keeps those bundles small.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gatewayCallers, type Topology } from '../topology/index.ts';
import { gatewaySpiffeId, serviceSpiffeId } from '../pki/index.ts';
import { authoritySpiffeId } from '../pki/spiffe-id.ts';
import { canonicalJson } from './lib/canonical.ts';
import { BUNDLE_SCHEMA, type Bundle, type Decisions, type PepKind, type Quarantine } from './lib/bundle.ts';
import { createHash } from 'node:crypto';

export interface DecisionInputs {
  revokedTokenIds?: Iterable<string>;
  revokedSerials?: Iterable<string>;
  quarantines?: Iterable<Quarantine>;
}

/** A bundle before it is stamped with a revision and a lifetime. */
export interface CompiledBundle {
  audience: string;
  kind: PepKind;
  policy: Record<string, unknown>;
  decisions: Decisions;
}

export interface CompileOptions {
  /** Folder that Cedar policy files are relative to (the topology file's). Absent: the working directory. */
  dir?: string;
  /** Milliseconds since the epoch: quarantines that ended are left out. */
  now: number;
}

export function compileBundles(topology: Topology, inputs: DecisionInputs, options: CompileOptions): CompiledBundle[] {
  const td = topology.trustDomain;
  const decisions: Decisions = {
    revokedTokenIds: [...new Set(inputs.revokedTokenIds ?? [])].sort(),
    revokedSerials: [...new Set(inputs.revokedSerials ?? [])].sort(),
    quarantines: [...(inputs.quarantines ?? [])]
      .filter((q) => Date.parse(q.until) > options.now)
      .map((q) => ({ scope: q.scope, value: q.value, until: q.until, reason: q.reason, origin: q.origin }))
      .sort((a, b) => (a.scope + '\0' + a.value < b.scope + '\0' + b.value ? -1 : a.scope === b.scope && a.value === b.value ? 0 : 1)),
  };
  const serviceDecisions: Decisions = { ...decisions, revokedTokenIds: [] };
  const out: CompiledBundle[] = [];
  for (const zoneName of Object.keys(topology.zones).sort()) {
    const zone = topology.zones[zoneName];
    if (!zone.gateway) continue;
    const routes = zone.routes.map((r) =>
      r.cedar ? { ...r, cedar: { ...r.cedar, policies: cedarText(r.cedar.policies, options.dir) } } : r,
    );
    out.push({
      audience: gatewaySpiffeId(td, zoneName),
      kind: 'gateway',
      policy: plain({
        zone: zoneName,
        gateway: zone.gateway,
        routes,
        policies: zone.policies,
        authentication: zone.authentication,
        authFailures: zone.authFailures,
        trustedZones: zone.authority?.trustedZones ?? [],
        ingress: zone.ingress,
        // the workloads a locked ingress admits: services whose egress names this gateway
        ingressCallers: gatewayCallers(topology, zoneName).map((n) => serviceSpiffeId(td, topology.services[n].zone, n)),
      }),
      decisions,
    });
  }
  for (const zoneName of Object.keys(topology.zones).sort()) {
    if (!topology.zones[zoneName].authority) continue;
    out.push({ audience: authoritySpiffeId(td, zoneName), kind: 'authority', policy: { zone: zoneName }, decisions });
  }
  for (const name of Object.keys(topology.services).sort()) {
    const s = topology.services[name];
    out.push({
      audience: serviceSpiffeId(td, s.zone, name),
      kind: s.sidecar ? 'sidecar' : 'service',
      policy: plain({ service: name, zone: s.zone, allow: s.allow, egress: s.egress }),
      decisions: serviceDecisions,
    });
  }
  return out;
}

/** A stamped bundle document. */
export function stampBundle(c: CompiledBundle, stamp: { trustDomain: string; revision: number; issuedAt: number; expiresAt: number }): Bundle {
  return {
    schema: BUNDLE_SCHEMA,
    revision: stamp.revision,
    issuedAt: new Date(stamp.issuedAt).toISOString(),
    expiresAt: new Date(stamp.expiresAt).toISOString(),
    trustDomain: stamp.trustDomain,
    audience: c.audience,
    kind: c.kind,
    policy: c.policy,
    decisions: c.decisions,
  };
}

/**
 * sha256 over the canonical content of every bundle: a new revision only when
 * it changes. The decisions, shared by most bundles and up to 100k revoked
 * token ids long, are serialised once per distinct list and enter by their own
 * digest (one canonical line per bundle: canonical JSON has no raw newline).
 */
export function contentDigest(bundles: readonly CompiledBundle[]): string {
  const h = createHash('sha256');
  const seen = new Map<Decisions, string>();
  for (const b of bundles) {
    let d = seen.get(b.decisions);
    if (d === undefined) seen.set(b.decisions, (d = createHash('sha256').update(canonicalJson(b.decisions)).digest('hex')));
    h.update(canonicalJson({ audience: b.audience, kind: b.kind, policy: b.policy, decisions: d }) + '\n');
  }
  return h.digest('hex');
}

function cedarText(policies: string, dir = '.'): string {
  if (!(policies.endsWith('.cedar') && !policies.includes('\n'))) return policies;
  return readFileSync(path.resolve(dir, policies), 'utf8');
}

/** Drops undefined through a canonical round trip, so the document is plain JSON. */
function plain(v: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(canonicalJson(v)) as Record<string, unknown>;
}
