// The baseline: the simplest correct node:http (or, with CERT and KEY, node:https)
// + undici reverse proxy, with none of Gatehouse's features. Gatehouse's targets
// are ratios to it: the Node ceiling for a proxy on one core.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Pool } from 'undici';

const upstream = process.env.UPSTREAM!;
const port = Number(process.env.PORT);
const pool = new Pool(upstream, { connections: 128, pipelining: 1 });

const tls = process.env.CERT && process.env.KEY ? { cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) } : undefined;
// HEADERS=gatehouse: the same proxy adding the headers a Gatehouse gateway adds to
// every request and answer (forwarding, request id and trace context upstream;
// security headers and the request id to the client), with fixed or trivial
// values: what those headers alone cost on the Node ceiling.
const withHeaders = process.env.HEADERS === 'gatehouse';
const SECURITY: http.OutgoingHttpHeaders = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-frame-options': 'DENY',
  'content-security-policy': "frame-ancestors 'none'",
};
const handler: http.RequestListener = (req, res) => {
    const headers: http.IncomingHttpHeaders = { ...req.headers };
    delete headers.connection;
    const id = withHeaders ? randomUUID() : '';
    if (withHeaders) {
      const peer = req.socket.remoteAddress ?? '';
      headers['x-forwarded-for'] = peer;
      headers['x-forwarded-proto'] = 'https';
      headers['x-forwarded-host'] = req.headers.host;
      headers['forwarded'] = `for=${peer};proto=https;host="${req.headers.host}"`;
      headers['x-request-id'] = id;
      headers['traceparent'] = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    }
    pool
      .stream(
        { path: req.url!, method: req.method as 'GET', headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req },
        ({ statusCode, headers: h }) => {
          res.writeHead(statusCode, withHeaders ? { ...SECURITY, ...(h as http.OutgoingHttpHeaders), 'x-request-id': id } : (h as http.OutgoingHttpHeaders));
          return res;
        },
      )
      .catch(() => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
};
(tls ? https.createServer({ ...tls, ALPNProtocols: ['http/1.1'] }, handler) : http.createServer(handler)).listen(port, '127.0.0.1', () =>
  process.stdout.write('ready\n'),
);
