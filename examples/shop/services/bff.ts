// Demo backend-for-frontend (public zone): the storefront's orders API,
// /api/shop/orders (GET lists the user's orders, POST places one).
//
// The public gateway authenticates the user (a public-zone JWT with an orders
// scope, MFA) and sends the BFF its identity token and the user's token. The
// BFF never reaches into the private zone directly: it exchanges the user's
// token at the private zone's authority (RFC 8693; the BFF authenticates with
// its own workload certificate, tls_client_auth) for a private-zone token
// naming the user as subject and the BFF as actor, and calls the private
// gateway with it. It also reads product names from the catalog, over mTLS
// on its allow edge. Its `egress` list allows exactly those two.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeJwt } from 'jose';
import { createService, createClient, bearerToken, GatehouseError, serviceOptions, type ServiceStartOptions } from 'gatehouse/mesh';

const MAX_BODY = 64 * 1024;
const PRIVATE = 'private';

function send(res: ServerResponse, status: number, body: unknown, requestId: string, type = 'application/json') {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text), 'x-request-id': requestId, 'cache-control': 'no-store' });
  res.end(text);
}

function problem(res: ServerResponse, status: number, title: string, requestId: string, detail?: string) {
  send(res, status, { type: 'about:blank', title, status, ...(detail ? { detail } : {}), request_id: requestId }, requestId, 'application/problem+json');
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) return undefined;
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

export async function start(o: ServiceStartOptions): Promise<{ url: string; close(): Promise<void> }> {
  const tokens = o.authorities[PRIVATE]?.tokens;
  if (!tokens) o.logger.warn(`no client at the ${PRIVATE} zone's authority (dev mode off?): /api/shop/orders answers 503`);
  const client = createClient({
    name: o.service,
    topology: o.topology,
    identity: o.identity,
    revocations: o.revocations,
    resolve: o.resolve,
    gatewayCa: o.edgeCa,
    authorities: tokens ? { [PRIVATE]: tokens } : {},
    policy: o.policy, // egress from the control plane when `gatehouse up` runs one
    logger: o.logger,
  });

  /** Product names by SKU, from the catalog (over mTLS; on failure the orders go out without names). */
  async function productNames(): Promise<Map<string, string>> {
    try {
      const r = await client.request('catalog', { path: '/api/catalog', timeoutMs: 5_000 });
      if (r.status !== 200) return new Map();
      const { products } = JSON.parse(r.body.toString('utf8')) as { products: { sku: string; name: string }[] };
      return new Map(products.map((p) => [p.sku, p.name]));
    } catch (error) {
      o.logger.warn({ err: error }, 'catalog unavailable');
      return new Map();
    }
  }

  const service = await createService({
    ...serviceOptions(o),
    async handler(req, res, ctx) {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/api/shop/orders') return problem(res, 404, 'Not Found', ctx.requestId);
      // The gateway authenticated the user and says so in its identity token;
      // the forwarded bearer token must be the very token it checked.
      const userToken = bearerToken(req.headers.authorization);
      let jti: unknown;
      try {
        jti = userToken ? decodeJwt(userToken).jti : undefined;
      } catch {
        jti = undefined;
      }
      if (!ctx.user || !userToken || typeof jti !== 'string' || jti !== ctx.user.claims.orig_jti)
        return problem(res, 401, 'Unauthorized', ctx.requestId, 'sign in: this API acts for a signed-in user');
      if (!tokens) return problem(res, 503, 'Service Unavailable', ctx.requestId, 'the orders backend is not configured');
      try {
        // HEAD is GET without the body (node:http drops it); downstream it stays a GET
        if (req.method === 'GET' || req.method === 'HEAD') {
          const [r, names] = await Promise.all([
            client.request(`gateway:${PRIVATE}`, { method: 'GET', path: '/api/orders', onBehalfOf: userToken, headers: { accept: 'application/json' }, trace: ctx.trace }),
            productNames(),
          ]);
          if (r.status !== 200) return send(res, r.status, r.body.toString('utf8'), ctx.requestId, String(r.headers['content-type'] ?? 'application/problem+json'));
          const { orders } = JSON.parse(r.body.toString('utf8')) as { orders: { items: { sku: string; quantity: number }[] }[] };
          return send(res, 200, { orders: orders.map((order) => ({ ...order, items: order.items.map((i) => ({ ...i, name: names.get(i.sku) })) })) }, ctx.requestId);
        }
        // POST (the allow edge admits nothing else: GET, HEAD, POST)
        const body = await readBody(req);
        if (body === undefined) return problem(res, 413, 'Payload Too Large', ctx.requestId);
        const r = await client.request(`gateway:${PRIVATE}`, {
          method: 'POST',
          path: '/api/orders',
          onBehalfOf: userToken,
          headers: { 'content-type': 'application/json', accept: 'application/json' },
          body,
          trace: ctx.trace, // one trace: gateway → BFF → private gateway → orders
        });
        return send(res, r.status, r.body.toString('utf8'), ctx.requestId, String(r.headers['content-type'] ?? 'application/json'));
      } catch (error) {
        if (error instanceof GatehouseError) {
          o.logger.warn({ requestId: ctx.requestId, code: error.code, cause: (error.cause as Error | undefined)?.message }, 'orders call failed');
          return problem(res, error.status, error.title, ctx.requestId, error.status === 401 ? 'the user token was not accepted' : 'the orders backend is unavailable');
        }
        throw error;
      }
    },
  });
  return {
    url: service.url,
    async close() {
      await service.close();
      client.close();
    },
  };
}
