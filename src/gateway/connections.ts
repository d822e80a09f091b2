// Client connections, bounded fairly: each source address may hold only its
// share of the gateway's connections; a connection that has not finished its
// TLS handshake (or, in plaintext, sent a request) within the handshake timeout
// is closed; at the limit, such unfinished connections are shed first (oldest
// first), then the oldest idle HTTP/1 keep-alive one, and only then is a new
// connection refused.
// What was shed is counted by reason.
import type { Server as NetServer, Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { normaliseAddress } from '../shared/address.ts';
import type { GatewayMetrics } from './metrics.ts';

export interface ConnectionLimits {
  max: number;
  perSource: number;
  handshakeTimeoutMs: number;
  /** Plaintext: a connection is established by its first request, not a handshake. */
  plaintext: boolean;
  /** Sources not held to one source's share: trusted proxies (a load balancer every client comes through). */
  exempt?: (address: string) => boolean;
  metrics: Pick<GatewayMetrics, 'connections' | 'connectionsShed'>;
}

/** A connection as the HTTP layer sees it (the TLS socket over the TCP one, or the plain one). */
type Established = Socket & { alpnProtocol?: string | false | null; _httpMessage?: unknown };

export interface ConnectionGuard {
  /** The connection finished its handshake. */
  established(socket: Established): void;
  close(): void;
}

const keyOf = (s: { remoteAddress?: string; remotePort?: number }) => `${s.remoteAddress}|${s.remotePort}`;

export function guardConnections(server: NetServer, o: ConnectionLimits): ConnectionGuard {
  const bySource = new Map<string, number>();
  /** Connections still in their handshake, oldest first (a Map keeps insertion order). */
  const pending = new Map<string, { socket: Socket; timer: NodeJS.Timeout }>();
  /** Established HTTP/1 connections, oldest first: idle ones (no request in flight) can make room. */
  const h1 = new Set<Established>();
  let open = 0;
  const shed = (reason: string) => o.metrics.connectionsShed.inc({ reason });

  const established = (s: Established) => {
    const key = keyOf(s);
    const p = pending.get(key);
    if (p === undefined) return;
    clearTimeout(p.timer);
    pending.delete(key);
    if (s.alpnProtocol === 'h2') return; // a session multiplexes its streams: never shed as idle
    h1.add(s);
    s.once('close', () => h1.delete(s));
  };
  const oldestIdle = (): Established | undefined => {
    for (const s of h1) if (s._httpMessage === undefined || s._httpMessage === null) return s;
    return undefined;
  };

  server.on('connection', (socket: Socket) => {
    const source = normaliseAddress(socket.remoteAddress);
    const held = bySource.get(source) ?? 0;
    if (held >= o.perSource && !o.exempt?.(source)) {
      shed('per_source');
      socket.destroy();
      return;
    }
    if (open >= o.max) {
      const oldest = pending.values().next();
      const idle = oldest.done ? oldestIdle() : undefined;
      if (!oldest.done) {
        shed('shed');
        oldest.value.socket.destroy();
      } else if (idle !== undefined) {
        // no handshake to shed: a kept-alive connection waiting for nothing makes room
        shed('idle');
        h1.delete(idle);
        idle.destroy();
      } else {
        shed('full');
        socket.destroy();
        return;
      }
    }
    open++;
    bySource.set(source, held + 1);
    o.metrics.connections.inc();
    const key = keyOf(socket);
    const timer = setTimeout(() => {
      if (pending.get(key)?.socket !== socket) return;
      pending.delete(key);
      shed('handshake_timeout');
      socket.destroy();
    }, o.handshakeTimeoutMs);
    timer.unref();
    pending.set(key, { socket, timer });
    socket.once('close', () => {
      open--;
      o.metrics.connections.dec();
      const n = (bySource.get(source) ?? 1) - 1;
      if (n <= 0) bySource.delete(source);
      else bySource.set(source, n);
      const p = pending.get(key);
      if (p?.socket === socket) {
        clearTimeout(p.timer);
        pending.delete(key);
      }
    });
  });
  if (o.plaintext) {
    const onRequest = (req: IncomingMessage) => established(req.socket as Established);
    server.on('request', onRequest);
    server.on('upgrade', onRequest);
    server.on('connect', onRequest);
  }
  return {
    established,
    close() {
      for (const p of pending.values()) clearTimeout(p.timer);
    },
  };
}
