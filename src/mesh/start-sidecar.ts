// The sidecar: the mesh's inbound and outbound enforcement for a service in
// any language, as two local proxies.
//
// Inbound  (mTLS, `listen`): exactly createService; an allowed request goes to
//   the plain-HTTP `upstream` on loopback with `x-gatehouse-caller` (the
//   verified SPIFFE ID) and, when an identity token verified, `x-gatehouse-user`.
//   Callers can never set those headers themselves (they are refused).
// Outbound (plain HTTP on loopback, `outboundListen`): the application sends
//   `Host: <service>` (or `Host: host:port` for an outside endpoint); the
//   sidecar calls it through createClient, so the egress allow-list and the
//   server identity check apply.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Topology } from '../topology/schema.ts';
import { parseListen } from '../topology/schema.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { WorkloadIdentity } from '../pki/workload-identity.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import type { RevocationSource } from '../pki/revocation-feed.ts';
import { createService, IDENTITY_TOKEN_HEADER, type CreateServiceOptions } from './create-service.ts';
import { createClient } from './create-client.ts';
import { MeshError, sendProblem } from './errors.ts';

export interface StartSidecarOptions {
  service: string;
  topology: Topology;
  identity: WorkloadIdentity | IdentityManager;
  /** http://127.0.0.1:P: the application (loopback only). */
  upstream: string;
  revocations: RevocationSource | 'none';
  resolve: (service: string) => string | undefined;
  identityToken?: CreateServiceOptions['identityToken'];
  /** mTLS listener (default 127.0.0.1:0). */
  listen?: string;
  /** Loopback listener for the application's outbound calls (default 127.0.0.1:0). */
  outboundListen?: string;
  logger?: Logger;
}

export interface Sidecar {
  url: string;
  outboundUrl: string;
  close(): Promise<void>;
}

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'content-length']);
const MAX_BODY = 16 * 1024 * 1024;

export async function startSidecar(options: StartSidecarOptions): Promise<Sidecar> {
  const log = options.logger ?? createLogger({ name: 'sidecar' });
  const upstream = new URL(options.upstream);
  if (upstream.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(upstream.hostname))
    throw new Error('the sidecar upstream must be http on loopback (http://127.0.0.1:P)');
  const outListen = parseListen(options.outboundListen ?? '127.0.0.1:0');
  if (typeof outListen === 'string' || !['127.0.0.1', '::1', 'localhost'].includes(outListen.host))
    throw new Error('the outbound listener must be on loopback');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

  const inbound = await createService({
    name: options.service,
    topology: options.topology,
    identity: options.identity,
    revocations: options.revocations,
    identityToken: options.identityToken,
    listen: options.listen,
    logger: log,
    handler: (req, res, ctx) =>
      new Promise<void>((resolve) => {
        const headers: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP.has(k) && k !== IDENTITY_TOKEN_HEADER) headers[k] = v;
        headers['x-gatehouse-caller'] = ctx.caller.spiffeId;
        if (ctx.user) headers['x-gatehouse-user'] = ctx.user.sub;
        headers['x-request-id'] = ctx.requestId;
        if (req.headers['content-length']) headers['content-length'] = req.headers['content-length'];
        const up = http.request(
          { host: upstream.hostname.replace(/^\[|\]$/g, ''), port: upstream.port, method: req.method, path: req.url, headers, agent },
          (ur) => {
            const out: Record<string, string | string[]> = {};
            for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
            if (ur.headers['content-length']) out['content-length'] = ur.headers['content-length'];
            res.writeHead(ur.statusCode ?? 502, out);
            ur.pipe(res);
            ur.on('end', resolve);
            ur.on('error', () => (res.destroy(), resolve()));
          },
        );
        up.on('error', (error) => {
          log.error({ requestId: ctx.requestId, err: error }, 'upstream failed');
          sendProblem(res, new MeshError('bad_gateway', 502, 'Bad Gateway', 'The service failed to answer.'), ctx.requestId);
          resolve();
        });
        req.pipe(up);
      }),
  });

  const client = createClient({
    name: options.service,
    topology: options.topology,
    identity: options.identity,
    resolve: options.resolve,
    revocations: options.revocations,
    logger: log,
  });
  const outbound = http.createServer(async (req, res) => {
    const requestId = randomUUID();
    try {
      const target = (req.headers.host ?? '').toLowerCase();
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const c of req) {
        size += (c as Buffer).length;
        if (size > MAX_BODY) throw new MeshError('ambiguous_request', 413, 'Payload Too Large', 'The request body is too large.');
        chunks.push(c as Buffer);
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP.has(k)) headers[k] = v;
      const r = await client.request(target, {
        method: req.method,
        path: req.url,
        headers,
        body: chunks.length ? Buffer.concat(chunks) : undefined,
      });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      out['content-length'] = String(r.body.length);
      res.writeHead(r.status, out);
      res.end(r.body);
    } catch (error) {
      const e = error instanceof MeshError ? error : new MeshError('internal', 500, 'Internal Server Error', 'The sidecar failed.');
      sendProblem(res, e, requestId);
    }
  });
  outbound.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => outbound.listen(outListen.port, outListen.host, resolve));
  const oa = outbound.address() as AddressInfo;
  return {
    url: inbound.url,
    outboundUrl: `http://${oa.family === 'IPv6' ? `[${oa.address}]` : oa.address}:${oa.port}`,
    async close() {
      client.close();
      const closing = new Promise<void>((r) => outbound.close(() => r()));
      outbound.closeAllConnections();
      await Promise.all([closing, inbound.close()]);
      agent.destroy();
    },
  };
}
