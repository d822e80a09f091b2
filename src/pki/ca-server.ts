// `gatehouse ca serve`: the CA over HTTPS.
//
//   POST /v1/bootstrap   Authorization: Bearer <join token>; {service, csr, ttlSeconds?}
//   POST /v1/renew       mTLS with the current certificate; {csr, ttlSeconds?}
//   GET  /v1/bundle      the trust bundle (PEM)
//   GET  /v1/revocations {serials, refreshSeconds, generatedAt}
//   GET  /healthz
//
// The server presents an X509-SVID `spiffe://<td>/ca` from the control issuer,
// so workloads pin the same bundle they use for every peer. Every refusal is a
// problem+json answer with a request id, a counter and a security log line;
// nothing secret (tokens, keys, CSRs) is logged or echoed.
import https from 'node:https';
import { tlsPolicy } from '../shared/tls-policy.ts';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../shared/node-http.ts';
import type { TLSSocket } from 'node:tls';
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import { Registry, Counter } from 'prom-client';
import type { Topology } from '../topology/schema.ts';
import { parseListen } from '../topology/schema.ts';
import type { Clock } from '../shared/clock.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { openCa, type Ca, type CaPolicy } from './open-ca.ts';
import { issueCertificate, workloadKnown, type IssuedCertificate } from './issue-certificate.ts';
import { newKeyAndCsr } from './lib/workload-key.ts';
import { lookupToken, TOKEN_PREFIX } from './lib/join-tokens.ts';
import type { K8sAttestor } from './create-k8s-attestor.ts';
import type { EventFields } from '../monitor/event.ts';
import { verifySvid } from './verify-svid.ts';
import { caSpiffeId } from './spiffe-id.ts';
import { GatehouseError } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { readBody } from '../shared/body.ts';
import { listen } from '../shared/listen.ts';
import { REVOCATION_REFRESH_SECONDS } from './revoke-certificate.ts';
import { ancestorsOf, pruneLineages } from './lib/lineage.ts';

export interface StartCaServerOptions {
  topology: Topology;
  stateDir: string;
  /** host:port; default 127.0.0.1:0. */
  listen?: string;
  /** Optional loopback admin listener serving /metrics and /healthz; absent: none. */
  adminListen?: string;
  clock?: Clock;
  policy?: Partial<CaPolicy>;
  logger?: Logger;
  /** Kubernetes projected service-account tokens accepted at /v1/bootstrap besides join tokens; absent: join tokens only. */
  k8sAttestor?: K8sAttestor;
  /**
   * Where refusals go as security events (createEventShipper to the control plane, with
   * identity() below); absent: the log line and the counter only.
   */
  events?: { emit(fields: EventFields): void };
}

export interface CaServer {
  /** https://host:port */
  url: string;
  adminUrl?: string;
  bundleFile: string;
  bundlePem: string;
  trustDomain: string;
  registry: Registry;
  ca: Ca;
  /** The server's own certificate (spiffe://<td>/ca), renewed daily: what it ships its events to the control plane with. */
  identity(): { spiffeId: string; certPem: string; keyPem: string };
  close(): Promise<void>;
}

const MAX_BODY = 16 * 1024;
const SERVER_CERT_TTL = 24 * 3600;

export async function startCaServer(options: StartCaServerOptions): Promise<CaServer> {
  const ca = await openCa({ stateDir: options.stateDir, topology: options.topology, clock: options.clock, policy: options.policy });
  const log = (options.logger ?? createLogger({ name: 'ca' })).child({ component: 'ca' });
  const at = parseListen(options.listen ?? '127.0.0.1:0');
  if (typeof at === 'string') throw new GatehouseError('bad_request', `listen: ${at}`);

  const registry = new Registry();
  const issued = new Counter({
    name: 'gatehouse_pki_certificates_issued_total',
    help: 'Workload certificates issued, by zone and path (bootstrap, renew)',
    labelNames: ['zone', 'via'] as const,
    registers: [registry],
  });
  const refused = new Counter({
    name: 'gatehouse_pki_requests_refused_total',
    help: 'CA requests refused, by reason code',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const handshakeFailures = new Counter({
    name: 'gatehouse_pki_tls_handshake_failures_total',
    help: 'TLS handshakes with the CA that failed',
    registers: [registry],
  });

  const serverIdentity = async () => {
    const ip = isIP(at.host) ? [at.host] : [];
    const dns = isIP(at.host) ? ['localhost'] : [at.host];
    const { keyPem, certPem } = await issueServer(ca, { dns, ip });
    return { key: keyPem, cert: certPem };
  };
  const initial = await serverIdentity();
  let current = initial;
  const server = https.createServer({
    ...initial,
    ca: ca.bundlePem,
    requestCert: true,
    // The handshake accepts clients without a certificate (bootstrap); /v1/renew
    // demands a verified one and checks it as an X509-SVID.
    rejectUnauthorized: false,
    ...tlsPolicy(),
    headersTimeout: 10_000,
    requestTimeout: 30_000,
    keepAliveTimeout: 5_000,
  });
  server.maxHeadersCount = 64;
  server.on('tlsClientError', () => handshakeFailures.inc());
  const rotate = setInterval(() => {
    serverIdentity().then(
      (id) => {
        server.setSecureContext({ ...id, ca: ca.bundlePem, ...tlsPolicy() });
        current = id;
      },
      (error: unknown) => log.error({ err: error }, 'cannot renew the CA server certificate'),
    );
  }, (SERVER_CERT_TTL / 2) * 1000);
  rotate.unref();
  // Lineages whose every certificate expired can renew nothing: their records go.
  const prune = () => {
    try {
      pruneLineages(ca.paths, ca.clock.now());
    } catch (error) {
      log.error({ err: error }, 'cannot prune expired lineages');
    }
  };
  prune();
  const pruning = setInterval(prune, 3600_000);
  pruning.unref();

  server.on('request', (req, res) => {
    const requestId = randomUUID();
    handle(req, requestId).then(
      (answer) => send(res, requestId, answer.status, answer.body, answer.type),
      (error: unknown) => {
        const e = error instanceof GatehouseError ? error : new GatehouseError('internal', 'the CA failed to handle the request', { cause: error });
        refused.inc({ reason: e.code });
        const fields = {
          requestId,
          code: e.code,
          method: req.method,
          path: pathOf(req.url),
          peer: req.socket.remoteAddress,
          cause: e.cause instanceof Error ? e.cause.message : undefined,
        };
        if (e.status >= 500) log.error({ ...fields, err: e.cause }, 'ca request failed');
        else {
          log.warn({ event: 'security', kind: 'ca_request_refused', ...fields }, e.message);
          // a refused bootstrap or renewal is what a stolen, forged or replayed credential looks like: the monitor sees it
          options.events?.emit({ type: 'request_refused', code: e.code, status: e.status, method: req.method, path: fields.path, source: fields.peer, detail: e.message });
        }
        writeProblem(res, e, requestId);
      },
    );
  });

  async function handle(req: IncomingMessage, requestId: string): Promise<{ status: number; body: unknown; type?: string }> {
    const p = pathOf(req.url);
    const route = `${req.method} ${p}`;
    switch (route) {
      case 'GET /healthz':
        return { status: 200, body: { status: 'ok' } };
      case 'GET /v1/bundle':
        return { status: 200, body: ca.bundlePem, type: 'application/pem-certificate-chain' };
      case 'GET /v1/revocations':
        return {
          status: 200,
          body: {
            serials: [...ca.revocations.serials()],
            refreshSeconds: REVOCATION_REFRESH_SECONDS,
            generatedAt: new Date(ca.clock.now()).toISOString(),
          },
        };
      case 'POST /v1/bootstrap': {
        const body = await readJson(req);
        const auth = req.headers.authorization ?? '';
        const m = /^Bearer ([^\s]+)$/.exec(auth);
        if (!m) throw new GatehouseError('unauthorized', 'a join token or a service account token is required (Authorization: Bearer)');
        if (typeof body.service !== 'string') throw new GatehouseError('bad_request', 'service is required');
        if (m[1].startsWith(TOKEN_PREFIX) || !options.k8sAttestor) {
          const pending = lookupToken(ca.paths.tokens, m[1], body.service, ca.clock.now());
          const cert = await issueCertificate(ca, { csr: body.csr as string, spiffeId: pending.record.spiffeId, ttlSeconds: ttlOf(body) });
          pending.consume(); // after every check passed: a refused attempt leaves the token usable
          return issuedAnswer(cert, 'bootstrap', requestId);
        }
        // a projected service-account token: every replica and restart presents its own
        const who = await options.k8sAttestor.attest(m[1], body.service, ca.clock.now());
        const cert = await issueCertificate(ca, { csr: body.csr as string, spiffeId: who.spiffeId, ttlSeconds: ttlOf(body) });
        return issuedAnswer(cert, 'k8s_psat', requestId, {
          namespace: who.namespace,
          serviceAccount: who.serviceAccount,
          pod: who.pod.name,
          podUid: who.pod.uid,
          ...(who.node ? { node: who.node } : {}),
          ...(who.tokenId ? { tokenId: who.tokenId } : {}),
        });
      }
      case 'POST /v1/renew': {
        const socket = req.socket as TLSSocket;
        const peer = socket.getPeerX509Certificate?.();
        if (!peer) throw new GatehouseError('client_certificate_required', 'renewal needs the current certificate over mTLS');
        if (!socket.authorized)
          throw new GatehouseError('certificate_rejected', 'the client certificate is not from this trust domain', {
            cause: new Error(String(socket.authorizationError)),
          });
        const decision = verifySvid(peer.raw, {
          trustDomain: ca.trustDomain,
          now: ca.clock.now(),
          maxLifetimeSeconds: ca.policy.maxTtlSeconds,
          purpose: 'client',
          isRevoked: (s) => revokedInLineage(s) !== undefined,
        });
        if (!decision.ok)
          throw new GatehouseError(decision.reason === 'revoked' ? 'certificate_revoked' : 'certificate_rejected', 'the client certificate is refused', {
            cause: new Error(decision.reason),
          });
        if (decision.id.kind === 'ca' || !workloadKnown(ca, decision.id))
          throw new GatehouseError('unknown_workload', 'the topology has no such workload');
        const body = await readJson(req);
        const cert = await issueCertificate(ca, { csr: body.csr as string, spiffeId: decision.id.uri, ttlSeconds: ttlOf(body), parent: decision.serial });
        // Re-checked after the new certificate is recorded: a revocation that
        // ran meanwhile either sees the record or is seen here (revoke-certificate.ts).
        const revokedAncestor = revokedInLineage(decision.serial);
        if (revokedAncestor !== undefined) {
          ca.revocations.add(cert.serial, new Date(ca.clock.now()), `descendant of ${revokedAncestor}`);
          throw new GatehouseError('certificate_revoked', 'the client certificate is refused', { cause: new Error('revoked during renewal') });
        }
        return issuedAnswer(cert, 'renew', requestId);
      }
      default:
        if (['/healthz', '/v1/bundle', '/v1/revocations', '/v1/bootstrap', '/v1/renew'].includes(p))
          throw new GatehouseError('method_not_allowed', 'this endpoint does not accept this method');
        throw new GatehouseError('not_found', 'no such endpoint');
    }
  }

  /**
   * The revoked serial among `serial` and its ancestors, if any. A revoked
   * ancestor whose descendants were not all listed (a revocation that crashed
   * half way, or written by hand) is caught here, and `serial` joins the list
   * so that peers refuse it too.
   */
  function revokedInLineage(serial: string): string | undefined {
    if (ca.revocations.hasNow(serial)) return serial;
    const ancestor = ancestorsOf(ca.paths, serial).find((a) => ca.revocations.hasNow(a));
    if (ancestor === undefined) return undefined;
    ca.revocations.add(serial, new Date(ca.clock.now()), `descendant of ${ancestor}`);
    log.warn({ event: 'security', kind: 'lineage_revoked', serial, ancestor }, 'a descendant of a revoked certificate tried to renew');
    return ancestor;
  }

  /** `attested`: who the CA issued to besides the SPIFFE ID (the pod a service-account token was bound to), for the audit line. */
  function issuedAnswer(cert: IssuedCertificate, via: string, requestId: string, attested?: Record<string, string>) {
    const zone = /\/zone\/([^/]+)\//.exec(cert.spiffeId)?.[1] ?? 'none';
    issued.inc({ zone, via });
    log.info({ event: 'certificate_issued', requestId, via, spiffeId: cert.spiffeId, serial: cert.serial, notAfter: cert.notAfter, ...attested }, 'certificate issued');
    const pod = attested?.pod === undefined ? '' : `, pod ${attested.namespace ?? ''}/${attested.pod}`;
    options.events?.emit({ type: 'certificate_issued', code: via, peer: cert.spiffeId, detail: `serial ${cert.serial}${pod}`.slice(0, 512) });
    return {
      status: 201,
      body: {
        spiffeId: cert.spiffeId,
        certificate: cert.chainPem,
        bundle: cert.bundlePem,
        serial: cert.serial,
        notBefore: cert.notBefore.toISOString(),
        notAfter: cert.notAfter.toISOString(),
      },
    };
  }

  const { url } = await listen(server, at, 'https');

  let admin: Server | undefined;
  let adminUrl: string | undefined;
  if (options.adminListen) {
    const a = parseListen(options.adminListen);
    if (typeof a === 'string') throw new GatehouseError('bad_request', `adminListen: ${a}`);
    admin = createServer((req, res) => {
      const p = pathOf(req.url);
      if (req.method === 'GET' && p === '/metrics')
        registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        });
      else if (req.method === 'GET' && p === '/healthz') send(res, randomUUID(), 200, { status: 'ok' });
      else writeProblem(res, new GatehouseError('not_found', 'no such endpoint'), randomUUID());
    });
    adminUrl = (await listen(admin, a, 'http')).url;
  }

  return {
    url,
    adminUrl,
    bundleFile: ca.bundleFile,
    bundlePem: ca.bundlePem,
    trustDomain: ca.trustDomain,
    registry,
    ca,
    identity: () => ({ spiffeId: caSpiffeId(ca.trustDomain), certPem: current.cert, keyPem: current.key }),
    async close() {
      clearInterval(rotate);
      clearInterval(pruning);
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closing;
      if (admin) {
        const a = admin;
        await new Promise<void>((resolve) => a.close(() => resolve()));
      }
    },
  };
}

async function issueServer(ca: Ca, names: { dns: string[]; ip: string[] }): Promise<{ keyPem: string; certPem: string }> {
  // The CA's own certificate: same issuance path as workloads, control issuer.
  const { keyPem, csrPem } = await newKeyAndCsr();
  const cert = await issueCertificate(
    { ...ca, policy: { ...ca.policy, maxTtlSeconds: SERVER_CERT_TTL } },
    { csr: csrPem, spiffeId: caSpiffeId(ca.trustDomain), ttlSeconds: SERVER_CERT_TTL, serverNames: names },
  );
  return { keyPem, certPem: cert.chainPem };
}

function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q === -1 ? u : u.slice(0, q);
}

function ttlOf(body: Record<string, unknown>): number | undefined {
  if (body.ttlSeconds === undefined) return undefined;
  if (typeof body.ttlSeconds !== 'number') throw new GatehouseError('ttl_out_of_policy', 'ttlSeconds must be a number');
  return body.ttlSeconds;
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') throw new GatehouseError('unsupported_media_type', 'send application/json');
  const body = await readBody(req, MAX_BODY);
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatehouseError('bad_request', 'the body is not valid JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new GatehouseError('bad_request', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

function send(res: ServerResponse, requestId: string, status: number, body: unknown, type = 'application/json'): void {
  if (res.headersSent) return;
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(text),
    'x-request-id': requestId,
    'cache-control': 'no-store',
  });
  res.end(text);
}
