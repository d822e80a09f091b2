// Demo echo service: answers { method, path, headers } exactly as it received
// them, so anyone can see what an upstream receives through the gateway.
//
// A plain HTTP server — it could be written in any language. The topology
// sets `sidecar: true`, so `gatehouse up` puts `gatehouse sidecar` in front of
// it: the sidecar terminates mTLS, enforces the allow edges, and tells the
// application who called in `x-gatehouse-caller` (the verified SPIFFE ID).
// The application listens on a Unix socket in its own 0700 run folder (no
// port another local process could reach), and believes those headers only
// from a request that carries the sidecar's shared secret: two small calls
// from the mesh SDK (in another language: listen on the socket path given,
// and compare the x-gatehouse-sidecar header in constant time against the
// lines of the secret file).
import http from 'node:http';
import { createSidecarGuard, listenForSidecar, type PlainStartOptions } from 'gatehouse/mesh';

export async function start(o: PlainStartOptions): Promise<{ url: string; close(): Promise<void> }> {
  const guard = createSidecarGuard({ secretFile: o.sidecarSecretFile });
  const server = http.createServer((req, res) => {
    if (!guard.admit(req, res)) return;
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
  const url = await listenForSidecar(server, o);
  return {
    url,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
