// Answers of the mesh to a refused request: problem+json with a request id;
// the reason goes to the metrics and the security log, not to the caller.
import type { ServerResponse } from 'node:http';

export type MeshErrorCode =
  | 'forbidden'
  | 'ambiguous_request'
  | 'unauthorized'
  | 'egress_denied'
  | 'upstream_identity_mismatch'
  | 'bad_gateway'
  | 'token_unavailable'
  | 'internal';

export class MeshError extends Error {
  readonly code: MeshErrorCode;
  readonly status: number;
  readonly title: string;
  constructor(code: MeshErrorCode, status: number, title: string, detail: string, options: { cause?: unknown } = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'MeshError';
    this.code = code;
    this.status = status;
    this.title = title;
  }
}

export const Forbidden = () => new MeshError('forbidden', 403, 'Forbidden', 'This caller may not make this request.');
export const Ambiguous = () => new MeshError('ambiguous_request', 400, 'Bad Request', 'The request is ambiguous and was refused.');
export const Unauthorized = () =>
  new MeshError('unauthorized', 401, 'Unauthorized', 'The propagated identity token is not valid for this service.');
export const EgressDenied = (target: string) =>
  new MeshError('egress_denied', 403, 'Forbidden', `This service may not call ${target}.`);

export function sendProblem(res: ServerResponse, error: MeshError, requestId: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({
    type: `urn:gatehouse:problem:${error.code}`,
    title: error.title,
    status: error.status,
    detail: error.message,
    code: error.code,
    request_id: requestId,
  });
  res.writeHead(error.status, {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
    ...(close ? { connection: 'close' } : {}),
  });
  res.end(body);
}
