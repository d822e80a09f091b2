// The bundle document and the signed file that carries it.
//
// A signed bundle is one file (media type application/vnd.gatehouse.bundle):
//   line 1: a detached compact JWS `<protected>..<signature>` (RFC 7515 app. F),
//           alg EdDSA, typ gatehouse-bundle+jws, x5c = the control-plane
//           certificate (spiffe://<td>/control) and its issuer;
//   then:   the bundle's canonical JSON bytes (lib/canonical.ts), which are the
//           JWS payload.
// Nothing in verification depends on who served the bytes.
import { z } from 'zod';

export const BUNDLE_MEDIA_TYPE = 'application/vnd.gatehouse.bundle';
export const BUNDLE_JWS_TYPE = 'gatehouse-bundle+jws';
export const BUNDLE_SCHEMA = 'gatehouse.bundle/v1';
/** Larger signed bundles are refused unread (a 500-route zone is well under 1 MiB). */
export const MAX_BUNDLE_BYTES = 8 * 1024 * 1024;

export const PepKind = z.enum(['gateway', 'authority', 'service', 'sidecar']);
export type PepKind = z.infer<typeof PepKind>;

export const Quarantine = z
  .object({
    scope: z.enum(['source', 'client', 'subject', 'service']),
    value: z.string().min(1),
    until: z.string().describe('ISO time the quarantine ends'),
    reason: z.string(),
    origin: z.string(),
  })
  .strict();
export type Quarantine = z.infer<typeof Quarantine>;

/** Live decisions every PEP enforces beside the topology. Empty lists: nothing revoked or quarantined. */
export const Decisions = z
  .object({
    revokedTokenIds: z.array(z.string()),
    revokedSerials: z.array(z.string()),
    quarantines: z.array(Quarantine),
  })
  .strict();
export type Decisions = z.infer<typeof Decisions>;

const Iso = z.string().refine((s) => !Number.isNaN(Date.parse(s)) && new Date(Date.parse(s)).toISOString() === s, 'an ISO time');

export const Bundle = z
  .object({
    schema: z.literal(BUNDLE_SCHEMA),
    revision: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
    issuedAt: Iso,
    expiresAt: Iso,
    trustDomain: z.string().min(1),
    audience: z.string().startsWith('spiffe://'),
    kind: PepKind,
    /** What this PEP enforces from the topology; its shape depends on `kind` (see compile-bundles.ts). */
    policy: z.record(z.string(), z.unknown()),
    decisions: Decisions,
  })
  .strict();
export type Bundle = z.infer<typeof Bundle>;

/** The SPIFFE ID path of a PEP as a relative file name: zone/public/svc/orders.bundle. */
export function bundlePath(audience: string, trustDomain: string): string {
  const prefix = `spiffe://${trustDomain}/`;
  if (!audience.startsWith(prefix)) throw new Error(`${audience} is not in trust domain ${trustDomain}`);
  const rest = audience.slice(prefix.length);
  if (!/^[a-z0-9-]+(\/[a-z0-9-]+)*$/.test(rest)) throw new Error(`${audience} is not a plain SPIFFE path`);
  return `${rest}.bundle`;
}
