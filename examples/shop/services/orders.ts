// Demo orders service (private zone): lists and accepts a user's orders, kept
// in memory. It runs under the mesh SDK: only the private zone's gateway may
// call it (see `allow` in gatehouse.yaml); any other peer — the public
// gateway included — gets a 403 problem, and a peer without a certificate of
// the trust domain cannot even connect.
//
// Every request acts for someone: the gateway's identity token names them,
// and the private-zone access token the gateway forwards says who acts for
// them (`act`: the BFF that exchanged the user's token). Both are checked
// here again — zero trust does not stop at the gateway. Private tokens are
// sender-constrained (the zone's `senderConstrained: required`): the gateway
// checked that the sender holds the certificate or DPoP key the token is
// bound to; orders sees the gateway as its peer, not the sender, so it
// verifies the token with `senderCheckedBy: 'gateway'` and relies on the
// identity token (orig_jti) to know it is the very token the gateway checked. GET /api/orders and
// GET /api/orders/{id} need orders:read, POST orders:write; each subject sees
// only its own orders.
//
// Orders are kept in SQLite (DATA/orders.sqlite; in memory without a data
// folder) and hold no personal data in clear: the delivery address is
// encrypted field by field through the vault (key orders-pii, context
// orders/<id>/address, so a ciphertext copied to another order does not
// decrypt) and a payment card is kept only as a vault token (key orders-card:
// same length and last four digits, never a real card number). `gatehouse up`
// hands over the vault's URL (GATEHOUSE_VAULT_URL) and the data folder
// (GATEHOUSE_DATA_DIR); without a vault, orders with an address or a card are
// refused.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { createService, createAccessTokenVerifier, serviceOptions, type ServiceStartOptions, type VerifiedAccessToken } from 'gatehouse/mesh';
import { createVaultClient, type VaultClient } from 'gatehouse/vault';

interface Order {
  id: string;
  /** the subject the order was placed for (the user) */
  customer: string;
  /** who placed it for them (RFC 8693 actor), when someone did */
  placedBy?: string;
  items: { sku: string; quantity: number }[];
  createdAt: string;
  /** the delivery address (stored encrypted: a gh:v1: ciphertext) */
  address?: string;
  /** the payment card's vault token (stored as it is: never the card number) */
  card?: string;
}

/** The vault keys of the orders (gatehouse.yaml `vault.keys`). */
const PII_KEY = 'orders-pii';
const CARD_KEY = 'orders-card';

/** The orders table: what is on disk is what this type says, nothing more. */
interface OrderRow {
  id: string;
  customer: string;
  placed_by: string | null;
  items: string;
  created_at: string;
  address: string | null;
  card_token: string | null;
}

function openOrders(dataDir: string | undefined) {
  const db = new DatabaseSync(dataDir ? path.join(dataDir, 'orders.sqlite') : ':memory:');
  db.exec(`PRAGMA journal_mode = WAL;
    CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, placed_by TEXT, items TEXT NOT NULL,
      created_at TEXT NOT NULL, address TEXT, card_token TEXT);
    CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer, created_at);`);
  const insert = db.prepare('INSERT INTO orders (id, customer, placed_by, items, created_at, address, card_token) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const one = db.prepare('SELECT * FROM orders WHERE id = ? AND customer = ?');
  const mine = db.prepare('SELECT * FROM orders WHERE customer = ? ORDER BY created_at DESC, id LIMIT ?');
  return {
    insert: (r: OrderRow) => insert.run(r.id, r.customer, r.placed_by, r.items, r.created_at, r.address, r.card_token),
    one: (id: string, customer: string) => one.get(id, customer) as OrderRow | undefined,
    mine: (customer: string, limit: number) => (mine.all(customer, limit) as unknown as OrderRow[]).reverse(),
    close: () => db.close(),
  };
}

const MAX_BODY = 64 * 1024;

/** The token of the forwarded Authorization header: Bearer (certificate-bound or not) or DPoP (RFC 9449 §7.1). */
function forwardedToken(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  return /^(?:Bearer|DPoP) ([A-Za-z0-9\-._~+/]+=*)$/i.exec(header.trim())?.[1];
}

export async function start(o: ServiceStartOptions): Promise<{ url: string; close(): Promise<void> }> {
  const store = openOrders(process.env.GATEHOUSE_DATA_DIR);
  const vaultUrl = process.env.GATEHOUSE_VAULT_URL;
  const vault: VaultClient | undefined = vaultUrl ? createVaultClient({ url: vaultUrl, identity: o.identity, ca: o.edgeCa }) : undefined;
  /** Stored rows as the API answers them: addresses decrypted for their owner (one vault batch), cards as their tokens. */
  const present = async (rows: OrderRow[]): Promise<Order[]> => {
    const sealed = rows.filter((r) => r.address !== null);
    const opened = vault && sealed.length > 0 ? await vault.decryptBatch(PII_KEY, sealed.map((r) => ({ ciphertext: r.address!, context: `orders/${r.id}/address` }))) : [];
    const addresses = new Map(sealed.map((r, i) => [r.id, opened[i]?.toString('utf8')]));
    return rows.map((r) => ({
      id: r.id,
      customer: r.customer,
      ...(r.placed_by ? { placedBy: r.placed_by } : {}),
      items: JSON.parse(r.items) as Order['items'],
      createdAt: r.created_at,
      ...(addresses.get(r.id) !== undefined ? { address: addresses.get(r.id) } : {}),
      ...(r.card_token !== null ? { card: r.card_token } : {}),
    }));
  };
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
      const raw = forwardedToken(req.headers.authorization);
      let token: VerifiedAccessToken | undefined;
      try {
        token = raw ? await verifier.verify(raw, { senderCheckedBy: 'gateway' }) : undefined;
      } catch {
        token = undefined;
      }
      // the token must be the one the gateway checked for this very subject
      if (!token || !ctx.user || token.sub !== ctx.user.sub || token.claims.jti !== ctx.user.claims.orig_jti)
        return problem(res, 401, 'Unauthorized', ctx.requestId, 'a private-zone access token is required');
      if (read) {
        if (!token.scopes.includes('orders:read')) return problem(res, 403, 'Forbidden', ctx.requestId, 'needs orders:read');
        if (one) {
          // someone else's order is as absent as a missing one
          const row = store.one(one[1], token.sub);
          return row ? send(res, 200, (await present([row]))[0], ctx.requestId) : problem(res, 404, 'Not Found', ctx.requestId);
        }
        const limit = Math.min(100, Math.max(1, Number(new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('limit') ?? 100) || 100));
        return send(res, 200, { orders: await present(store.mine(token.sub, limit)) }, ctx.requestId);
      }
      if (req.method !== 'POST') return problem(res, 405, 'Method Not Allowed', ctx.requestId);
      if (!token.scopes.includes('orders:write')) return problem(res, 403, 'Forbidden', ctx.requestId, 'needs orders:write');
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY) chunks.push(c);
      });
      const place = async () => {
        if (size > MAX_BODY) return problem(res, 413, 'Payload Too Large', ctx.requestId);
        let input: unknown;
        try {
          input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return problem(res, 400, 'Bad Request', ctx.requestId, 'body must be JSON');
        }
        const { items, address, card } = input as { items?: unknown; address?: unknown; card?: unknown };
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
        if ((address !== undefined && (typeof address !== 'string' || address.length === 0 || address.length > 500)) || (card !== undefined && (typeof card !== 'string' || !/^[0-9]{13,19}$/.test(card))))
          return problem(res, 422, 'Unprocessable Content', ctx.requestId, 'address: text (at most 500), card: 13–19 digits');
        if ((address !== undefined || card !== undefined) && !vault)
          return problem(res, 503, 'Service Unavailable', ctx.requestId, 'personal data needs the vault, which is not configured');
        const id = randomUUID();
        let sealed: { address?: string; card?: string };
        try {
          // the card's token comes first: a card the vault refuses (not a card number) stores nothing
          const cardToken = card !== undefined ? await vault!.tokenize(CARD_KEY, card as string) : undefined;
          const fields = address !== undefined ? await vault!.encryptFields({ address: address as string }, { key: PII_KEY, fields: ['address'], context: `orders/${id}` }) : {};
          sealed = { ...fields, ...(cardToken ? { card: cardToken } : {}) };
        } catch (error) {
          const code = (error as { code?: string }).code;
          if (code === 'vault_value_invalid') return problem(res, 422, 'Unprocessable Content', ctx.requestId, 'card: not a card number');
          o.logger.error({ code }, 'the vault refused or failed');
          return problem(res, 503, 'Service Unavailable', ctx.requestId, 'the vault is unavailable');
        }
        const row: OrderRow = {
          id,
          customer: token.sub,
          placed_by: token.actors[0] ?? null,
          items: JSON.stringify(items.map((i) => ({ sku: i.sku, quantity: i.quantity }))),
          created_at: new Date().toISOString(),
          address: sealed.address ?? null,
          card_token: sealed.card ?? null,
        };
        store.insert(row);
        send(res, 201, (await present([row]))[0], ctx.requestId);
      };
      req.on('end', () => void place().catch((error: unknown) => {
        o.logger.error({ err: error }, 'placing an order failed');
        problem(res, 500, 'Internal Server Error', ctx.requestId);
      }));
    },
  });
  return {
    url: service.url,
    async close() {
      await service.close();
      await verifier.close();
      vault?.close();
      store.close();
    },
  };
}
