// The admin listener: health, readiness, metrics and reload. Loopback by
// default and never the public port. Every answer but metrics is JSON;
// errors are problem+json like everywhere else.
import type { ServerResponse } from 'node:http';
import { createServer } from '../shared/node-http.ts';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { Forbidden, GatehouseError, MethodNotAllowed, NotFound, type ProblemCode } from '../shared/errors.ts';
import { normaliseAddress } from '../shared/address.ts';
import { writeProblem } from '../shared/problem.ts';
import { listen } from '../shared/listen.ts';

export interface AdminOptions {
  listen: string;
  metrics(): Promise<string>;
  contentType: string;
  ready(): boolean;
  /** Why the gateway is not ready, when it is running but refusing everything. */
  notReadyReason?(): string | undefined;
  reload(): Promise<{ ok: true; generation: number } | { ok: false; error: string }>;
}

/** 127.0.0.0/8 or ::1 (an IPv4-mapped address is normalised first). */
function fromLoopback(remote: string | undefined): boolean {
  const a = normaliseAddress(remote);
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

export async function createAdminServer(o: AdminOptions): Promise<{ url: string; close(): Promise<void> }> {
  const problem = (res: ServerResponse, error: GatehouseError) => void writeProblem(res, error, randomUUID());
  const fail = (code: ProblemCode, detail: string) => new GatehouseError(code, detail, { closeConnection: false });
  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const server = createServer({ maxHeaderSize: 8192, headersTimeout: 5000, requestTimeout: 10000 }, (req, res) => {
    const url = req.url ?? '';
    const route = `${req.method} ${url.split('?')[0]}`;
    // a request body is never needed; refuse large ones early
    if (Number(req.headers['content-length'] ?? 0) > 0) {
      problem(res, fail('payload_too_large', 'Admin endpoints take no request body.'));
      return;
    }
    switch (route) {
      case 'GET /healthz':
        return json(res, 200, { status: 'ok' });
      case 'GET /readyz':
        if (o.ready()) return json(res, 200, { status: 'ready' });
        {
          const reason = o.notReadyReason?.();
          return json(res, 503, reason ? { status: 'refusing', reason } : { status: 'starting' });
        }
      case 'GET /metrics':
        o.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': o.contentType });
            res.end(text);
          },
          () => problem(res, fail('internal', 'Metrics could not be collected.')),
        );
        return;
      case 'POST /reload':
        // an admin listener moved off loopback is for scrapers: only this machine reloads (or SIGHUP)
        if (!fromLoopback(req.socket.remoteAddress))
          return problem(res, Forbidden('Reload is taken from this machine only (POST from loopback, or SIGHUP).'));
        o.reload().then((r) =>
          r.ok
            ? json(res, 200, { status: 'reloaded', generation: r.generation })
            : problem(res, fail('invalid_config', r.error)),
        );
        return;
      default:
        if (['/healthz', '/readyz', '/metrics', '/reload'].includes(url.split('?')[0]))
          return problem(res, MethodNotAllowed([url.split('?')[0] === '/reload' ? 'POST' : 'GET'], 'This endpoint does not accept this method.'));
        return problem(res, NotFound('No such admin endpoint.'));
    }
  });
  const { url } = await listen(server, o.listen, 'http');
  return {
    url,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
