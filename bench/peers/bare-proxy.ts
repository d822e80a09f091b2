// The baseline: the simplest correct node:http (or, with CERT and KEY, node:https)
// + undici reverse proxy, with none of Gatehouse's features. Gatehouse's targets
// are ratios to it: the Node ceiling for a proxy on one core.
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { Pool } from 'undici';

const upstream = process.env.UPSTREAM!;
const port = Number(process.env.PORT);
const pool = new Pool(upstream, { connections: 128, pipelining: 1 });

const tls = process.env.CERT && process.env.KEY ? { cert: readFileSync(process.env.CERT), key: readFileSync(process.env.KEY) } : undefined;
const handler: http.RequestListener = (req, res) => {
    const headers = { ...req.headers };
    delete headers.connection;
    pool
      .stream(
        { path: req.url!, method: req.method as 'GET', headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : req },
        ({ statusCode, headers: h }) => {
          res.writeHead(statusCode, h as http.OutgoingHttpHeaders);
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
