// Errors of the certificate authority. Each has a stable `code` (a string-literal
// union), an HTTP status and a client-safe detail; the cause goes to the log only.

export type PkiErrorCode =
  | 'bad_request'
  | 'unsupported_media_type'
  | 'payload_too_large'
  | 'not_found'
  | 'method_not_allowed'
  | 'unauthorized'
  | 'token_invalid'
  | 'token_expired'
  | 'token_wrong_service'
  | 'csr_invalid'
  | 'csr_identity_mismatch'
  | 'csr_requests_ca'
  | 'csr_key_unsupported'
  | 'ttl_out_of_policy'
  | 'unknown_workload'
  | 'client_certificate_required'
  | 'certificate_rejected'
  | 'certificate_revoked'
  | 'ca_not_initialized'
  | 'ca_locked'
  | 'internal';

const STATUS: Record<PkiErrorCode, number> = {
  bad_request: 400,
  unsupported_media_type: 415,
  payload_too_large: 413,
  not_found: 404,
  method_not_allowed: 405,
  unauthorized: 401,
  token_invalid: 401,
  token_expired: 401,
  token_wrong_service: 403,
  csr_invalid: 400,
  csr_identity_mismatch: 403,
  csr_requests_ca: 403,
  csr_key_unsupported: 400,
  ttl_out_of_policy: 400,
  unknown_workload: 403,
  client_certificate_required: 401,
  certificate_rejected: 403,
  certificate_revoked: 403,
  ca_not_initialized: 500,
  ca_locked: 500,
  internal: 500,
};

const TITLE: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
};

export class PkiError extends Error {
  readonly code: PkiErrorCode;
  readonly status: number;
  readonly title: string;

  constructor(code: PkiErrorCode, detail: string, options: { cause?: unknown } = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PkiError';
    this.code = code;
    this.status = STATUS[code];
    this.title = TITLE[this.status] ?? 'Error';
  }
}

export function problemOf(error: PkiError, requestId: string) {
  return {
    type: `urn:gatehouse:problem:${error.code}`,
    title: error.title,
    status: error.status,
    detail: error.message,
    code: error.code,
    request_id: requestId,
  };
}
