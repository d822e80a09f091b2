// The admin listener: health, readiness, metrics and reload. Loopback by
// default and never the public port. Every answer but metrics is JSON;
// errors are problem+json like everywhere else.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { parseListen } from '../topology/schema.ts';
import { PROBLEM_CONTENT_TYPE } from '../shared/errors.ts';

export interface AdminOptions {
  listen: string;
  metrics(): Promise<string>;
  contentType: string;
  ready(): boolean;
  reload(): Promise<{ ok: true; generation: number } | { ok: false; error: string }>;
}

export async function createAdminServer(o: AdminOptions): Promise<{ url: string; close(): Promise<void> }> {
  const problem = (res: http.ServerResponse, status: number, code: string, title: string, detail: string) => {
    const id = randomUUID();
    res.writeHead(status, { 'content-type': PROBLEM_CONTENT_TYPE, 'x-request-id': id, 'cache-control': 'no-store' });
    res.end(JSON.stringify({ type: `urn:gatehouse:problem:${code}`, title, status, detail, code, request_id: id }));
  };
  const json = (res: http.ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  const server = http.createServer({ maxHeaderSize: 8192, headersTimeout: 5000, requestTimeout: 10000 }, (req, res) => {
    const url = req.url ?? '';
    const route = `${req.method} ${url.split('?')[0]}`;
    // a request body is never needed; refuse large ones early
    if (Number(req.headers['content-length'] ?? 0) > 0) {
      problem(res, 413, 'payload_too_large', 'Payload Too Large', 'Admin endpoints take no request body.');
      return;
    }
    switch (route) {
      case 'GET /healthz':
        return json(res, 200, { status: 'ok' });
      case 'GET /readyz':
        return o.ready() ? json(res, 200, { status: 'ready' }) : json(res, 503, { status: 'starting' });
      case 'GET /metrics':
        o.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': o.contentType });
            res.end(text);
          },
          () => problem(res, 500, 'internal', 'Internal Server Error', 'Metrics could not be collected.'),
        );
        return;
      case 'POST /reload':
        o.reload().then((r) =>
          r.ok
            ? json(res, 200, { status: 'reloaded', generation: r.generation })
            : problem(res, 422, 'invalid_config', 'Configuration refused', r.error),
        );
        return;
      default:
        if (['/healthz', '/readyz', '/metrics', '/reload'].includes(url.split('?')[0]))
          return problem(res, 405, 'method_not_allowed', 'Method Not Allowed', 'This endpoint does not accept this method.');
        return problem(res, 404, 'not_found', 'Not Found', 'No such admin endpoint.');
    }
  });
  const parsed = parseListen(o.listen);
  if (typeof parsed === 'string') throw new Error(parsed);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(parsed.port, parsed.host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
