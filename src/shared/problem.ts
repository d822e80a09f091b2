// The one problem+json writer (RFC 9457) for every HTTP surface of Gatehouse:
// gateway, authority, CA, mesh, sidecar and admin listeners. The body comes
// from the error registry (errors.ts); the request id is always present.
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { GatehouseError, Internal, problemBody, PROBLEM_CONTENT_TYPE } from './errors.ts';

/** Any error as a registry error: what is not one becomes `internal` (its cause kept for the log). */
export const asProblem = (error: unknown): GatehouseError => (error instanceof GatehouseError ? error : Internal(error));

export interface ProblemOptions {
  /** Headers written first, so the error's own and the problem's headers win (security headers, CORS …). */
  baseHeaders?: Readonly<Record<string, string>>;
  /** HTTP/2 has no Connection header: the caller closes the session instead. */
  http2?: boolean;
}

/**
 * Answer `res` with the problem for `error` and return it. A response whose head
 * was already sent is cut instead (nothing else can be said on it).
 */
export function writeProblem(res: ServerResponse | Http2ServerResponse, error: unknown, requestId: string, options: ProblemOptions = {}): GatehouseError {
  const e = asProblem(error);
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return e;
  }
  const body = JSON.stringify(problemBody(e, requestId));
  const headers: Record<string, string> = {
    ...options.baseHeaders,
    ...e.headers,
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-request-id': requestId,
  };
  if (e.closeConnection && !options.http2) headers.connection = 'close';
  (res as ServerResponse).writeHead(e.status, headers);
  res.end(body);
  return e;
}

/** Write a problem as a whole HTTP/1.1 response on a bare socket (parser errors, refused upgrades), then close it. */
export function writeRawProblem(socket: Duplex, error: unknown, requestId: string, baseHeaders?: Readonly<Record<string, string>>): GatehouseError {
  const e = asProblem(error);
  if (!socket.writable) {
    socket.destroy();
    return e;
  }
  const body = JSON.stringify(problemBody(e, requestId));
  let extra = '';
  const fixed = /^(content-type|content-length|cache-control|x-content-type-options|x-request-id|connection)$/;
  for (const name in baseHeaders) if (!(name in e.headers) && !fixed.test(name)) extra += `${name}: ${baseHeaders[name]}\r\n`;
  for (const name in e.headers) extra += `${name}: ${e.headers[name]}\r\n`;
  socket.end(
    `HTTP/1.1 ${e.status} ${e.title}\r\n` +
      `content-type: ${PROBLEM_CONTENT_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `cache-control: no-store\r\nx-content-type-options: nosniff\r\nx-request-id: ${requestId}\r\n${extra}connection: close\r\n\r\n${body}`,
  );
  (socket as Socket).destroySoon?.();
  return e;
}
