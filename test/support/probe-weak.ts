// A deliberately weak deployment for `gatehouse probe` to find fault with: a
// bare Node proxy (lenient HTTP parser, TLS 1.0 and RSA key exchange allowed,
// a self-signed 1024-bit certificate, no authentication, no limits, every
// header forwarded, upgrades tunnelled) in front of an echo upstream; a fake
// authority that signs tokens; services reachable without a client
// certificate and in plaintext; and an undeclared listener with the
// deployment's certificate. Plus hostile targets: one that stalls, one that
// answers with huge headers and an endless body.
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { webcrypto, createPrivateKey } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import type { ProbePlan } from '../../src/audit/probe/index.ts';
import { frame } from '../../src/audit/probe/h2-raw.ts';

x509.cryptoProvider.set(webcrypto as never);

const WEAK_TLS = { minVersion: 'TLSv1' as const, ciphers: 'ALL:@SECLEVEL=0' };

/** A self-signed RSA certificate for 127.0.0.1 (1024 bits: too weak on purpose). */
export async function selfSigned(name: string, bits = 1024): Promise<{ cert: string; key: string }> {
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: bits };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'ip', value: '127.0.0.1' }])],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
  return { cert: cert.toString('pem'), key };
}

type Closable = { close(): unknown };

function listen(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

export interface Weak {
  plan: ProbePlan;
  close(): Promise<void>;
}

export async function startWeak(): Promise<Weak> {
  const servers: Closable[] = [];
  const sockets = new Set<net.Socket>();
  const track = <S extends net.Server>(s: S) => {
    s.on('connection', (c: net.Socket) => {
      sockets.add(c);
      c.on('close', () => sockets.delete(c));
    });
    servers.push(s);
    return s;
  };
  const material = await selfSigned('weak.test');
  const otherCa = await selfSigned('the CA the deployment declares', 2048);

  // the upstream: reflects what it received; accepts any WebSocket upgrade
  const upstream = track(
    http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({ method: req.method, path: req.url, headers: req.headers });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      });
    }),
  );
  upstream.on('upgrade', (_req, socket: net.Socket) => {
    socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  });
  const upstreamPort = await listen(upstream);

  // the bare proxy: forwards everything, believes everything (HTTP/1.1 and HTTP/2)
  const forward = (req: http.IncomingMessage | http2.Http2ServerRequest, anyRes: http.ServerResponse | http2.Http2ServerResponse) => {
    const res = anyRes as http.ServerResponse;
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !k.startsWith(':')));
    let up: http.ClientRequest;
    try {
      up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, Object.fromEntries(Object.entries(r.headers).filter(([k]) => !['connection', 'transfer-encoding', 'keep-alive'].includes(k))));
        r.pipe(res as NodeJS.WritableStream);
      });
    } catch {
      // a header name Node will not send (the lenient parser let it in)
      res.writeHead(502);
      res.end();
      return;
    }
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    (req as NodeJS.ReadableStream).pipe(up);
  };
  const gateway = track(http2.createSecureServer({ ...material, ...WEAK_TLS, allowHTTP1: true }, forward));
  (gateway as unknown as { insecureHTTPParser: boolean }).insecureHTTPParser = true;
  gateway.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const up = net.connect(upstreamPort, '127.0.0.1', () => {
      up.write(`${req.method} ${req.url} HTTP/1.1\r\n${Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`);
      up.write(head);
      up.pipe(socket).pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  const gatewayPort = await listen(gateway);

  // a hand-rolled HTTP/1.1 front that trusts the first Content-Length and
  // nothing else (the classic desync): Node's own parser refuses the rest of
  // the framing tricks even when lenient, so this is the weak framing target
  const naive = track(
    tls.createServer({ ...material, ...WEAK_TLS, ALPNProtocols: ['h2', 'http/1.1'] }, (socket) => {
      let buf = Buffer.alloc(0);
      socket.on('error', () => {});
      if (socket.alpnProtocol === 'h2') return naiveH2(socket);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const crlf = buf.indexOf('\r\n\r\n');
          const lf = buf.indexOf('\n\n');
          const end = crlf >= 0 && (lf < 0 || crlf < lf) ? crlf + 4 : lf >= 0 ? lf + 2 : -1;
          if (end < 0) return;
          const cl = Number(/content-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? 0);
          if (buf.length < end + cl) return;
          buf = buf.subarray(end + cl);
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        }
      });
    }),
  );
  const naivePort = await listen(naive);

  // an undeclared listener next to the gateway, with the deployment's certificate
  const stray = track(tls.createServer({ ...material, ...WEAK_TLS }, (s) => s.end()));
  let strayPort = 0;
  for (let p = gatewayPort + 1; p <= gatewayPort + 8 && !strayPort; p++) strayPort = await listen(stray, p).catch(() => 0);

  // the authority: publishes an Ed25519 key and signs a token for any client
  const { publicKey, privateKey } = await generateKeyPair('EdDSA');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'weak-1', alg: 'EdDSA', use: 'sig' };
  let authorityUrl = '';
  const authority = track(
    https.createServer({ ...material, ...WEAK_TLS }, async (req, res) => {
      req.resume();
      const json = (v: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (req.url === '/.well-known/openid-configuration') return json({ issuer: authorityUrl, token_endpoint: `${authorityUrl}/token`, jwks_uri: `${authorityUrl}/jwks` });
      if (req.url === '/jwks') return json({ keys: [jwk] });
      if (req.url === '/token' && req.method === 'POST') {
        const token = await new SignJWT({ scope: 'read', client_id: 'weak-client' })
          .setProtectedHeader({ alg: 'EdDSA', kid: 'weak-1', typ: 'at+jwt' })
          .setIssuer(authorityUrl)
          .setAudience('urn:weak')
          .setSubject('weak-client')
          .setIssuedAt()
          .setExpirationTime('5m')
          .sign(privateKey);
        return json({ access_token: token, token_type: 'Bearer', expires_in: 300 });
      }
      res.writeHead(404);
      res.end();
    }),
  );
  authorityUrl = `https://127.0.0.1:${await listen(authority)}`;

  // services: one over TLS that wants no client certificate, one in plaintext
  const serviceTls = track(https.createServer({ ...material, ...WEAK_TLS }, (_req, res) => res.end('service data')));
  const servicePlain = track(http.createServer((_req, res) => res.end('service data')));
  const [tlsPort, plainPort] = [await listen(serviceTls), await listen(servicePlain)];

  const client = { client_id: 'weak-client', client_secret: 'weak-secret', grant_types: ['client_credentials'], scope: 'read' };
  const plan: ProbePlan = {
    trustDomain: 'weak.test',
    caPem: otherCa.cert,
    zones: [
      {
        name: 'edge',
        gateway: `https://127.0.0.1:${gatewayPort}`,
        authority: authorityUrl,
        routes: [
          { name: 'api', path: '/api/orders', methods: ['GET', 'POST'], protected: true, jwt: true, scopes: ['read'] },
          { name: 'catalog', path: '/api/catalog', methods: ['GET'], protected: false, jwt: false, scopes: [], rateLimit: { limit: 5, burst: 2 } },
        ],
      },
      { name: 'inner', authority: authorityUrl, routes: [] },
      { name: 'naive', gateway: `https://127.0.0.1:${naivePort}`, routes: [] },
    ],
    services: [
      { name: 'orders', zone: 'inner', url: `https://127.0.0.1:${tlsPort}` },
      { name: 'legacy', zone: 'inner', url: `http://127.0.0.1:${plainPort}` },
    ],
    declared: [],
    clients: { edge: client, inner: client },
  };
  return {
    plan,
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => (s as net.Server).close(() => r(undefined)))));
    },
  };
}

/**
 * An HTTP/2 front that checks nothing: after the preface it answers every
 * HEADERS frame with 200, whatever the headers, whatever the DATA after them
 * (the HTTP/2 desync checks must be able to fail; Node's own server refuses).
 */
function naiveH2(socket: tls.TLSSocket): void {
  let buf = Buffer.alloc(0);
  let preface = false;
  socket.write(frame(4, 0, 0));
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    if (!preface) {
      if (buf.length < 24) return;
      buf = buf.subarray(24);
      preface = true;
    }
    while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
      const len = buf.readUIntBE(0, 3);
      const [type, flags] = [buf[3], buf[4]];
      const stream = buf.readUInt32BE(5) & 0x7fffffff;
      buf = buf.subarray(9 + len);
      if (type === 4 && !(flags & 1)) socket.write(frame(4, 1, 0));
      if (type === 1 && flags & 4) socket.write(frame(1, 0x4 | 0x1, stream, Buffer.from([0x88]))); // :status 200, END_HEADERS|END_STREAM
    }
  });
}

/** Targets that misbehave at the transport: one stalls forever, one floods headers and an endless body. */
export async function startHostile(): Promise<{ stall: string; flood: string; refused: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const stall = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  const flood = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\n');
      const header = `X-Flood: ${'a'.repeat(8_000)}\r\n`;
      const pump = () => {
        while (!s.destroyed && s.write(header));
        if (!s.destroyed) s.once('drain', pump);
      };
      pump();
    });
  });
  const closed = net.createServer();
  const [a, b, c] = [await listen(stall), await listen(flood), await listen(closed)];
  await new Promise((r) => closed.close(r));
  return {
    stall: `http://127.0.0.1:${a}`,
    flood: `http://127.0.0.1:${b}`,
    refused: `https://127.0.0.1:${c}`,
    async close() {
      for (const s of sockets) s.destroy();
      await Promise.all([stall, flood].map((s) => new Promise((r) => s.close(r))));
    },
  };
}
