// @fastify/http-proxy (fastify + undici) as a plain reverse proxy.
import Fastify from 'fastify';
import proxy from '@fastify/http-proxy';

const upstream = process.env.UPSTREAM!;
const port = Number(process.env.PORT);
const app = Fastify({ logger: false });
await app.register(proxy, { upstream, prefix: '/', http2: false });
await app.listen({ port, host: '127.0.0.1' });
process.stdout.write('ready\n');
