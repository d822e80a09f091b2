// Demo catalog service: answers GET /api/catalog with the shop's products.
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const products = [
  { sku: 'tea-001', name: 'Sencha green tea', price: { amount: 1250, currency: 'EUR' } },
  { sku: 'tea-002', name: 'Assam breakfast tea', price: { amount: 990, currency: 'EUR' } },
  { sku: 'pot-001', name: 'Cast-iron teapot', price: { amount: 4500, currency: 'EUR' } },
];

export async function start(o: { host: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/api/catalog' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ title: 'Not Found', status: 404 }));
      return;
    }
    const body = JSON.stringify({ products });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(o.port, o.host, resolve));
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.address}:${a.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
