// Demo echo service: answers { method, path, headers } exactly as it received
// them, so anyone can see what an upstream receives through the gateway.
//
// A plain HTTP server on loopback with no Gatehouse code at all — it could be
// written in any language. The topology sets `sidecar: true`, so
// `gatehouse up` puts `gatehouse sidecar` in front of it: the sidecar
// terminates mTLS, enforces the allow edges, and tells the application who
// called in `x-gatehouse-caller` (the verified SPIFFE ID).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export async function start(o: { host: string; port: number }): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    let size = 0;
    req.on('data', (chunk: Buffer) => (size += chunk.length));
    req.on('end', () => {
      const headers: Record<string, string> = {};
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i].toLowerCase();
        headers[name] = headers[name] === undefined ? req.rawHeaders[i + 1] : `${headers[name]}, ${req.rawHeaders[i + 1]}`;
      }
      const body = JSON.stringify({ method: req.method, path: req.url, headers, bodyBytes: size });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(o.port, o.host, resolve));
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.address}:${a.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
