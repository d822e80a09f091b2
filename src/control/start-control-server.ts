// `gatehouse control`: serves each workload of the trust domain its own signed
// bundle over mTLS. Lifecycle: provision (signer, first compile) → serve
// (bundles, long-poll, status reports) → watch (topology file and the CA's
// revocations, recompiled on change; re-signed every ttl/4) → close.
//
//   GET /v1/bundles/<spiffe path>.bundle[?wait=N][&revision=R]
//     the caller's own bundle only (identity from its verified client
//     certificate); ETag / If-None-Match → 304; `wait` (0..maxWaitSeconds)
//     holds a matching If-None-Match until a new bundle or the time is up;
//     `revision` (or header gatehouse-pep-revision) is the status report: the
//     revision the PEP enforces.
//   POST /v1/events
//     a batch of security events of the caller, attributed to the SPIFFE ID of
//     its verified client certificate (gateways, authorities, services,
//     sidecars): what an event says about its sender is never believed.
// Admin listener (loopback, plain HTTP): GET /status, POST /publish, GET /healthz,
// GET /events, GET|POST|DELETE /quarantines, GET /revoked-tokens[?jti=J] (the
// counts of the revoked token ids, forged reports refused, and when J's entry
// ends). It answers no browser: a request
// with an Origin or a cross-site Sec-Fetch-Site is refused, a POST must be
// application/json, and the Host must be the listener's own (DNS rebinding).
// The web console (src/console) has a listener of its own when the topology
// names its sign-in zone (monitor.console.zone).
import https from 'node:https';
import { tlsPolicy } from '../shared/tls-policy.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../shared/node-http.ts';
import { mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { verifySvid, pkiPaths, controlSpiffeId, vaultSpiffeId } from '../pki/index.ts';
import { X509Certificate } from 'node:crypto';
import { listen } from '../shared/listen.ts';
import { writeProblem } from '../shared/problem.ts';
import { GatehouseError, NotFound, MethodNotAllowed } from '../shared/errors.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { createPublisher, type Publisher } from './lib/publisher.ts';
import { readBody } from '../shared/body.ts';
import { openQuarantineStore, parseDuration, EVENT_TYPES, MAX_BATCH_BYTES, type EventType, type QuarantineRequest, type QuarantineScope, type QuarantineStore } from '../monitor/index.ts';
import { createEventIntake, type EventIntake } from './lib/event-intake.ts';
import { openRevokedTokens, type RevokedTokens } from './lib/revoked-tokens.ts';
import type { ConsoleServer } from '../console/index.ts';
import { BUNDLE_MEDIA_TYPE, bundlePath, readRevokedSerials, type DecisionInputs, type PepKind } from '../policy/index.ts';

export interface StartControlServerOptions {
  /** The topology file; watched and recompiled on change. */
  config: string;
  stateDir: string;
  /** HTTPS (mTLS) listener; default 127.0.0.1:0. */
  listen?: string;
  /** Loopback admin listener; default 127.0.0.1:0. */
  adminListen?: string;
  /** The console's listener, overriding monitor.console.listen. */
  consoleListen?: string;
  clock?: Clock;
  logger?: Logger;
  /** Bundle lifetime (default 3600 s); bundles are re-signed every quarter of it. */
  ttlSeconds?: number;
  /** Longest long-poll a PEP may ask for (default 60 s). */
  maxWaitSeconds?: number;
  /** How often the topology file and the revocations folder are checked (default 250 ms). */
  watchMs?: number;
  /** A PEP not seen for this long is stale (default maxWaitSeconds + 30 s). */
  staleAfterMs?: number;
  decisions?: () => Omit<DecisionInputs, 'revokedSerials'>;
}

export interface PepStatus {
  id: string;
  kind: PepKind;
  revision: number;
  lastSeen: string;
  stale: boolean;
  /** The bundle_* code of the last bundle this PEP refused, as it reported on its poll (absent: none). */
  lastRefusal?: string;
}

export interface ControlStatus {
  revision: number;
  peps: PepStatus[];
}

export interface ControlServer {
  url: string;
  /** Base URL a bundle client polls: `${url}/v1/bundles`. */
  bundlesUrl: string;
  adminUrl: string;
  /** The web console, when the topology configures it (monitor.console.zone). */
  consoleUrl?: string;
  revision(): number;
  /** Recompiles and signs; a new revision is a config_change event naming `why` (who changed what). */
  publish(options?: { force?: boolean; why?: string }): Promise<number>;
  status(): ControlStatus;
  close(): Promise<void>;
}

export async function startControlServer(options: StartControlServerOptions): Promise<ControlServer> {
  const clock = options.clock ?? systemClock;
  const log = (options.logger ?? createLogger({ name: 'control' })).child({ component: 'control' });
  const maxWait = options.maxWaitSeconds ?? 60;
  const staleAfterMs = options.staleAfterMs ?? (maxWait + 30) * 1000;
  // quarantines (gatehouse quarantine …) travel in every bundle's decisions
  let publisherRef: Publisher | undefined;
  const quarantines: QuarantineStore = openQuarantineStore(options.stateDir, clock, () => publisherRef!.topology());
  // access tokens the authorities revoked (token_revoked events) travel in every gateway's and authority's bundle
  const revokedTokens: RevokedTokens = openRevokedTokens(options.stateDir, clock);
  const decisions = () => {
    const extra = options.decisions?.() ?? {};
    return {
      ...extra,
      revokedTokenIds: [...(extra.revokedTokenIds ?? []), ...revokedTokens.list()],
      quarantines: [...(extra.quarantines ?? []), ...quarantines.list()],
    };
  };
  const publisher: Publisher = await createPublisher({
    config: options.config,
    stateDir: options.stateDir,
    clock,
    ttlSeconds: options.ttlSeconds,
    decisions,
  });
  publisherRef = publisher;
  const events: EventIntake = await createEventIntake({
    stateDir: options.stateDir,
    clock,
    log,
    monitor: () => publisher.topology().monitor,
    quarantines,
    publish: (why) => publish({ why }),
    selfId: controlSpiffeId(publisher.trustDomain),
    revokedTokens,
    authorityLifetime: (pep) => {
      const m = /^spiffe:\/\/([^/]+)\/zone\/([a-z0-9-]+)\/authority$/.exec(pep);
      const zone = m && m[1] === publisher.trustDomain ? publisher.topology().zones[m[2]] : undefined;
      return zone?.authority ? zone.authority.accessTokenTtl * 1000 : undefined;
    },
    publishRevocations,
  });
  events.record({ type: 'config_change', code: 'started', count: publisher.revision(), detail: `the control plane started at revision ${publisher.revision()} (${options.config})`.slice(0, 512) });
  const revokedDir = pkiPaths(options.stateDir).revoked;
  let revoked = new Set(readRevokedSerials(options.stateDir));
  const peps = new Map<string, { kind: PepKind; revision: number; lastSeen: number; lastRefusal?: string }>();
  let waiters = new Set<() => void>();
  const wake = () => {
    const w = waiters;
    waiters = new Set();
    for (const f of w) f();
  };

  // revocations arriving while a publish runs are published together by the next one
  let revocationsRunning = false;
  let revocationsAgain: string[] = [];
  function publishRevocations(why: string): void {
    revocationsAgain.push(why);
    if (revocationsRunning) return;
    revocationsRunning = true;
    void (async () => {
      while (revocationsAgain.length > 0) {
        const whys = revocationsAgain;
        revocationsAgain = [];
        try {
          revokedTokens.save();
        } catch (err) {
          log.error({ err }, 'the revoked token ids could not be saved; they are published all the same');
        }
        await publish({ why: whys.length === 1 ? whys[0] : `${whys.length} revocation reports: ${whys.slice(0, 3).join('; ')}` }).catch(() => undefined);
      }
      revocationsRunning = false;
    })();
  }

  let servedSigner = publisher.signer;
  // the moment the next quarantine ends, the bundles are published without it
  // (revoked token ids that ended leave at most once a second: a token past its exp is refused anyway)
  let expiryTimer: NodeJS.Timeout | undefined;
  let lastTokenSweep = 0;
  const scheduleExpiry = () => {
    clearTimeout(expiryTimer);
    const q = quarantines.nextExpiry();
    const t = revokedTokens.nextExpiry();
    const next = Math.min(q ?? Infinity, t === undefined ? Infinity : Math.max(t, lastTokenSweep + 1000));
    if (next === Infinity) return;
    const why = next === q ? 'a quarantine ended' : 'revoked access tokens expired';
    expiryTimer = setTimeout(() => void publish({ why }).catch(() => undefined), Math.min(Math.max(next - clock.now(), 0) + 20, 2 ** 31 - 1));
    expiryTimer.unref();
  };
  async function publish(o: { force?: boolean; why?: string } = {}): Promise<number> {
    try {
      const before = publisher.revision();
      if (revokedTokens.sweep()) {
        lastTokenSweep = clock.now();
        try {
          revokedTokens.save();
        } catch (err) {
          log.error({ err }, 'the revoked token ids could not be saved; the bundles are published all the same');
        }
      }
      const r = await publisher.publish(o);
      // a new revision (content changed; a periodic re-sign keeps its revision) is a config change with who and what
      if (r.revision > before)
        events.record({ type: 'config_change', code: 'published', count: r.revision, detail: `revision ${r.revision}: ${o.why ?? 'recompiled'}`.slice(0, 512) });
      scheduleExpiry();
      // the signing certificate was renewed: new connections get it (open ones keep theirs)
      if (publisher.signer !== servedSigner) {
        servedSigner = publisher.signer;
        server.setSecureContext(tlsOptions());
        log.info({ notAfter: new Date(servedSigner.notAfter).toISOString() }, 'control certificate renewed');
      }
      if (r.changed) {
        log.info({ revision: r.revision }, 'bundles published');
        wake();
      }
      return r.revision;
    } catch (error) {
      log.error({ err: error }, 'recompile failed; the last bundles stay');
      throw error;
    }
  }

  const tlsOptions = () => ({ cert: publisher.signer.chainPem, key: publisher.signer.keyPem, ca: publisher.signer.bundlePem, ...tlsPolicy() });
  const server = https.createServer(
    {
      ...tlsOptions(),
      requestCert: true,
      rejectUnauthorized: true, // a client without a certificate of the trust domain never gets past TLS
    },
    (req, res) => {
      const requestId = randomUUID();
      handle(req, res).catch((error) => {
        if (!(error instanceof GatehouseError)) log.error({ err: error, requestId }, 'request failed');
        writeProblem(res, error, requestId);
      });
    },
  );
  server.keepAliveTimeout = (maxWait + 15) * 1000;
  server.requestTimeout = (maxWait + 30) * 1000;
  server.headersTimeout = 10_000;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const cert = (req.socket as TLSSocket).getPeerCertificate(false);
    const decision = cert?.raw
      ? verifySvid(cert.raw, { trustDomain: publisher.trustDomain, now: clock.now(), purpose: 'client', isRevoked: (s) => revoked.has(s) })
      : ({ ok: false, reason: 'unparseable' } as const);
    const url = new URL(req.url ?? '/', 'https://control.invalid');
    // the vault (spiffe://<td>/vault, no workload) may send events, and nothing else
    const vault = !decision.ok && url.pathname === '/v1/events' && cert?.raw && isVaultCertificate(cert.raw, publisher.trustDomain, clock.now(), revoked) ? vaultSpiffeId(publisher.trustDomain) : undefined;
    if (!decision.ok && !vault) throw new GatehouseError('certificate_rejected', 'the client certificate is not a workload identity of this trust domain');
    if (url.pathname === '/v1/events') {
      // security events of this workload (the event's own claims about who sent it are ignored)
      if (req.method !== 'POST') throw MethodNotAllowed(['POST']);
      const sender = vault ?? (decision as Extract<typeof decision, { ok: true }>).id.uri;
      // an exhausted sender is refused before its batch is read or parsed
      events.admit(sender);
      const r = await events.ingest(sender, await readBody(req, MAX_BATCH_BYTES));
      const text = JSON.stringify(r);
      res.writeHead(202, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
      res.end(text);
      return;
    }
    if (!decision.ok) throw new GatehouseError('certificate_rejected', 'the client certificate is not a workload identity of this trust domain');
    if (!url.pathname.startsWith('/v1/bundles/')) throw NotFound('No such resource.');
    if (req.method !== 'GET' && req.method !== 'HEAD') throw MethodNotAllowed(['GET', 'HEAD']);
    const own = bundlePath(decision.id.uri, publisher.trustDomain);
    if (url.pathname !== `/v1/bundles/${own}`) throw new GatehouseError('forbidden', 'a workload may fetch only its own bundle');
    const audience = decision.id.uri;
    const reported = Number(url.searchParams.get('revision') ?? req.headers['gatehouse-pep-revision'] ?? 0);
    const refusal = req.headers['gatehouse-pep-refused'];
    const lastRefusal = typeof refusal === 'string' && /^bundle_[a-z_]{1,40}$/.test(refusal) ? refusal : undefined;
    const wait = Math.min(maxWait, Math.max(0, Number(url.searchParams.get('wait') ?? 0) || 0));
    const seen = () => {
      const e = publisher.entry(audience);
      if (e) peps.set(audience, { kind: e.kind, revision: Number.isSafeInteger(reported) && reported >= 0 ? reported : 0, lastSeen: clock.now(), lastRefusal });
    };
    seen();
    let entry = publisher.entry(audience);
    if (!entry) throw new GatehouseError('unknown_workload', 'the topology has no bundle for this workload');
    const inm = req.headers['if-none-match'];
    if (inm === `"${entry.digest}"` && wait > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          res.off('close', done);
          resolve();
        };
        const timer = setTimeout(done, wait * 1000);
        waiters.add(done);
        res.once('close', done);
      });
      if (res.destroyed) return;
      seen();
      entry = publisher.entry(audience);
      if (!entry) throw new GatehouseError('unknown_workload', 'the topology has no bundle for this workload any more');
    }
    const headers = {
      etag: `"${entry.digest}"`,
      'cache-control': 'no-cache',
      'gatehouse-revision': String(entry.revision),
      'x-content-type-options': 'nosniff',
    };
    if (inm === `"${entry.digest}"`) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'content-type': BUNDLE_MEDIA_TYPE, 'content-length': String(entry.bytes.length) });
    res.end(req.method === 'HEAD' ? undefined : entry.bytes);
  }

  function status(): ControlStatus {
    const now = clock.now();
    const current = publisher.revision();
    return {
      revision: current,
      peps: [...peps.entries()]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([id, p]) => ({
          id,
          kind: p.kind,
          revision: p.revision,
          lastSeen: new Date(p.lastSeen).toISOString(),
          stale: p.revision < current || now - p.lastSeen > staleAfterMs,
          ...(p.lastRefusal ? { lastRefusal: p.lastRefusal } : {}),
        })),
    };
  }

  /** Ends a decision now; `falsePositive` tells the detector that made it. */
  async function release(scope: QuarantineScope, value: string, by: string, falsePositive: boolean): Promise<boolean> {
    const was = quarantines.list().find((q) => q.scope === scope && q.value === value);
    if (!was || !quarantines.remove(scope, value)) return false;
    log.warn({ event: 'security', kind: 'quarantine_removed', scope, value, by, falsePositive }, 'quarantine removed');
    events.record({ type: 'quarantine', code: falsePositive ? 'false_positive' : 'removed', detail: `${scope} ${value} by ${by}`.slice(0, 512) });
    if (falsePositive) events.falsePositive(was);
    await publish({ why: `quarantine of ${scope} ${value} removed by ${by}${falsePositive ? ' (false positive)' : ''}` });
    return true;
  }

  let adminHosts = new Set<string>();
  const admin = createServer((req, res) => {
    const requestId = randomUUID();
    const path_ = new URL(req.url ?? '/', 'http://admin.invalid').pathname;
    const json = (code: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), 'cache-control': 'no-store' });
      res.end(text);
    };
    (async () => {
      // the admin API is for the CLI on this machine, never for a page in a browser (CSRF, DNS rebinding)
      const site = req.headers['sec-fetch-site'];
      if (req.headers.origin !== undefined || (site !== undefined && site !== 'none') || !adminHosts.has(String(req.headers.host ?? '').toLowerCase()))
        throw new GatehouseError('forbidden', 'The admin API answers local tools only.');
      if (req.method === 'POST' && (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase() !== 'application/json' && path_ !== '/publish')
        throw new GatehouseError('unsupported_media_type', 'Send application/json.');
      if (path_ === '/status' && req.method === 'GET') return json(200, status());
      if (path_ === '/healthz' && req.method === 'GET') return json(200, { ok: true, revision: publisher.revision() });
      if (path_ === '/publish') {
        if (req.method !== 'POST') throw MethodNotAllowed(['POST']);
        return json(200, { revision: await publish({ force: false, why: 'gatehouse control publish (admin API)' }) });
      }
      if (path_ === '/revoked-tokens') {
        if (req.method !== 'GET') throw MethodNotAllowed(['GET']);
        const jti = new URL(req.url ?? '/', 'http://admin.invalid').searchParams.get('jti');
        const ends = jti === null ? undefined : revokedTokens.until(jti);
        const s = events.stats();
        return json(200, { ...revokedTokens.stats(), forged: s.forged, reportsRefused: s.revocationsRefused, ...(jti === null ? {} : { until: ends === undefined ? null : new Date(ends).toISOString() }) });
      }
      if (path_ === '/events') {
        if (req.method !== 'GET') throw MethodNotAllowed(['GET']);
        const u = new URL(req.url ?? '/', 'http://admin.invalid');
        const type = u.searchParams.get('type') ?? undefined;
        if (type !== undefined && !(EVENT_TYPES as readonly string[]).includes(type)) throw new GatehouseError('unprocessable', `type must be one of ${EVENT_TYPES.join(', ')}`);
        const since = clock.now() - parseDuration(u.searchParams.get('since') ?? '1h');
        const limit = Number(u.searchParams.get('limit') ?? 1000);
        return json(200, await events.query({ since, type: type as EventType | undefined, limit: Number.isSafeInteger(limit) ? limit : 1000 }));
      }
      if (path_ === '/quarantines') {
        if (req.method === 'GET') return json(200, quarantines.list());
        if (req.method === 'POST') {
          const q = quarantines.add(quarantineRequest(await readBody(req, 16 * 1024)));
          log.warn({ event: 'security', kind: 'quarantine_added', ...q }, 'quarantine added');
          events.record({ type: 'quarantine', code: 'added', [q.scope === 'source' ? 'source' : q.scope === 'service' ? 'peer' : q.scope]: q.value, detail: `${q.origin}: ${q.reason}` });
          return json(201, { quarantine: q, revision: await publish({ why: `quarantine of ${q.scope} ${q.value} added by ${q.origin}` }) });
        }
        if (req.method === 'DELETE') {
          const u = new URL(req.url ?? '/', 'http://admin.invalid');
          const scope = u.searchParams.get('scope') as QuarantineScope;
          const value = u.searchParams.get('value') ?? '';
          const fp = u.searchParams.get('falsePositive');
          if (fp !== null && fp !== '1' && fp !== '0') throw new GatehouseError('unprocessable', 'falsePositive is 1 or 0');
          if (!(await release(scope, value, 'cli', fp === '1'))) throw NotFound(`No quarantine of ${scope} ${JSON.stringify(value.slice(0, 64))} is in force.`);
          return json(200, { revision: publisher.revision() });
        }
        throw MethodNotAllowed(['GET', 'POST', 'DELETE']);
      }
      throw NotFound('No such resource.');
    })().catch((error) => {
      if (!(error instanceof GatehouseError)) log.error({ err: error, requestId }, 'admin request failed');
      writeProblem(res, error instanceof GatehouseError ? error : new GatehouseError('invalid_config', 'the topology does not load; the last bundles stay', { cause: error }), requestId);
    });
  });

  const bound = await listen(server, options.listen ?? '127.0.0.1:0', 'https');
  const adminBound = await listen(admin, options.adminListen ?? '127.0.0.1:0', 'http');
  {
    const u = new URL(adminBound.url);
    adminHosts = new Set([u.host, ...(u.hostname === '127.0.0.1' || u.hostname === '[::1]' ? [`localhost:${u.port}`] : [])]);
  }
  const monitor = () => publisher.topology().monitor;
  let consoleServer: ConsoleServer | undefined;
  if (monitor().console.zone) {
    // loaded here: the console (its pages, its OpenID sign-in) only for a topology that has one
    const { startConsole } = await import('../console/index.ts');
    consoleServer = await startConsole({
      listen: options.consoleListen ?? monitor().console.listen,
      config: options.config,
      stateDir: options.stateDir,
      clock,
      log: log.child({ component: 'console' }),
      monitor,
      topology: () => publisher.topology(),
      status,
      events: (q) => events.query(q),
      quarantines: () => quarantines.list(),
      release,
    });
  }

  // watch: the topology file (mtime, size) and the CA's revocations folder (mtime)
  const fingerprint = () => {
    const f = (p: string) => {
      try {
        const s = statSync(p);
        return `${s.mtimeMs}:${s.size}`;
      } catch {
        return 'absent';
      }
    };
    return `${f(options.config)}|${f(revokedDir)}`;
  };
  let last = fingerprint();
  let watching = false;
  const watchTimer = setInterval(() => {
    const now = fingerprint();
    if (now === last || watching) return;
    const [fileBefore, revokedBefore] = last.split('|');
    const [fileNow, revokedNow] = now.split('|');
    last = now;
    const before = revoked;
    revoked = new Set(readRevokedSerials(options.stateDir));
    // each serial the CA newly revoked is a security event (the CA's list is the record; `gatehouse ca revoke` writes it)
    for (const serial of revoked)
      if (!before.has(serial)) events.record({ type: 'certificate_revoked', code: 'revoked', detail: `serial ${serial}` });
    watching = true;
    const what = [fileNow !== fileBefore ? `the topology file ${options.config} changed` : '', revokedNow !== revokedBefore ? "the CA's revocations changed" : ''].filter(Boolean).join(' and ');
    publish({ why: what }).catch(() => undefined).finally(() => (watching = false));
  }, options.watchMs ?? 250);
  watchTimer.unref();
  const ttl = options.ttlSeconds ?? 3600;
  const resignTimer = setInterval(() => void publish({ force: true }).catch(() => undefined), (ttl * 1000) / 4);
  resignTimer.unref();

  // where `gatehouse control publish` and `gatehouse status` find this server
  const infoFile = path.resolve(options.stateDir, 'control', 'control.json');
  mkdirSync(path.dirname(infoFile), { recursive: true, mode: 0o700 });
  writeFileSync(`${infoFile}.tmp`, JSON.stringify({ url: bound.url, bundles: `${bound.url}/v1/bundles`, admin: adminBound.url, ...(consoleServer ? { console: consoleServer.url } : {}), pid: process.pid }) + '\n', { mode: 0o600 });
  renameSync(`${infoFile}.tmp`, infoFile);

  return {
    url: bound.url,
    bundlesUrl: `${bound.url}/v1/bundles`,
    adminUrl: adminBound.url,
    consoleUrl: consoleServer?.url,
    revision: () => publisher.revision(),
    publish,
    status,
    async close() {
      clearInterval(watchTimer);
      clearInterval(resignTimer);
      clearTimeout(expiryTimer);
      await consoleServer?.close();
      await events.close();
      wake();
      const closed = Promise.all([
        new Promise<void>((r) => server.close(() => r())),
        new Promise<void>((r) => admin.close(() => r())),
      ]);
      server.closeAllConnections();
      admin.closeAllConnections();
      await closed;
    },
  };
}

/** POST /quarantines: { scope, value, for: '15m', reason, origin? } (JSON). */
function quarantineRequest(raw: Buffer): QuarantineRequest {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new GatehouseError('bad_request', 'The body is not JSON.');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new GatehouseError('unprocessable', 'The body is a JSON object.');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !['scope', 'value', 'for', 'reason', 'origin'].includes(k));
  if (unknown.length > 0) throw new GatehouseError('unprocessable', `unknown field ${JSON.stringify(unknown[0].slice(0, 40))}`);
  if (typeof b.for !== 'string') throw new GatehouseError('unprocessable', 'for is a duration such as 15m');
  return { scope: b.scope as QuarantineScope, value: b.value as string, forMs: parseDuration(b.for), reason: b.reason as string, origin: b.origin as string | undefined };
}

/**
 * The vault's certificate, as the CA issues it: spiffe://<td>/vault as its one
 * URI (beside the server's addresses), under the `_control` issuer of the trust domain, valid now, not
 * revoked. (The TLS handshake already chained it to the trust bundle.)
 */
function isVaultCertificate(raw: Buffer, trustDomain: string, now: number, revoked: Set<string>): boolean {
  try {
    const c = new X509Certificate(raw);
    const issuer = c.issuer.split('\n');
    return (
      !c.ca &&
      JSON.stringify((c.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:'))) === JSON.stringify([`URI:${vaultSpiffeId(trustDomain)}`]) &&
      issuer.includes('OU=control') &&
      issuer.includes(`O=${trustDomain}`) &&
      Date.parse(c.validFrom) <= now &&
      now <= Date.parse(c.validTo) &&
      !revoked.has(c.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''))
    );
  } catch {
    return false;
  }
}
