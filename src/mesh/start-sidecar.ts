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
import { GatehouseError } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { readBody } from '../shared/body.ts';
import { listen } from '../shared/listen.ts';

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
          writeProblem(res, new GatehouseError('bad_gateway', 'The service failed to answer.'), ctx.requestId);
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
      const body = await readBody(req, MAX_BODY);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP.has(k)) headers[k] = v;
      const r = await client.request(target, {
        method: req.method,
        path: req.url,
        headers,
        body: body.length ? body : undefined,
      });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      out['content-length'] = String(r.body.length);
      res.writeHead(r.status, out);
      res.end(r.body);
    } catch (error) {
      const e = error instanceof GatehouseError ? error : new GatehouseError('internal', 'The sidecar failed.');
      writeProblem(res, e, requestId);
    }
  });
  outbound.keepAliveTimeout = 5000;
  const { url: outboundUrl } = await listen(outbound, outListen, 'http');
  return {
    url: inbound.url,
    outboundUrl,
    async close() {
      client.close();
      const closing = new Promise<void>((r) => outbound.close(() => r()));
      outbound.closeAllConnections();
      await Promise.all([closing, inbound.close()]);
      agent.destroy();
    },
  };
}
