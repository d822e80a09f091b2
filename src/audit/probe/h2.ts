// One HTTP/2 request on its own session, bounded in time and bytes. A target
// that does not offer h2 in ALPN is reported as such, not as a failure.
import http2 from 'node:http2';
import type { ProbeContext } from './context.ts';
import { certificateFor } from './http1.ts';

export type H2Answer = { status: number; headers: Record<string, string>; body: Buffer } | { error: string; noH2?: boolean };

export function h2Request(ctx: ProbeContext, origin: string, headers: Record<string, string>, body?: string): Promise<H2Answer> {
  const u = new URL(origin);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  ctx.take(host);
  const localAddress = ctx.freshSource(host);
  return new Promise((resolve) => {
    let done = false;
    const session = http2.connect(origin, {
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      maxHeaderListPairs: 256,
      settings: { maxHeaderListSize: 64 * 1024 },
      maxSendHeaderBlockLength: 64 * 1024,
      ...(certificateFor(ctx, u) ?? {}),
      ...(localAddress ? { localAddress } : {}),
    } as http2.SecureClientSessionOptions);
    const finish = (a: H2Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve(a);
    };
    const timer = setTimeout(() => finish({ error: 'timeout' }), Math.min(ctx.limits.timeoutMs, Math.max(ctx.left(), 1)));
    session.on('error', (e: NodeJS.ErrnoException) => finish({ error: e.code ?? e.message }));
    session.on('connect', (_s, socket) => {
      const alpn = (socket as import('node:tls').TLSSocket).alpnProtocol;
      if (alpn !== 'h2') return finish({ error: `ALPN chose ${alpn || 'nothing'}`, noH2: true });
      let req: http2.ClientHttp2Stream;
      try {
        req = session.request(headers, { endStream: body === undefined });
      } catch (e) {
        return finish({ error: (e as Error).message });
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      let head: Record<string, string> = {};
      req.on('response', (h) => {
        status = Number(h[':status']);
        head = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, String(v)]));
      });
      req.on('data', (d: Buffer) => {
        size += d.length;
        if (size > ctx.limits.maxResponseBytes) return finish({ status, headers: head, body: Buffer.concat(chunks) });
        chunks.push(d);
      });
      req.on('end', () => finish(status ? { status, headers: head, body: Buffer.concat(chunks) } : { error: 'stream ended without a response' }));
      req.on('error', (e: NodeJS.ErrnoException) => finish({ error: e.code ?? e.message }));
      req.on('close', () => finish(status ? { status, headers: head, body: Buffer.concat(chunks) } : { error: `stream closed (${req.rstCode})` }));
      if (body !== undefined) req.end(body);
    });
  });
}
