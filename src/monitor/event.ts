// The security event schema, version 1: what every enforcement point sends
// the control plane (one JSON object per event, in batches).
//
//   schema   'gatehouse.event/v1'
//   id       uuid, chosen by the sender (a retried batch is stored once)
//   time     ISO time at the sender; replaced by the receive time when it is
//            more than 5 minutes off (clock skew), `skewed: true` then
//   type     request_refused   a gateway refused a request (code, status)
//            edge_denied       a mesh service refused a caller (code = reason)
//            vault_denied      the vault refused a caller (code vault_not_allowed |
//                              certificate_rejected; peer: the caller's SPIFFE
//                              ID; detail: operation and key)
//            ingress_refused   a locked gateway closed a connection
//            bundle_refused    a PEP refused a policy bundle
//            config_change     the control plane published a new revision of the
//                              bundles (code published; count: the revision;
//                              detail: what changed and who changed it), or
//                              started (code started)
//            detection         a detector fired (shadow or not)
//            quarantine        a quarantine was added or removed
//            auth_failure      the authority refused a sign-in or a client's
//                              credentials (code: login, mfa, client)
//            auth_success      the authority signed a user in (subject, account):
//                              what the failure ratio per account is taken against
//            lockout           the authority locked an account or a source out
//            token_issued      the authority issued an access token (jti, client,
//                              subject, source: where it was obtained)
//            token_exchange    the authority exchanged a token (RFC 8693), or
//                              refused to (code exchanged | refused)
//            token_refused     the authority refused a token request of a
//                              quarantined client or subject
//            token_revoked     the authority revoked an access token before it
//                              expired (RFC 7009 revocation, a revoked grant,
//                              consent or client): jti and exp are required
//                              (code revoked); accepted from an authority's
//                              identity only (spiffe://<td>/zone/<z>/authority),
//                              it puts the jti on every bundle's
//                              decisions.revokedTokenIds until exp
//            token_use         a gateway saw a token id (jti) from a network or
//                              TLS fingerprint for the first time
//            upstream_status   an upstream answered 403 or 404 on a templated
//                              route (the object paths an identity asks for)
//            traffic           requests of one client on one route in an
//                              interval (count)
//            certificate_issued   the CA issued a workload certificate (code: how
//                              the workload proved itself — join_token,
//                              k8s_psat, renewal; peer: its SPIFFE ID; detail:
//                              serial, and the pod when attested)
//            certificate_revoked  a certificate serial is revoked (sent by the
//                              control plane, which watches the CA's list;
//                              detail: the serial)
//   pep      the SPIFFE ID of the sender: set by the control plane from the
//            verified client certificate, never taken from the event
//   code     the registry code (or the reason) of what happened
//   and, when known: status, source (client address), subject, client
//   (OAuth client id), route, method, path (canonical, masked), peer (the
//   SPIFFE ID of a mesh caller), account (the username a failed sign-in
//   named, as typed: it may not exist), jti (a token id, never the token), tls (a
//   TLS client fingerprint), exp (the expiry of the token a jti names, JWT
//   `exp`: seconds since the epoch), count, detail (bounded text).
import { z } from 'zod';

export const EVENT_SCHEMA = 'gatehouse.event/v1';
export const EVENT_TYPES = [
  'request_refused',
  'edge_denied',
  'vault_denied',
  'ingress_refused',
  'bundle_refused',
  'config_change',
  'detection',
  'quarantine',
  'auth_failure',
  'auth_success',
  'lockout',
  'token_issued',
  'token_exchange',
  'token_refused',
  'token_revoked',
  'token_use',
  'upstream_status',
  'traffic',
  'certificate_issued',
  'certificate_revoked',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * Who may send what (docs/guides/monitor.md, "Who sends what"), by the kind of
 * the sender's verified SPIFFE ID. Nobody sends the control plane's own events
 * (config_change, detection, quarantine) or certificate_revoked: the control
 * plane records those itself. An event of any other type from a sender is a
 * forgery: a compromised service must not feed the detectors what a gateway or
 * an authority saw, and have them quarantine whomever it names.
 */
export const EVENTS_BY_SENDER: Readonly<Record<'gateway' | 'authority' | 'service' | 'vault' | 'ca', ReadonlySet<EventType>>> = {
  gateway: new Set(['request_refused', 'ingress_refused', 'token_use', 'upstream_status', 'traffic', 'bundle_refused']),
  authority: new Set(['auth_failure', 'auth_success', 'lockout', 'token_issued', 'token_exchange', 'token_refused', 'token_revoked', 'bundle_refused']),
  service: new Set(['edge_denied', 'bundle_refused']),
  vault: new Set(['vault_denied']),
  ca: new Set(['certificate_issued', 'request_refused']),
};

const text = (max: number) => z.string().max(max).regex(/^[^\x00-\x1f\x7f]*$/, 'no control characters');

/** What a sender sends (the control plane adds `pep`, and `received`). */
export const EventInput = z
  .object({
    schema: z.literal(EVENT_SCHEMA),
    id: z.string().uuid(),
    time: z.string().datetime(),
    type: z.enum(EVENT_TYPES),
    code: text(64).min(1),
    status: z.number().int().min(100).max(599).optional(),
    source: text(64).optional(),
    subject: text(256).optional(),
    client: text(256).optional(),
    route: text(128).optional(),
    method: text(32).optional(),
    path: text(512).optional(),
    peer: text(256).optional(),
    account: text(128).optional(),
    jti: text(128).optional(),
    tls: text(128).optional(),
    exp: z.number().int().min(0).max(2 ** 32).optional(),
    count: z.number().int().min(0).max(1_000_000_000).optional(),
    detail: text(512).optional(),
  })
  .strict();
export type EventInput = z.infer<typeof EventInput>;

export interface SecurityEvent extends EventInput {
  pep: string;
  received: string;
  skewed?: true;
}

/** The fields a PEP fills in; schema, id and time are added by the shipper. */
export type EventFields = Omit<EventInput, 'schema' | 'id' | 'time'>;

/** Largest batch a PEP may send at once, in events and bytes. */
export const MAX_BATCH_EVENTS = 500;
export const MAX_BATCH_BYTES = 512 * 1024;

const LIMITS: Record<string, number> = { code: 64, source: 64, subject: 256, client: 256, route: 128, method: 32, path: 512, peer: 256, account: 128, jti: 128, tls: 128, detail: 512 };

/** The fields bounded and free of control characters, as the schema wants them (a sender never loses an event to its own text). */
export function boundedFields(fields: EventFields): EventFields {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out[k] = typeof v === 'string' ? v.replace(/[\x00-\x1f\x7f]/g, '?').slice(0, LIMITS[k] ?? 256) : v;
  }
  return out as EventFields;
}
