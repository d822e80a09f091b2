// A hand-written TLS ClientHello and a ServerHello reader. The probe asks the
// server what it would agree to, whatever the local OpenSSL's own policy
// allows a client to offer, and whether or not the server then wants a client
// certificate (an mTLS server still answers the hello).
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { ProbeContext } from './context.ts';

export const TLS10 = 0x0301;
export const TLS11 = 0x0302;
export const TLS12 = 0x0303;

/** Suites no server should agree to: no forward secrecy, SHA-1 CBC, 3DES, RC4, NULL, export. */
export const WEAK_SUITES: Record<number, string> = {
  0x0001: 'NULL-MD5',
  0x0002: 'NULL-SHA',
  0x0003: 'EXP-RC4-MD5',
  0x0004: 'RC4-MD5',
  0x0005: 'RC4-SHA',
  0x000a: 'DES-CBC3-SHA',
  0x002f: 'AES128-SHA',
  0x0035: 'AES256-SHA',
  0x003c: 'AES128-SHA256',
  0x003d: 'AES256-SHA256',
  0x009c: 'AES128-GCM-SHA256',
  0x009d: 'AES256-GCM-SHA384',
  0x0033: 'DHE-RSA-AES128-SHA',
  0x0039: 'DHE-RSA-AES256-SHA',
  0xc009: 'ECDHE-ECDSA-AES128-SHA',
  0xc00a: 'ECDHE-ECDSA-AES256-SHA',
  0xc013: 'ECDHE-RSA-AES128-SHA',
  0xc014: 'ECDHE-RSA-AES256-SHA',
  0xc012: 'ECDHE-RSA-DES-CBC3-SHA',
};

/** What a TLS 1.0/1.1 server would need: CBC suites with and without forward secrecy. */
export const LEGACY_SUITES = [0xc009, 0xc00a, 0xc013, 0xc014, 0x0033, 0x0039, 0x002f, 0x0035, 0x000a];

const u16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const u24 = (n: number) => Buffer.from([(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
const ext = (type: number, data: Buffer) => Buffer.concat([u16(type), u16(data.length), data]);
const list16 = (items: number[]) => {
  const body = Buffer.concat(items.map(u16));
  return Buffer.concat([u16(body.length), body]);
};

export function clientHello(version: number, suites: number[], serverName?: string): Buffer {
  const exts = [
    ext(0x000a, list16([0x001d, 0x0017, 0x0018])), // supported_groups: x25519, P-256, P-384
    ext(0x000b, Buffer.from([1, 0])), // ec_point_formats: uncompressed
    ext(0x000d, list16([0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201, 0x0203])),
    ext(0xff01, Buffer.from([0])), // renegotiation_info (empty)
  ];
  if (serverName) {
    const name = Buffer.from(serverName, 'ascii');
    const entry = Buffer.concat([Buffer.from([0]), u16(name.length), name]);
    exts.push(ext(0x0000, Buffer.concat([u16(entry.length), entry])));
  }
  const extensions = Buffer.concat(exts);
  const suiteBytes = Buffer.concat(suites.map(u16));
  const body = Buffer.concat([
    u16(version),
    randomBytes(32),
    Buffer.from([0]), // no session id
    u16(suiteBytes.length),
    suiteBytes,
    Buffer.from([1, 0]), // compression: null
    u16(extensions.length),
    extensions,
  ]);
  const handshake = Buffer.concat([Buffer.from([1]), u24(body.length), body]);
  return Buffer.concat([Buffer.from([22]), u16(TLS10), u16(handshake.length), handshake]);
}

export type HelloAnswer =
  | { agreed: true; version: number; suite: number }
  | { agreed: false; reason: string };

const ALERTS: Record<number, string> = { 40: 'handshake_failure', 70: 'protocol_version', 71: 'insufficient_security', 47: 'illegal_parameter', 50: 'decode_error', 80: 'internal_error', 112: 'unrecognized_name' };

/** Sends one ClientHello and reads the ServerHello (or the alert). */
export function hello(ctx: ProbeContext, host: string, port: number, version: number, suites: number[]): Promise<HelloAnswer> {
  ctx.take(host);
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (a: HelloAnswer) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(a);
    };
    const timer = setTimeout(() => finish({ agreed: false, reason: 'timeout' }), Math.min(ctx.limits.timeoutMs, Math.max(ctx.left(), 1)));
    socket.once('connect', () => socket.write(clientHello(version, suites, net.isIP(host) ? undefined : host)));
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 64 * 1024) return finish({ agreed: false, reason: 'oversized answer' });
      if (buf.length < 5) return;
      const type = buf[0];
      const len = buf.readUInt16BE(3);
      if (type === 21 && buf.length >= 7) return finish({ agreed: false, reason: `alert ${ALERTS[buf[6]] ?? buf[6]}` });
      if (type !== 22) return finish({ agreed: false, reason: 'not TLS' });
      if (buf.length < 5 + Math.min(len, 44)) return;
      const hs = buf.subarray(5);
      if (hs[0] !== 2) return finish({ agreed: false, reason: `unexpected handshake message ${hs[0]}` });
      const v = hs.readUInt16BE(4);
      const sidLen = hs[38];
      if (hs.length < 39 + sidLen + 2) return;
      finish({ agreed: true, version: v, suite: hs.readUInt16BE(39 + sidLen) });
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish({ agreed: false, reason: e.code ?? e.message }));
    socket.on('close', () => finish({ agreed: false, reason: 'connection closed' }));
  });
}

export const versionName = (v: number) => ({ [TLS10]: 'TLS 1.0', [TLS11]: 'TLS 1.1', [TLS12]: 'TLS 1.2', 0x0304: 'TLS 1.3' })[v] ?? `0x${v.toString(16)}`;
