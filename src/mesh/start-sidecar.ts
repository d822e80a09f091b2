// The sidecar: the mesh's inbound and outbound enforcement for a service in
// any language, as two local proxies.
//
// Inbound  (mTLS, `listen`): exactly createService; an allowed request goes to
//   the application (`upstream`) with `x-gatehouse-caller` (the verified
//   SPIFFE ID), `x-gatehouse-user` when an identity token verified, and
//   `x-gatehouse-sidecar`: the sidecar's shared secret, which the application
//   checks (createSidecarGuard) to refuse anything that did not come through
//   here. Callers can never set those headers themselves (they are refused).
//   The upstream is a Unix socket by default (`unix:/…/app.sock`, 0600 in a
//   0700 folder: sidecar-paths.ts), or a loopback port when configured so
//   explicitly. Upstream connections are pooled and kept alive (undici Pool).
// Outbound (plain HTTP, `outboundListen`: a Unix socket or a loopback port):
//   the application sends `Host: <service>` (or `Host: host:port` for an
//   outside endpoint); the sidecar calls it through createClient (pooled mTLS
//   connections), so the egress allow-list and the server identity check apply.
import { createServer } from '../shared/node-http.ts';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Topology } from '../topology/schema.ts';
import { parseListen } from '../topology/schema.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { WorkloadIdentity } from '../pki/workload-identity.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import type { RevocationSource } from '../pki/revocation-feed.ts';
import { createService, IDENTITY_TOKEN_HEADER, type CreateServiceOptions } from './create-service.ts';
import { createClient } from './create-client.ts';
import type { MeshPolicySource } from './policy-source.ts';
import { GatehouseError } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { readBody } from '../shared/body.ts';
import { listen } from '../shared/listen.ts';
import { rotateSecret, SIDECAR_SECRET_HEADER } from './lib/sidecar-secret.ts';
import { listenOnSocket } from './listen-for-sidecar.ts';
import { checkSocketPath, ensurePrivateDir } from './sidecar-paths.ts';

export interface StartSidecarOptions {
  service: string;
  topology: Topology;
  identity: WorkloadIdentity | IdentityManager;
  /**
   * The application: `unix:/abs/path.sock` (the default under `gatehouse up`:
   * sidecarPaths(stateDir, service).socket), or `http://127.0.0.1:P` — a
   * loopback port, only when configured so explicitly.
   */
  upstream: string;
  /**
   * Where the shared secret is published for the application (0600, rotated).
   * Absent: `sidecar.secret` beside a socket upstream; a loopback upstream must name one.
   */
  secretFile?: string;
  /** How often the shared secret changes (default 15 minutes); a new one is published min(5 s, a quarter of this) before it is sent. */
  secretRotateMs?: number;
  revocations: RevocationSource | 'none';
  resolve: (service: string) => string | undefined;
  identityToken?: CreateServiceOptions['identityToken'];
  /** Edges and egress from the control plane (see CreateServiceOptions.policy); absent: the topology's. */
  policy?: MeshPolicySource;
  /** Security events for the control plane (see CreateServiceOptions.events). */
  events?: CreateServiceOptions['events'];
  /** mTLS listener (default 127.0.0.1:0). */
  listen?: string;
  /** The application's way out: `unix:/abs/path.sock`, or a loopback host:port (default 127.0.0.1:0). */
  outboundListen?: string;
  /** Kept-alive connections to the application (default 128). */
  upstreamConnections?: number;
  logger?: Logger;
}

export interface Sidecar {
  url: string;
  /** `unix:/path` or `http://127.0.0.1:P`. */
  outboundUrl: string;
  close(): Promise<void>;
}

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'expect', 'http2-settings']);
const MAX_BODY = 16 * 1024 * 1024;
const LOOPBACK = ['127.0.0.1', 'localhost', '[::1]'];

interface Upstream {
  origin: string;
  socketPath?: string;
  secretFile: string;
}

/**
 * Checks the sidecar's addresses before anything starts (the CLI calls it
 * first): the upstream, where the secret goes, the outbound listener. Throws
 * invalid_config naming the option.
 */
export function checkSidecarAddresses(options: Pick<StartSidecarOptions, 'upstream' | 'secretFile' | 'outboundListen'>): void {
  upstreamOf(options);
  outboundOf(options.outboundListen);
}

function outboundOf(at = '127.0.0.1:0'): { socket: string } | { host: string; port: number } {
  if (at.startsWith('unix:')) {
    const socket = at.slice(5);
    if (!path.isAbsolute(socket)) throw new GatehouseError('invalid_config', 'outboundListen: unix:<absolute path>');
    checkSocketPath(socket, 'outboundListen');
    return { socket };
  }
  const parsed = parseListen(at);
  if (typeof parsed === 'string') throw new GatehouseError('invalid_config', `outboundListen: ${parsed}`);
  if (!['127.0.0.1', '::1', 'localhost'].includes(parsed.host))
    throw new GatehouseError('invalid_config', 'outboundListen: the outbound listener must be a Unix socket or on loopback');
  return parsed;
}

function upstreamOf(options: Pick<StartSidecarOptions, 'upstream' | 'secretFile'>): Upstream {
  const u = options.upstream;
  if (typeof u !== 'string') throw new GatehouseError('invalid_config', 'upstream: required (unix:/path.sock or http://127.0.0.1:P)');
  if (u.startsWith('unix:')) {
    const file = u.slice(5);
    if (!path.isAbsolute(file)) throw new GatehouseError('invalid_config', `upstream: ${JSON.stringify(u.slice(0, 200))} is not unix:<absolute path>`);
    checkSocketPath(file, 'upstream');
    return { origin: 'http://localhost', socketPath: file, secretFile: options.secretFile ?? path.join(path.dirname(file), 'sidecar.secret') };
  }
  let url: URL;
  try {
    url = new URL(u);
  } catch {
    throw new GatehouseError('invalid_config', `upstream: ${JSON.stringify(u.slice(0, 200))} is neither unix:/path.sock nor http://127.0.0.1:P`);
  }
  if (url.protocol !== 'http:' || !LOOPBACK.includes(url.hostname) || url.username || url.password || (url.pathname !== '/' && url.pathname !== ''))
    throw new GatehouseError('invalid_config', `upstream: ${JSON.stringify(u.slice(0, 200))}: the application is unix:/path.sock or plain http on loopback (http://127.0.0.1:P)`);
  if (!options.secretFile)
    throw new GatehouseError(
      'invalid_config',
      'secretFile: a loopback upstream is open to every local process; name the file the application reads the sidecar secret from (createSidecarGuard)',
    );
  return { origin: url.origin, secretFile: options.secretFile };
}

export async function startSidecar(options: StartSidecarOptions): Promise<Sidecar> {
  const log = options.logger ?? createLogger({ name: 'sidecar' });
  const target = upstreamOf(options);
  const out = outboundOf(options.outboundListen);
  ensurePrivateDir(path.dirname(target.secretFile));
  const secret = rotateSecret(target.secretFile, { rotateMs: options.secretRotateMs });
  // loaded here: an application that only imports the mesh SDK does not need undici
  const { Pool } = await import('undici');
  const upstream = {
    pool: new Pool(target.origin, {
      ...(target.socketPath ? { socketPath: target.socketPath } : {}),
      connections: options.upstreamConnections ?? 128,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    }),
  };

  const inbound = await createService({
    name: options.service,
    topology: options.topology,
    identity: options.identity,
    revocations: options.revocations,
    identityToken: options.identityToken,
    policy: options.policy,
    events: options.events,
    listen: options.listen,
    logger: log,
    handler: async (req, res, ctx) => {
      const headers: Record<string, string | string[]> = {};
      const h = req.headers;
      for (const k in h) {
        const v = h[k];
        // CGI, PHP, WSGI and Rack read X_Gatehouse_User as X-Gatehouse-User: a name with '_' could stand
        // for any header this sidecar vouches for, so none reaches the application (as at the gateway)
        if (v !== undefined && !HOP.has(k) && k !== IDENTITY_TOKEN_HEADER && !k.includes('_')) headers[k] = v;
      }
      headers['x-gatehouse-caller'] = ctx.caller.spiffeId;
      if (ctx.user) headers['x-gatehouse-user'] = ctx.user.sub;
      else delete headers['x-gatehouse-user'];
      headers['x-request-id'] = ctx.requestId;
      headers[SIDECAR_SECRET_HEADER] = secret.current();
      const hasBody = h['content-length'] !== undefined ? h['content-length'] !== '0' : h['transfer-encoding'] !== undefined;
      try {
        await upstream.pool.stream(
          { path: req.url ?? '/', method: (req.method ?? 'GET') as 'GET', headers, body: hasBody ? req : undefined },
          ({ statusCode, headers: got }) => {
            const out: Record<string, string | string[]> = {};
            for (const k in got) {
              const v = got[k];
              if (v !== undefined && !HOP.has(k)) out[k] = v;
            }
            res.writeHead(statusCode, out);
            return res;
          },
        );
      } catch (error) {
        if (res.headersSent) {
          res.destroy();
          return;
        }
        log.error({ requestId: ctx.requestId, err: error }, 'upstream failed');
        writeProblem(res, new GatehouseError('bad_gateway', 'The service failed to answer.'), ctx.requestId);
      }
    },
  });

  const client = createClient({
    name: options.service,
    topology: options.topology,
    identity: options.identity,
    resolve: options.resolve,
    revocations: options.revocations,
    policy: options.policy,
    logger: log,
  });
  const outbound = createServer(async (req, res) => {
    const requestId = randomUUID();
    try {
      const target = (req.headers.host ?? '').toLowerCase();
      const body = await readBody(req, MAX_BODY);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP.has(k) && k !== 'content-length') headers[k] = v;
      const r = await client.request(target, {
        method: req.method,
        path: req.url,
        headers,
        body: body.length ? body : undefined,
      });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(r.headers)) if (v !== undefined && !HOP.has(k) && k !== 'content-length') out[k] = v;
      out['content-length'] = String(r.body.length);
      res.writeHead(r.status, out);
      res.end(r.body);
    } catch (error) {
      const e = error instanceof GatehouseError ? error : new GatehouseError('internal', 'The sidecar failed.');
      writeProblem(res, e, requestId);
    }
  });
  outbound.keepAliveTimeout = 5000;
  const outboundUrl = 'socket' in out ? `unix:${await listenOnSocket(outbound, out.socket)}` : (await listen(outbound, out, 'http')).url;
  return {
    url: inbound.url,
    outboundUrl,
    async close() {
      client.close();
      secret.close();
      const closing = new Promise<void>((r) => outbound.close(() => r()));
      outbound.closeAllConnections();
      await Promise.all([closing, inbound.close()]);
      await upstream.pool.destroy();
    },
  };
}
