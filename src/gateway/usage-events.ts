// What the monitor's detectors learn from the requests a gateway lets
// through (refusals are events of their own, in respond):
//   token_use       a token id first seen from a network (/24, /64) or client
//                   certificate — once per (jti, network, certificate), not per request
//   upstream_status the upstream answered 403 or 404 on a route (object enumeration)
//   traffic         requests per identity (subject, else client, else source) and
//                   route, summed over `intervalMs` and sent as one event each
// All of it is bounded: at most `maxKeys` tokens remembered and identities
// counted per interval; past that, new ones wait for the next interval.
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { EventFields } from '../monitor/event.ts';
import { networkOf } from '../monitor/network.ts';
import { maskText } from '../shared/mask.ts';
import { isHttp2, type GatewayExchange } from './exchange.ts';

export interface UsageEvents {
  observe(ex: GatewayExchange): void;
  /** Sends the counts of the interval so far (the gateway's close). */
  flush(): void;
  close(): void;
}

interface Count {
  route: string;
  subject?: string;
  client?: string;
  source?: string;
  count: number;
}

/**
 * The TLS identity of the connection: the client certificate's hash, when it
 * presented one. Node shows nothing of a ClientHello (no JA3/JA4), and what it
 * does show (protocol, cipher, ALPN) changes with the HTTP library one client
 * uses — a fingerprint that flags honest clients — so none is made without a certificate.
 */
const fingerprints = new WeakMap<object, string | undefined>();
function tlsFingerprint(ex: GatewayExchange): string | undefined {
  const socket = (isHttp2(ex.req) ? ex.req.stream.session?.socket : ex.req.socket) as TLSSocket | undefined;
  if (socket === undefined || typeof socket.getPeerCertificate !== 'function') return undefined;
  if (fingerprints.has(socket)) return fingerprints.get(socket);
  const cert = socket.getPeerCertificate(false)?.raw;
  const fp = cert ? `x5t#S256:${createHash('sha256').update(cert).digest('base64url')}` : undefined;
  fingerprints.set(socket, fp);
  return fp;
}

export function createUsageEvents(emit: (fields: EventFields) => void, o: { intervalMs?: number; maxKeys?: number; now?: () => number } = {}): UsageEvents {
  const intervalMs = o.intervalMs ?? 5_000;
  const maxKeys = o.maxKeys ?? 10_000;
  const now = o.now ?? Date.now;
  /** `${jti} ${network} ${fingerprint}` → when to forget it (the token's expiry) */
  const seen = new Map<string, number>();
  let counts = new Map<string, Count>();

  const flush = () => {
    const sent = counts;
    counts = new Map();
    for (const c of sent.values()) emit({ type: 'traffic', code: 'requests', route: c.route, subject: c.subject, client: c.client, source: c.source, count: c.count });
    // forget tokens that expired
    const t = now();
    if (seen.size > maxKeys / 2) for (const [k, until] of seen) if (until <= t) seen.delete(k);
  };
  const timer = setInterval(flush, intervalMs);
  timer.unref();

  return {
    observe(ex) {
      if (ex.error !== undefined || !ex.routed) return;
      const route = ex.route.name;
      const id = ex.identity;
      // traffic: one count per identity and route
      const key = id ? `${id.kind === 'user' ? 's' : 'c'}:${id.sub}|${route}` : `a:${ex.clientAddress}|${route}`;
      const c = counts.get(key);
      if (c !== undefined) c.count++;
      else if (counts.size < maxKeys)
        counts.set(
          key,
          id
            ? { route, ...(id.kind === 'user' ? { subject: id.sub } : {}), client: id.clientId ?? (id.kind === 'consumer' ? id.consumer : undefined), source: ex.clientAddress, count: 1 }
            : { route, source: ex.clientAddress, count: 1 },
        );
      // a token seen from a network or TLS connection it was not seen from before
      if (id?.jti !== undefined && id.kind !== 'consumer') {
        const tls = tlsFingerprint(ex);
        const tokenKey = `${id.jti} ${networkOf(ex.clientAddress)} ${tls ?? ''}`;
        if (!seen.has(tokenKey) && seen.size < maxKeys) {
          seen.set(tokenKey, id.exp !== undefined ? id.exp * 1000 : now() + 3_600_000);
          emit({ type: 'token_use', code: 'first_seen', jti: id.jti, subject: id.kind === 'user' ? id.sub : undefined, client: id.clientId, source: ex.clientAddress, tls });
        }
      }
      // the upstream refused an object: what enumeration looks like from the gateway
      if (ex.status === 403 || ex.status === 404)
        emit({
          type: 'upstream_status',
          code: ex.status === 403 ? 'forbidden' : 'not_found',
          status: ex.status,
          route,
          method: ex.method,
          path: maskText(ex.path),
          subject: id?.kind === 'user' ? id.sub : undefined,
          client: id?.clientId,
          source: ex.clientAddress,
        });
    },
    flush,
    close() {
      clearInterval(timer);
      flush();
    },
  };
}
