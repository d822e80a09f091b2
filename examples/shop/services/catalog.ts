// Demo catalog service (public zone): answers GET /api/catalog with the shop's
// products. It runs under the mesh SDK: only peers with a certificate of this
// trust domain connect, and only those the topology's `allow` edges name get
// an answer (the public gateway, and the BFF) — everyone else a 403 problem.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createService, serviceOptions, type ServiceStartOptions } from 'gatehouse/mesh';

export const products = [
  { sku: 'tea-001', name: 'Sencha green tea', price: { amount: 1250, currency: 'EUR' } },
  { sku: 'tea-002', name: 'Assam breakfast tea', price: { amount: 990, currency: 'EUR' } },
  { sku: 'pot-001', name: 'Cast-iron teapot', price: { amount: 4500, currency: 'EUR' } },
];

function problem(res: ServerResponse, status: number, title: string, requestId: string) {
  const body = JSON.stringify({ type: 'about:blank', title, status, request_id: requestId });
  res.writeHead(status, { 'content-type': 'application/problem+json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId });
  res.end(body);
}

export async function start(o: ServiceStartOptions): Promise<{ url: string; close(): Promise<void> }> {
  const service = await createService({
    ...serviceOptions(o),
    handler(req: IncomingMessage, res: ServerResponse, ctx) {
      // the allow edges have already limited callers to GET/HEAD /api/catalog
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/api/catalog') return problem(res, 404, 'Not Found', ctx.requestId);
      const body = JSON.stringify({ products });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
  });
  return { url: service.url, close: () => service.close() };
}
