// Raw HTTP/1.1 over TCP or TLS: the bytes go out exactly as written (no client
// library normalises a path or a header), and what comes back is read with a
// bound on bytes and time, then split into responses. A second response on one
// connection is how a smuggled request shows itself.
import net from 'node:net';
import tls from 'node:tls';
import type { ProbeContext } from './context.ts';

export interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The body was cut short (the connection ended or a bound was hit first). */
  partial: boolean;
}

export interface Exchange {
  responses: ParsedResponse[];
  /** The server closed the connection. */
  closed: boolean;
  /** Why reading stopped early: 'timeout', 'too large', or a socket error. */
  cut?: string;
  /** A TLS or socket error before any byte came back (refused, reset, handshake alert). */
  error?: string;
}

export interface ExchangeOptions {
  /** After the first complete response, wait this long for another before closing (default 300 ms). */
  graceMs?: number;
  /** Plain TCP even for an https URL's port (to try plaintext on a TLS port). */
  plaintext?: boolean;
  /** TLS client certificate and key (PEM); absent: the plan's, at a gateway (see certificateFor). */
  cert?: { cert: string; key: string };
  /** Present no certificate at all, whatever the plan holds. */
  bare?: boolean;
  /** Connect from a source address of its own where the context has one (see ProbeContext.freshSource). */
  freshSource?: boolean;
  /** Connect from this local address. */
  source?: string;
}

/** The workload certificate to present at `url`: only to gateways, and only when the plan has one. */
export function certificateFor(ctx: ProbeContext, url: URL): { cert: string; key: string } | undefined {
  return ctx.plan.clientCert && ctx.plan.zones.some((z) => z.gateway && new URL(z.gateway).origin === url.origin) ? ctx.plan.clientCert : undefined;
}

export function connect(ctx: ProbeContext, url: URL, o: ExchangeOptions = {}): net.Socket {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  ctx.take(host);
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const localAddress = o.source ?? (o.freshSource ? ctx.freshSource(host) : undefined);
  if (url.protocol === 'https:' && !o.plaintext)
    return tls.connect({
      host,
      port,
      ...(localAddress ? { localAddress } : {}),
      servername: net.isIP(host) ? undefined : host,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      ...(o.bare ? {} : (o.cert ?? certificateFor(ctx, url) ?? {})),
    });
  return net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
}

/** Sends `data` on a new connection and reads back what comes, bounded. Never throws for network trouble. */
export function exchange(ctx: ProbeContext, url: string | URL, data: string | Buffer | Array<string | Buffer>, o: ExchangeOptions = {}): Promise<Exchange> {
  const u = typeof url === 'string' ? new URL(url) : url;
  const socket = connect(ctx, u, o);
  const parts = Array.isArray(data) ? data : [data];
  const max = ctx.limits.maxResponseBytes;
  const chunks: Buffer[] = [];
  let size = 0;
  return new Promise((resolve) => {
    let done = false;
    let grace: NodeJS.Timeout | undefined;
    const finish = (closed: boolean, cut?: string, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(grace);
      socket.destroy();
      const buf = Buffer.concat(chunks);
      resolve({ responses: parseResponses(buf), closed, ...(cut ? { cut } : {}), ...(error && buf.length === 0 ? { error } : {}) });
    };
    const timer = setTimeout(() => finish(false, 'timeout'), Math.min(ctx.limits.timeoutMs, Math.max(ctx.left(), 1)));
    const ready = u.protocol === 'https:' && !o.plaintext ? 'secureConnect' : 'connect';
    socket.once(ready, () => {
      for (const p of parts) socket.write(typeof p === 'string' ? Buffer.from(p, 'latin1') : p);
    });
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      if (size > max) return finish(false, 'too large');
      const parsed = parseResponses(Buffer.concat(chunks));
      if (parsed.length > 0 && !parsed[parsed.length - 1].partial) {
        clearTimeout(grace);
        if (parsed[parsed.length - 1].status === 101) return finish(false);
        grace = setTimeout(() => finish(false), o.graceMs ?? 300);
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish(true, undefined, e.code ?? e.message));
    socket.on('close', () => finish(true));
  });
}

/** Splits bytes into HTTP/1.x responses: Content-Length, chunked, or until close. */
export function parseResponses(buf: Buffer): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) break;
    const head = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0]);
    if (!m) break;
    const headers: Record<string, string> = {};
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const status = Number(m[1]);
    at = end + 4;
    if (status === 101 || (status >= 100 && status < 200)) {
      out.push({ status, headers, body: Buffer.alloc(0), partial: false });
      if (status === 101) break;
      continue;
    }
    if (status === 204 || status === 304) {
      out.push({ status, headers, body: Buffer.alloc(0), partial: false });
      continue;
    }
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const body: Buffer[] = [];
      let complete = false;
      for (;;) {
        const nl = buf.indexOf('\r\n', at, 'latin1');
        if (nl < 0) break;
        const n = parseInt(buf.subarray(at, nl).toString('latin1'), 16);
        if (!Number.isFinite(n)) break;
        if (n === 0) {
          const trailerEnd = buf.indexOf('\r\n\r\n', nl, 'latin1');
          if (trailerEnd === nl) at = nl + 4;
          else if (buf.subarray(nl + 2, nl + 4).toString('latin1') === '\r\n') at = nl + 4;
          else if (trailerEnd >= 0) at = trailerEnd + 4;
          else break;
          complete = true;
          break;
        }
        if (nl + 2 + n + 2 > buf.length) break;
        body.push(buf.subarray(nl + 2, nl + 2 + n));
        at = nl + 2 + n + 2;
      }
      out.push({ status, headers, body: Buffer.concat(body), partial: !complete });
      if (!complete) break;
      continue;
    }
    const cl = headers['content-length'];
    if (cl !== undefined && /^\d+$/.test(cl)) {
      const n = Number(cl);
      const body = buf.subarray(at, Math.min(buf.length, at + n));
      out.push({ status, headers, body, partial: body.length < n });
      at += n;
      continue;
    }
    // no framing: the body runs to the end of the connection
    out.push({ status, headers, body: buf.subarray(at), partial: true });
    break;
  }
  return out;
}

/** A GET (or other method) request as raw bytes; `target` goes out verbatim. */
export function rawRequest(method: string, target: string, host: string, headers: string[] = [], body?: string): string {
  const lines = [`${method} ${target} HTTP/1.1`, `Host: ${host}`, ...headers];
  if (body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
  return lines.join('\r\n') + '\r\n\r\n' + (body ?? '');
}

/** How an exchange reads in a report: statuses, or why nothing came. */
export function describe(x: Exchange): string {
  if (x.error) return `no HTTP answer (${x.error})`;
  if (x.responses.length === 0) return x.cut ? `no HTTP answer (${x.cut})` : 'no HTTP answer (connection closed)';
  const s = x.responses.map((r) => String(r.status)).join(', ');
  return `${x.responses.length === 1 ? 'answered' : `${x.responses.length} responses`} ${s}${x.closed ? ', connection closed' : ''}${x.cut ? ` (${x.cut})` : ''}`;
}
