// Demo orders service (private zone): lists and accepts orders, kept in memory.
// It runs under the mesh SDK: only the private zone's gateway may call it
// (see `allow` in gatehouse.yaml); any other peer — the public gateway
// included — gets a 403 problem, and a peer without a certificate of the trust
// domain cannot even connect.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createService, type ServiceStartOptions } from 'gatehouse/mesh';

interface Order {
  id: string;
  items: { sku: string; quantity: number }[];
  createdAt: string;
}

const MAX_BODY = 64 * 1024;

export async function start(o: ServiceStartOptions): Promise<{ url: string; close(): Promise<void> }> {
  const orders: Order[] = [];
  const send = (res: ServerResponse, status: number, body: unknown, requestId: string, type = 'application/json') => {
    const text = JSON.stringify(type === 'application/problem+json' ? { ...(body as object), request_id: requestId } : body);
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'x-request-id': requestId });
    res.end(text);
  };
  const problem = (res: ServerResponse, status: number, title: string, requestId: string, detail?: string) =>
    send(res, status, { type: 'about:blank', title, status, ...(detail ? { detail } : {}) }, requestId, 'application/problem+json');

  const service = await createService({
    name: o.service,
    topology: o.topology,
    identity: o.identity,
    revocations: o.revocations,
    identityToken: o.identityToken,
    logger: o.logger,
    listen: `${o.host}:${o.port}`,
    handler(req: IncomingMessage, res: ServerResponse, ctx) {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/api/orders') return problem(res, 404, 'Not Found', ctx.requestId);
      if (req.method === 'GET') return send(res, 200, { orders }, ctx.requestId);
      if (req.method !== 'POST') return problem(res, 405, 'Method Not Allowed', ctx.requestId);
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      req.on('end', () => {
        if (size > MAX_BODY) return problem(res, 413, 'Payload Too Large', ctx.requestId);
        let input: unknown;
        try {
          input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return problem(res, 400, 'Bad Request', ctx.requestId, 'body must be JSON');
        }
        const items = (input as { items?: unknown }).items;
        if (
          !Array.isArray(items) ||
          items.length === 0 ||
          items.length > 100 ||
          !items.every(
            (i) =>
              typeof i?.sku === 'string' && i.sku.length <= 64 && Number.isInteger(i?.quantity) && i.quantity > 0 && i.quantity <= 1000,
          )
        )
          return problem(res, 422, 'Unprocessable Content', ctx.requestId, 'items: [{ sku, quantity }]');
        const order: Order = {
          id: randomUUID(),
          items: items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
          createdAt: new Date().toISOString(),
        };
        if (orders.length >= 1000) orders.shift();
        orders.push(order);
        send(res, 201, order, ctx.requestId);
      });
    },
  });
  return { url: service.url, close: () => service.close() };
}
