// Demo orders service (private zone): lists and accepts orders, kept in memory.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

interface Order {
  id: string;
  items: { sku: string; quantity: number }[];
  createdAt: string;
}

const MAX_BODY = 64 * 1024;

export async function start(o: { host: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  const orders: Order[] = [];
  const send = (res: http.ServerResponse, status: number, body: unknown, type = 'application/json') => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/api/orders') return send(res, 404, { title: 'Not Found', status: 404 }, 'application/problem+json');
    if (req.method === 'GET') return send(res, 200, { orders });
    if (req.method !== 'POST') return send(res, 405, { title: 'Method Not Allowed', status: 405 }, 'application/problem+json');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      if (size > MAX_BODY) return send(res, 413, { title: 'Payload Too Large', status: 413 }, 'application/problem+json');
      let input: unknown;
      try {
        input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return send(res, 400, { title: 'Bad Request', status: 400, detail: 'body must be JSON' }, 'application/problem+json');
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
        return send(res, 422, { title: 'Unprocessable', status: 422, detail: 'items: [{ sku, quantity }]' }, 'application/problem+json');
      const order: Order = { id: randomUUID(), items: items.map((i) => ({ sku: i.sku, quantity: i.quantity })), createdAt: new Date().toISOString() };
      if (orders.length >= 1000) orders.shift();
      orders.push(order);
      send(res, 201, order);
    });
  });
  await new Promise<void>((resolve) => server.listen(o.port, o.host, resolve));
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.address}:${a.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
