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

/** An HPACK integer with an n-bit prefix at `i` (RFC 7541 §5.1): its value and where the next field starts. */
function readInt(buf: Buffer, i: number, prefixBits: number): [number, number] {
  const max = (1 << prefixBits) - 1;
  let value = buf[i] & max;
  i++;
  if (value < max) return [value, i];
  for (let m = 0; i < buf.length; m += 7) {
    const b = buf[i++];
    value += (b & 0x7f) * 2 ** m;
    if ((b & 0x80) === 0) return [value, i];
  }
  return [value, i];
}

/** Huffman-decode a string of digits only (all a :status holds; RFC 7541 Appendix B: '0'-'2' are 5 bits, '3'-'9' 6 bits). */
function huffmanDigits(bytes: Buffer): string | undefined {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  let out = '';
  let i = 0;
  while (i < bits.length) {
    const rest = bits.slice(i);
    if (rest.length < 8 && /^1*$/.test(rest)) break; // EOS padding
    const five = rest.slice(0, 5);
    if (five === '00000' || five === '00001' || five === '00010') {
      out += String(parseInt(five, 2));
      i += 5;
      continue;
    }
    const six = parseInt(rest.slice(0, 6), 2);
    if (rest.length >= 6 && six >= 0x19 && six <= 0x1f) {
      out += String(six - 0x19 + 3);
      i += 6;
      continue;
    }
    return undefined;
  }
  return out;
}

const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/** The :status of a response header block, when it is the first field (as servers send it). */
export function statusOf(block: Buffer): number | undefined {
  let i = 0;
  while (i < block.length && (block[i] & 0xe0) === 0x20) i = readInt(block, i, 5)[1]; // dynamic table size updates
  if (i >= block.length) return undefined;
  const b = block[i];
  let index: number;
  if (b & 0x80) return STATIC_STATUS[readInt(block, i, 7)[0]];
  // a literal whose name is static entry 8-14 (:status), with or without indexing
  if ((b & 0xc0) === 0x40) [index, i] = readInt(block, i, 6);
  else [index, i] = readInt(block, i, 4);
  if (!(index in STATIC_STATUS) || i >= block.length) return undefined;
  const huffman = (block[i] & 0x80) !== 0;
  let length: number;
  [length, i] = readInt(block, i, 7);
  const raw = block.subarray(i, i + length);
  const text = huffman ? huffmanDigits(raw) : raw.toString('latin1');
  return text !== undefined && /^\d{3}$/.test(text) ? Number(text) : undefined;
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
