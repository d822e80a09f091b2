// HTTP/2 written by hand: the frames and header block go out exactly as
// built (Node's client refuses connection-specific headers, CR/LF in values
// and a body longer than its content-length, which is what a desync attempt
// sends). Only what the server answers on stream 1 is read back: its status
// (from the first header of the response block) or its refusal (RST_STREAM,
// GOAWAY).
import tls from 'node:tls';
import net from 'node:net';
import type { ProbeContext } from './context.ts';
import { certificateFor } from './http1.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const DATA = 0x0;
const HEADERS = 0x1;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const GOAWAY = 0x7;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function integer(value: number, bits: number, first = 0): Buffer {
  const max = (1 << bits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A header block of literal fields without indexing, names and values raw (no Huffman): any bytes go out as given. */
export function headerBlock(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(
    fields.flatMap(([name, value]) => {
      const n = Buffer.from(name, 'latin1');
      const v = Buffer.from(value, 'latin1');
      return [Buffer.from([0x00]), integer(n.length, 7), n, integer(v.length, 7), v];
    }),
  );
}

/** The digits of a Huffman-coded status (RFC 7541 Appendix B: '0'-'2' are 5 bits, '3'-'9' 6 bits). */
function huffmanDigits(bytes: Buffer): string | undefined {
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  let out = '';
  let i = 0;
  while (out.length < 3 && i < bits.length) {
    const five = bits.slice(i, i + 5);
    if (/^000(00|01|10)$/.test(five)) {
      out += String(parseInt(five, 2));
      i += 5;
      continue;
    }
    const six = bits.slice(i, i + 6);
    const d = parseInt(six, 2) - 0b011001 + 3;
    if (six.length === 6 && d >= 3 && d <= 9) {
      out += String(d);
      i += 6;
      continue;
    }
    return undefined;
  }
  return out.length === 3 ? out : undefined;
}

const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/** The :status of a response header block, when it is the first field (as servers send it). */
export function statusOf(block: Buffer): number | undefined {
  let at = 0;
  while (at < block.length && (block[at] & 0xe0) === 0x20) at++; // dynamic table size updates (single-byte forms)
  const b = block[at];
  if (b === undefined) return undefined;
  if (b & 0x80) return STATIC_STATUS[b & 0x7f];
  // a literal whose name is static entry 8 (:status), with or without indexing
  const index = (b & 0xc0) === 0x40 ? b & 0x3f : b & 0x0f;
  if (index < 8 || index > 14) return undefined;
  const len = block[at + 1] & 0x7f;
  const raw = block.subarray(at + 2, at + 2 + len);
  const text = block[at + 1] & 0x80 ? huffmanDigits(raw) : raw.toString('latin1');
  return text && /^\d{3}$/.test(text) ? Number(text) : undefined;
}

export type RawH2Answer = { status: number; body: Buffer } | { refused: string } | { error: string; noH2?: boolean };

/** One request on stream 1 of a new connection: `headers` as given, then `body` (if any) in one DATA frame. */
export function rawH2(ctx: ProbeContext, origin: string, headers: Array<[string, string]>, body?: string): Promise<RawH2Answer> {
  const u = new URL(origin);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  ctx.take(host);
  const localAddress = ctx.freshSource(host);
  return new Promise((resolve) => {
    const socket = tls.connect({
      host,
      port: Number(u.port || 443),
      servername: net.isIP(host) ? undefined : host,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      ...(localAddress ? { localAddress } : {}),
      ...(certificateFor(ctx, u) ?? {}),
    });
    let buf = Buffer.alloc(0);
    let block: Buffer[] = [];
    let status: number | undefined;
    const received: Buffer[] = [];
    let done = false;
    const finish = (a: RawH2Answer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(a);
    };
    const answered = () => (status === undefined ? undefined : { status, body: Buffer.concat(received) });
    const timer = setTimeout(() => finish(answered() ?? { error: 'timeout' }), Math.min(ctx.limits.timeoutMs, Math.max(ctx.left(), 1)));
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== 'h2') return finish({ error: `ALPN chose ${socket.alpnProtocol || 'nothing'}`, noH2: true });
      const flags = END_HEADERS | (body === undefined ? END_STREAM : 0);
      // one write: the server reads the headers and the body together, as a desync needs
      socket.write(
        Buffer.concat([
          PREFACE,
          frame(SETTINGS, 0, 0),
          frame(HEADERS, flags, 1, headerBlock(headers)),
          ...(body === undefined ? [] : [frame(DATA, END_STREAM, 1, Buffer.from(body, 'latin1'))]),
        ]),
      );
    });
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > ctx.limits.maxResponseBytes) return finish({ error: 'too large' });
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3];
        const flags = buf[4];
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && !(flags & ACK)) socket.write(frame(SETTINGS, ACK, 0));
        if (type === GOAWAY) return finish(answered() ?? { refused: `GOAWAY (error ${payload.length >= 8 ? payload.readUInt32BE(4) : '?'})` });
        if (stream !== 1) continue;
        if (type === RST_STREAM) return finish(answered() ?? { refused: `RST_STREAM (error ${payload.length >= 4 ? payload.readUInt32BE(0) : '?'})` });
        if (type === DATA && status !== undefined) {
          received.push(flags & 0x8 ? payload.subarray(1, payload.length - payload[0]) : payload);
          if (flags & END_STREAM) return finish(answered()!);
          continue;
        }
        if (type === HEADERS || type === 0x9 /* CONTINUATION */) {
          // skip padding and priority fields of a HEADERS frame
          let p = payload;
          if (type === HEADERS && flags & 0x8) p = p.subarray(1, p.length - payload[0]);
          if (type === HEADERS && flags & 0x20) p = p.subarray(5);
          block.push(p);
          if (flags & END_HEADERS) {
            const first = status === undefined;
            if (first) status = statusOf(Buffer.concat(block));
            block = [];
            if (first && status === undefined) return finish({ error: 'a response whose status could not be read' });
            // the response ends here (no body), or its trailers do
            if (flags & END_STREAM || !first) return finish(answered()!);
          }
        }
      }
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish({ error: e.code ?? e.message }));
    socket.on('close', () => finish(answered() ?? { refused: 'connection closed' }));
  });
}
