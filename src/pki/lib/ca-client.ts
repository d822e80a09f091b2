// HTTPS calls from a workload to the CA: the server must chain to the pinned
// bundle and present exactly the CA's SPIFFE ID (no hostname trust).
import { readBody } from '../../shared/body.ts';
import https from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { verifySvid } from '../verify-svid.ts';
import { GatehouseError, type ProblemCode } from '../../shared/errors.ts';

export interface CaCallOptions {
  caUrl: string;
  trustDomain: string;
  bundlePem: string;
  /** The caller's current identity, for mTLS. */
  client?: { certPem: string; keyPem: string };
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/** An answer from the CA that is not a success; `code` is the CA's problem code. */
export class CaRequestError extends Error {
  readonly status: number;
  readonly code: ProblemCode | 'unreachable' | 'bad_answer';
  readonly requestId?: string;
  constructor(status: number, code: CaRequestError['code'], message: string, requestId?: string) {
    super(message);
    this.name = 'CaRequestError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

export function checkCaIdentity(trustDomain: string) {
  return (_host: string, cert: PeerCertificate): Error | undefined => {
    const d = verifySvid(cert.raw, { trustDomain, now: Date.now(), purpose: 'server' });
    if (!d.ok || d.id.kind !== 'ca') return new Error('the server is not the trust domain CA');
    return undefined;
  };
}

/** The CA answers with a certificate chain or a small JSON document. */
const MAX_ANSWER_BYTES = 1024 * 1024;

export function caRequest(
  method: 'GET' | 'POST',
  path: string,
  body: unknown,
  options: CaCallOptions,
): Promise<{ status: number; json: unknown; text: string }> {
  const url = new URL(path, options.caUrl);
  if (url.protocol !== 'https:') return Promise.reject(new GatehouseError('bad_request', 'the CA URL must be https'));
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        ca: options.bundlePem,
        cert: options.client?.certPem,
        key: options.client?.keyPem,
        checkServerIdentity: checkCaIdentity(options.trustDomain),
        minVersion: 'TLSv1.2',
        agent: false,
        timeout: options.timeoutMs ?? 10_000,
        headers: {
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) } : {}),
          ...options.headers,
        },
      },
      (res) => {
        // the one bounded reader (an answer over 1 MiB is cut off and refused)
        readBody(res, MAX_ANSWER_BYTES).then((bytes) => {
          const text = bytes.toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve({ status, json, text });
          const problem = (json ?? {}) as { code?: string; detail?: string; request_id?: string };
          reject(
            new CaRequestError(
              status,
              (problem.code as ProblemCode) ?? 'bad_answer',
              `CA refused (${status} ${problem.code ?? ''}): ${problem.detail ?? 'no detail'}`,
              problem.request_id,
            ),
          );
        }, (error: unknown) => reject(new CaRequestError(res.statusCode ?? 0, 'bad_answer', `the CA's answer was too large or broken off (${(error as Error).message})`)));
      },
    );
    req.on('timeout', () => req.destroy(new Error('CA request timed out')));
    req.on('error', (error) => reject(new CaRequestError(0, 'unreachable', `cannot reach the CA: ${error.message}`)));
    req.end(payload);
  });
}
