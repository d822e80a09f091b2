// fast-gateway (restana + fast-proxy-lite) as a plain reverse proxy.
import gateway from 'fast-gateway';

const upstream = process.env.UPSTREAM!;
const port = Number(process.env.PORT);
const server = gateway({ routes: [{ prefix: '/api', prefixRewrite: '/api', target: upstream }] } as never) as { start(port: number, host: string): Promise<unknown> };
await server.start(port, '127.0.0.1');
process.stdout.write('ready\n');
