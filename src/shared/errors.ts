// Every error a Gatehouse HTTP surface can answer with is a class with a stable
// `code` and an HTTP `status`. The client sees an RFC 9457 problem+json body
// with the code and the request id; the cause goes to the log, never the body.

export type ProblemCode =
  | 'bad_request'
  | 'ambiguous_path'
  | 'ambiguous_request'
  | 'unsupported_target'
  | 'method_not_allowed'
  | 'not_found'
  | 'payload_too_large'
  | 'headers_too_large'
  | 'request_timeout'
  | 'too_many_connections'
  | 'bad_gateway'
  | 'gateway_timeout'
  | 'upstream_unavailable'
  | 'unauthorized'
  | 'forbidden'
  | 'insufficient_scope'
  | 'too_many_requests'
  | 'rate_limit_unavailable'
  | 'revocation_status_unknown'
  | 'unsupported_media_type'
  | 'unprocessable'
  | 'internal';

export class GatehouseError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly title: string;
  /** Extra response headers (Allow, Retry-After, WWW-Authenticate …). */
  readonly headers: Record<string, string>;
  /** When true the connection is closed after the answer (smuggling, framing). */
  readonly closeConnection: boolean;

  constructor(
    code: ProblemCode,
    status: number,
    title: string,
    detail: string,
    options: { headers?: Record<string, string>; closeConnection?: boolean; cause?: unknown } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatehouseError';
    this.code = code;
    this.status = status;
    this.title = title;
    this.headers = options.headers ?? {};
    this.closeConnection = options.closeConnection ?? false;
  }
}

export const BadRequest = (detail: string, close = true) =>
  new GatehouseError('bad_request', 400, 'Bad Request', detail, { closeConnection: close });
export const AmbiguousPath = (detail: string) =>
  new GatehouseError('ambiguous_path', 400, 'Ambiguous request path', detail, { closeConnection: true });
export const AmbiguousRequest = (detail: string) =>
  new GatehouseError('ambiguous_request', 400, 'Ambiguous request framing', detail, { closeConnection: true });
export const UnsupportedTarget = (detail: string) =>
  new GatehouseError('unsupported_target', 400, 'Unsupported request target', detail, { closeConnection: true });
export const NotFound = () => new GatehouseError('not_found', 404, 'Not Found', 'No route matches this request.');
export const MethodNotAllowed = (allow: readonly string[]) =>
  new GatehouseError('method_not_allowed', 405, 'Method Not Allowed', 'This route does not accept this method.', {
    headers: { allow: allow.join(', ') },
  });
export const PayloadTooLarge = (limit: number) =>
  new GatehouseError('payload_too_large', 413, 'Payload Too Large', `The request body exceeds ${limit} bytes.`, {
    closeConnection: true,
  });
export const HeadersTooLarge = () =>
  new GatehouseError('headers_too_large', 431, 'Request Header Fields Too Large', 'The request headers are too large.', {
    closeConnection: true,
  });
export const RequestTimeout = () =>
  new GatehouseError('request_timeout', 408, 'Request Timeout', 'The request was not received in time.', {
    closeConnection: true,
  });
export const BadGateway = (cause?: unknown) =>
  new GatehouseError('bad_gateway', 502, 'Bad Gateway', 'The upstream service failed to answer.', { cause });
export const GatewayTimeout = (cause?: unknown) =>
  new GatehouseError('gateway_timeout', 504, 'Gateway Timeout', 'The upstream service did not answer in time.', {
    cause,
  });
export const UpstreamUnavailable = (retryAfterSec: number) =>
  new GatehouseError(
    'upstream_unavailable',
    503,
    'Service Unavailable',
    'The upstream service is failing; requests are paused.',
    { headers: { 'retry-after': String(retryAfterSec) } },
  );
export const Forbidden = (detail = 'Access is not allowed.') => new GatehouseError('forbidden', 403, 'Forbidden', detail);
/** Retry-After is whole seconds, at least 1 (a 0 invites an immediate retry storm). */
export const TooManyRequests = (retryAfterSec: number, detail = 'Too many requests; retry later.') =>
  new GatehouseError('too_many_requests', 429, 'Too Many Requests', detail, {
    headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterSec))) },
  });
/** The shared rate-limit store cannot be reached and the limit fails closed. */
export const RateLimitUnavailable = (cause?: unknown) =>
  new GatehouseError(
    'rate_limit_unavailable',
    503,
    'Service Unavailable',
    'The rate limiter is unavailable; retry later.',
    { headers: { 'retry-after': '1' }, cause },
  );
export const Internal = (cause?: unknown) =>
  new GatehouseError('internal', 500, 'Internal Server Error', 'The gateway failed to handle the request.', { cause });

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  request_id: string;
  [extension: string]: unknown;
}

/** The problem+json body for an error; never includes the cause or a stack. */
export function problemBody(error: GatehouseError, requestId: string): ProblemBody {
  return {
    type: `urn:gatehouse:problem:${error.code}`,
    title: error.title,
    status: error.status,
    detail: error.message,
    code: error.code,
    request_id: requestId,
  };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** 401 with an RFC 6750 challenge; `error` absent when no credential was sent at all. */
export const Unauthorized = (realm: string, detail: string, error?: 'invalid_token' | 'invalid_request') =>
  new GatehouseError('unauthorized', 401, 'Unauthorized', detail, {
    headers: {
      'www-authenticate': error
        ? `Bearer realm="${realm}", error="${error}", error_description="${detail.replace(/["\\]/g, '')}"`
        : `Bearer realm="${realm}"`,
    },
  });
export const InsufficientScope = (realm: string, scope: string) =>
  new GatehouseError('insufficient_scope', 403, 'Forbidden', `The credential lacks the scope this route needs.`, {
    headers: { 'www-authenticate': `Bearer realm="${realm}", error="insufficient_scope", scope="${scope}"` },
  });
export const AccessDenied = (detail: string) => new GatehouseError('forbidden', 403, 'Forbidden', detail);
