// Demo orders service (private zone): lists and accepts a user's orders, kept
// in memory. It runs under the mesh SDK: only the private zone's gateway may
// call it (see `allow` in gatehouse.yaml); any other peer — the public
// gateway included — gets a 403 problem, and a peer without a certificate of
// the trust domain cannot even connect.
//
// Every request acts for someone: the gateway's identity token names them,
// and the private-zone access token the gateway forwards says who acts for
// them (`act`: the BFF that exchanged the user's token). Both are checked
// here again — zero trust does not stop at the gateway. GET /api/orders and
// GET /api/orders/{id} need orders:read, POST orders:write; each subject sees
// only its own orders.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { createService, createAccessTokenVerifier, bearerToken, serviceOptions, type ServiceStartOptions, type VerifiedAccessToken } from 'gatehouse/mesh';

interface Order {
  id: string;
  /** the subject the order was placed for (the user) */
  customer: string;
  /** who placed it for them (RFC 8693 actor), when someone did */
  placedBy?: string;
  items: { sku: string; quantity: number }[];
  createdAt: string;
}

const MAX_BODY = 64 * 1024;

export async function start(o: ServiceStartOptions): Promise<{ url: string; close(): Promise<void> }> {
  const orders: Order[] = [];
  const authority = o.authorities[o.topology.services[o.service].zone];
  if (!authority) throw new Error('orders needs its zone authority (to check access tokens)');
  const verifier = createAccessTokenVerifier({ issuer: authority.issuer, audience: authority.audience, ca: o.edgeCa });
  const send = (res: ServerResponse, status: number, body: unknown, requestId: string, type = 'application/json') => {
    const text = JSON.stringify(type === 'application/problem+json' ? { ...(body as object), request_id: requestId } : body);
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'x-request-id': requestId });
    res.end(text);
  };
  const problem = (res: ServerResponse, status: number, title: string, requestId: string, detail?: string) =>
    send(res, status, { type: 'about:blank', title, status, ...(detail ? { detail } : {}) }, requestId, 'application/problem+json');

  const service = await createService({
    ...serviceOptions(o),
    async handler(req: IncomingMessage, res: ServerResponse, ctx) {
      const path = (req.url ?? '/').split('?')[0];
      // /api/orders/{id}: the gateway checked the id against openapi/orders.yaml (a uuid)
      const one = /^\/api\/orders\/([0-9a-f-]{36})$/.exec(path);
      // HEAD is GET without the body (node:http drops it): the gateway passes HEAD on every GET route
      const read = req.method === 'GET' || req.method === 'HEAD';
      if (path !== '/api/orders' && !(one && read)) return problem(res, 404, 'Not Found', ctx.requestId);
      const raw = bearerToken(req.headers.authorization);
      let token: VerifiedAccessToken | undefined;
      try {
        token = raw ? await verifier.verify(raw) : undefined;
      } catch {
        token = undefined;
      }
      // the token must be the one the gateway checked for this very subject
      if (!token || !ctx.user || token.sub !== ctx.user.sub || token.claims.jti !== ctx.user.claims.orig_jti)
        return problem(res, 401, 'Unauthorized', ctx.requestId, 'a private-zone access token is required');
      const mine = (order: Order) => order.customer === token.sub;
      if (read) {
        if (!token.scopes.includes('orders:read')) return problem(res, 403, 'Forbidden', ctx.requestId, 'needs orders:read');
        if (one) {
          // someone else's order is as absent as a missing one
          const order = orders.find((x) => x.id === one[1] && mine(x));
          return order ? send(res, 200, order, ctx.requestId) : problem(res, 404, 'Not Found', ctx.requestId);
        }
        const limit = Number(new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('limit') ?? 100);
        return send(res, 200, { orders: orders.filter(mine).slice(-limit) }, ctx.requestId);
      }
      if (req.method !== 'POST') return problem(res, 405, 'Method Not Allowed', ctx.requestId);
      if (!token.scopes.includes('orders:write')) return problem(res, 403, 'Forbidden', ctx.requestId, 'needs orders:write');
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
          customer: token.sub,
          ...(token.actors.length > 0 ? { placedBy: token.actors[0] } : {}),
          items: items.map((i) => ({ sku: i.sku, quantity: i.quantity })),
          createdAt: new Date().toISOString(),
        };
        if (orders.length >= 1000) orders.shift();
        orders.push(order);
        send(res, 201, order, ctx.requestId);
      });
    },
  });
  return {
    url: service.url,
    async close() {
      await service.close();
      await verifier.close();
    },
  };
}
