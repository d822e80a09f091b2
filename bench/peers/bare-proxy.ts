// The baseline: the simplest correct node:http + undici reverse proxy, with
// none of Gatehouse's features. Gatehouse's plain-proxy target is a ratio to it.
import http from 'node:http';
import { Pool } from 'undici';

const upstream = process.env.UPSTREAM!;
const port = Number(process.env.PORT);
const pool = new Pool(upstream, { connections: 128, pipelining: 1 });

http
  .createServer((req, res) => {
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
  })
  .listen(port, '127.0.0.1', () => process.stdout.write('ready\n'));
