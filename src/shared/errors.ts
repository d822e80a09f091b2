// The one error registry of Gatehouse. Every error any HTTP surface answers with
// (gateway, authority, CA, mesh, sidecar, admin listeners) is a GatehouseError
// made from a code in PROBLEMS: the code decides the status and the title, so the
// same code has the same status and shape everywhere. The client sees an RFC 9457
// problem+json body (see problem.ts) with the code and the request id; the cause
// goes to the log, never the body.

import { maskText } from './mask.ts';

/** code → HTTP status and title. `close`: the connection is closed after the answer. */
export const PROBLEMS = {
  // request framing and routing
  bad_request: { status: 400, title: 'Bad Request' },
  ambiguous_path: { status: 400, title: 'Ambiguous request path', close: true },
  ambiguous_request: { status: 400, title: 'Ambiguous request framing', close: true },
  unsupported_target: { status: 400, title: 'Unsupported request target', close: true },
  unsupported_upgrade: { status: 400, title: 'Unsupported upgrade', close: true },
  not_found: { status: 404, title: 'Not Found' },
  method_not_allowed: { status: 405, title: 'Method Not Allowed' },
  request_timeout: { status: 408, title: 'Request Timeout', close: true },
  payload_too_large: { status: 413, title: 'Payload Too Large', close: true },
  unsupported_media_type: { status: 415, title: 'Unsupported Media Type' },
  unprocessable: { status: 422, title: 'Unprocessable Content' },
  invalid_config: { status: 422, title: 'Configuration refused' },
  headers_too_large: { status: 431, title: 'Request Header Fields Too Large', close: true },
  too_many_connections: { status: 503, title: 'Service Unavailable', close: true },
  // who is calling
  unauthorized: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  insufficient_scope: { status: 403, title: 'Forbidden' },
  too_many_requests: { status: 429, title: 'Too Many Requests' },
  rate_limit_unavailable: { status: 503, title: 'Service Unavailable' },
  revocation_status_unknown: { status: 503, title: 'Service Unavailable' },
  // the shared DPoP replay cache (Redis) cannot be asked whether a proof was used before
  replay_check_unavailable: { status: 503, title: 'Service Unavailable' },
  // upstreams
  bad_gateway: { status: 502, title: 'Bad Gateway' },
  upstream_reset: { status: 502, title: 'Bad Gateway' },
  gateway_timeout: { status: 504, title: 'Gateway Timeout' },
  upstream_unavailable: { status: 503, title: 'Service Unavailable' },
  // certificate authority
  token_invalid: { status: 401, title: 'Unauthorized' },
  token_expired: { status: 401, title: 'Unauthorized' },
  token_wrong_service: { status: 403, title: 'Forbidden' },
  csr_invalid: { status: 400, title: 'Bad Request' },
  csr_identity_mismatch: { status: 403, title: 'Forbidden' },
  csr_requests_ca: { status: 403, title: 'Forbidden' },
  csr_key_unsupported: { status: 400, title: 'Bad Request' },
  ttl_out_of_policy: { status: 400, title: 'Bad Request' },
  unknown_workload: { status: 403, title: 'Forbidden' },
  client_certificate_required: { status: 401, title: 'Unauthorized' },
  certificate_rejected: { status: 403, title: 'Forbidden' },
  certificate_revoked: { status: 403, title: 'Forbidden' },
  ca_not_initialized: { status: 500, title: 'Internal Server Error' },
  ca_locked: { status: 500, title: 'Internal Server Error' },
  // mesh
  egress_denied: { status: 403, title: 'Forbidden' },
  // a decision of the control plane (gatehouse quarantine): a source, client, subject or service
  quarantined: { status: 403, title: 'Forbidden' },
  upstream_identity_mismatch: { status: 502, title: 'Bad Gateway' },
  token_unavailable: { status: 502, title: 'Bad Gateway' },
  // policy bundles (a PEP refusing what it fetched; the control plane serving it)
  bundle_malformed: { status: 422, title: 'Policy bundle refused' },
  bundle_too_large: { status: 422, title: 'Policy bundle refused' },
  bundle_not_canonical: { status: 422, title: 'Policy bundle refused' },
  bundle_signature_invalid: { status: 422, title: 'Policy bundle refused' },
  bundle_signer_untrusted: { status: 422, title: 'Policy bundle refused' },
  bundle_wrong_trust_domain: { status: 422, title: 'Policy bundle refused' },
  bundle_wrong_audience: { status: 422, title: 'Policy bundle refused' },
  bundle_expired: { status: 422, title: 'Policy bundle refused' },
  bundle_rollback: { status: 422, title: 'Policy bundle refused' },
  bundle_unavailable: { status: 503, title: 'Service Unavailable' },
  // vault (keys, ciphertexts, tokens); a refusal never says more than its code
  vault_key_not_found: { status: 404, title: 'Unknown key' },
  vault_key_exists: { status: 409, title: 'Key exists' },
  vault_key_in_use: { status: 409, title: 'Key still decrypts' },
  vault_key_mismatch: { status: 400, title: 'Ciphertext of another key' },
  vault_ciphertext_malformed: { status: 400, title: 'Malformed ciphertext' },
  vault_decrypt_failed: { status: 400, title: 'Decryption failed' },
  vault_version_retired: { status: 400, title: 'Key version retired' },
  vault_version_invalid: { status: 400, title: 'Invalid key version' },
  vault_context_invalid: { status: 400, title: 'Invalid encryption context' },
  vault_value_invalid: { status: 400, title: 'Value refused' },
  vault_token_not_found: { status: 404, title: 'Unknown token' },
  vault_token_wrong_key: { status: 400, title: 'Token of another key' },
  vault_token_revoked: { status: 410, title: 'Token revoked' },
  vault_not_allowed: { status: 403, title: 'Forbidden' },
  vault_unavailable: { status: 503, title: 'Service Unavailable' },
  // the command line: a flag, argument or file a verb cannot use (exit 2), a refusal of what was asked (exit 1)
  usage: { status: 400, title: 'Usage error' },
  refused: { status: 409, title: 'Refused' },
  // anything unexpected
  internal: { status: 500, title: 'Internal Server Error' },
} as const satisfies Record<string, { status: number; title: string; close?: boolean }>;

export type ProblemCode = keyof typeof PROBLEMS;

export interface ErrorOptions {
  /** Extra response headers (Allow, Retry-After, WWW-Authenticate …). */
  headers?: Record<string, string>;
  /** Overrides the code's default: close the connection after the answer (smuggling, framing). */
  closeConnection?: boolean;
  cause?: unknown;
}

export class GatehouseError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly title: string;
  readonly headers: Record<string, string>;
  readonly closeConnection: boolean;

  constructor(code: ProblemCode, detail: string, options: ErrorOptions = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    const entry: { status: number; title: string; close?: boolean } = PROBLEMS[code];
    this.name = 'GatehouseError';
    this.code = code;
    this.status = entry.status;
    this.title = entry.title;
    this.headers = options.headers ?? {};
    this.closeConnection = options.closeConnection ?? entry.close ?? false;
  }
}

export const isGatehouseError = (e: unknown): e is GatehouseError => e instanceof GatehouseError;

export const BadRequest = (detail: string, close = true) => new GatehouseError('bad_request', detail, { closeConnection: close });
export const AmbiguousPath = (detail: string) => new GatehouseError('ambiguous_path', detail);
export const AmbiguousRequest = (detail: string, cause?: unknown) => new GatehouseError('ambiguous_request', detail, { cause });
export const UnsupportedTarget = (detail: string) => new GatehouseError('unsupported_target', detail);
export const UnsupportedUpgrade = (detail: string) => new GatehouseError('unsupported_upgrade', detail);
export const NotFound = (detail = 'No route matches this request.') => new GatehouseError('not_found', detail);
export const MethodNotAllowed = (allow: readonly string[], detail = 'This route does not accept this method.') =>
  new GatehouseError('method_not_allowed', detail, { headers: { allow: allow.join(', ') } });
export const PayloadTooLarge = (limit: number) => new GatehouseError('payload_too_large', `The request body exceeds ${limit} bytes.`);
export const UnsupportedMediaType = (detail: string) => new GatehouseError('unsupported_media_type', detail);
export const HeadersTooLarge = () => new GatehouseError('headers_too_large', 'The request headers are too large.');
export const RequestTimeout = () => new GatehouseError('request_timeout', 'The request was not received in time.');
export const BadGateway = (cause?: unknown, detail = 'The upstream service failed to answer.') =>
  new GatehouseError('bad_gateway', detail, { cause });
export const UpstreamReset = (cause?: unknown) =>
  new GatehouseError('upstream_reset', 'The upstream service broke off the request.', { cause });
export const GatewayTimeout = (cause?: unknown) =>
  new GatehouseError('gateway_timeout', 'The upstream service did not answer in time.', { cause });
export const UpstreamUnavailable = (retryAfterSec: number) =>
  new GatehouseError('upstream_unavailable', 'The upstream service is failing; requests are paused.', {
    headers: { 'retry-after': String(retryAfterSec) },
  });
export const TooManyConnections = () => new GatehouseError('too_many_connections', 'Too many connections; retry later.', { headers: { 'retry-after': '1' } });
export const Forbidden = (detail = 'Access is not allowed.') => new GatehouseError('forbidden', detail);
/** Retry-After is whole seconds, at least 1 (a 0 invites an immediate retry storm). */
export const TooManyRequests = (retryAfterSec: number, detail = 'Too many requests; retry later.') =>
  new GatehouseError('too_many_requests', detail, { headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSec))) } });
/** The shared rate-limit store cannot be reached and the limit fails closed. */
export const RateLimitUnavailable = (cause?: unknown) =>
  new GatehouseError('rate_limit_unavailable', 'The rate limiter is unavailable; retry later.', { headers: { 'retry-after': '1' }, cause });
export const Internal = (cause?: unknown, detail = 'The request could not be handled.') => new GatehouseError('internal', detail, { cause });

/** 401 with an RFC 6750 challenge; `error` absent when no credential was sent at all. */
export const Unauthorized = (realm: string, detail: string, error?: 'invalid_token' | 'invalid_request') =>
  new GatehouseError('unauthorized', detail, {
    headers: {
      'www-authenticate': error
        ? `Bearer realm="${realm}", error="${error}", error_description="${detail.replace(/["\\]/g, '')}"`
        : `Bearer realm="${realm}"`,
    },
  });
export const InsufficientScope = (realm: string, scope: string) =>
  new GatehouseError('insufficient_scope', 'The credential lacks the scope this route needs.', {
    headers: { 'www-authenticate': `Bearer realm="${realm}", error="insufficient_scope", scope="${scope}"` },
  });
export const AccessDenied = (detail: string) => new GatehouseError('forbidden', detail);

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  request_id: string;
  [extension: string]: unknown;
}

/** The stable `type` URI of a code. */
export const problemType = (code: ProblemCode): string => `urn:gatehouse:problem:${code}`;

/** The problem+json body for an error; never includes the cause or a stack. */
export function problemBody(error: GatehouseError, requestId: string): ProblemBody {
  return {
    type: problemType(error.code),
    title: error.title,
    status: error.status,
    detail: maskText(error.message),
    code: error.code,
    request_id: requestId,
  };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';
