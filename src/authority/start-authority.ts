// Lifecycle of a zone authority: provision (state dir, key-encryption key,
// database + migrations, signing keys, secrets, TLS) → serve (HTTPS only) →
// watch keys (a rotation done by the CLI is picked up without a restart) →
// close.
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { LoadedTopology } from '../topology/load.ts';
import { parseListen } from '../topology/schema.ts';
import { openDevCa } from '../shared/dev-ca.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { GatehouseError, NotFound, Internal, isGatehouseError, problemBody, PROBLEM_CONTENT_TYPE } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { listen as listenOn } from '../shared/listen.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import type { AuthorityDb } from './db/open-database.ts';
import { publicOnly } from './keys/key-store.ts';
import type { ClientRegistry } from './client-registry.ts';
import type { UserRegistry } from './user-registry.ts';
import { openZoneStores } from './open-zone-stores.ts';
import { Throttle } from './throttle.ts';
import { createAudit } from './audit.ts';
import { createTrustedIssuers, publicFile } from './trusted-issuers.ts';
import { createIssuerRevocations, ISSUER_POLL_MS } from './issuer-revocations.ts';
import { grantTrustingZones } from './zone-trust.ts';
import { grantFederatingZones } from './federation-seed.ts';
import { grantConsole, openAuthorityMonitor } from './monitor.ts';
import { revokedSince } from './access-token.ts';
import { loadAudienceKey } from './confidential-claims.ts';
import { zoneAudience, type AuthorityContext, type ConfidentialAudience } from './context.ts';
import { buildProvider } from './provider.ts';
import { createInteractions, sendFormError } from './interactions.ts';
import { createAccountPages } from './account.ts';
import { STYLESHEET, WEBAUTHN_SCRIPT } from './views.ts';
import { handleRevocationFeed } from './revocation-feed.ts';
import { dbReplayCache, handleUserinfo, USERINFO_PATH } from './userinfo.ts';
import { createFederation, FEDERATION_CALLBACK } from './federation.ts';
import { dpopNonces } from '../shared/sender-constraint.ts';
import type { ClientCertPolicy } from './client-certificate.ts';
import { localRevocations, trustBundlePath } from '../pki/index.ts';
import { seedDev, DEV_CREDENTIALS_SECRET, type ZoneDevCredentials } from './dev-seed.ts';
import { seedFeedClient, type DevFeedClient } from './dev-feed-client.ts';
import { sweepExpired } from './oidc-adapter.ts';
import { tlsPolicy } from '../shared/tls-policy.ts';

export interface StartAuthorityOptions {
  topology: LoadedTopology;
  zone: string;
  stateDir: string;
  /** seed demo identities and return them as devCredentials (and the gateway's feed client as devFeedClient) */
  dev?: boolean;
  /** host:port overriding the zone's `listen` */
  listen?: string;
  /** time source for throttling, TOTP and key rotation (tests freeze it) */
  clock?: Clock;
  /** how often the key table is checked for rotations (default 5 s) */
  keyPollMs?: number;
  /**
   * The control plane's bundles URL (https://…/v1/bundles): the authority gets
   * its workload identity, enforces its signed bundle and sends its security
   * events there (monitor.ts). Absent: $GATEHOUSE_CONTROL_URL (how `gatehouse
   * up` tells it), else it follows no control plane.
   */
  control?: string;
  /** With `control`, an authority away from the CA (a pod) bootstraps its identity from the CA server (AuthorityMonitorOptions.bootstrap). */
  bootstrap?: { caUrl: string; joinToken: string };
  /** How long a start without a bundle on disk waits for the first one (default 5 s). */
  firstBundleWaitMs?: number;
  /** receives every audit event besides the audit file */
  onAudit?: (event: Record<string, unknown>) => void;
  logger?: Logger;
}

export interface RunningAuthority {
  /** base URL of the authority (= issuer) */
  url: string;
  issuer: string;
  jwksUri: string;
  tokenEndpoint: string;
  introspectionEndpoint: string;
  revocationEndpoint: string;
  /** GET: revoked JWT access-token ids for the zone's gateway (see index.ts) */
  revocationFeed: string;
  /** the signed-in user's page: passkeys (WebAuthn) enrolment */
  accountUrl: string;
  /** the audience of the zone's own API (what its gateway expects in `aud`) */
  audience: string;
  /** the PEM trust bundle for the dev certificate (dev TLS only) */
  caFile?: string;
  devCredentials?: ZoneDevCredentials;
  /** dev only: the zone gateway's revocation-feed client, when the topology configures one (dev-feed-client.ts) */
  devFeedClient?: DevFeedClient;
  /** its workload identity, when it follows a control plane */
  spiffeId?: string;
  /** the authority's database kind */
  storage: 'sqlite' | 'postgres';
  /** re-read the key table now (the poller does it every keyPollMs) */
  reloadKeys(): Promise<boolean>;
  /** in-process administration (what the admin CLI does, for embedding and tests) */
  admin: {
    clients: ClientRegistry;
    users: UserRegistry;
    rotateKeys(): Promise<{ kid: string; signFrom: number; retired: string[] }>;
  };
  close(): Promise<void>;
}

const requestIds = new WeakMap<IncomingMessage, string>();

export async function startAuthority(options: StartAuthorityOptions): Promise<RunningAuthority> {
  const { topology, zone, stateDir } = options;
  const clock = options.clock ?? systemClock;
  const log = (options.logger ?? createLogger({ name: 'authority' })).child({ zone });
  const stores = await openZoneStores(topology, zone, stateDir, clock);
  const { config, dir, storage, keyStore, now } = stores;
  let db: AuthorityDb | undefined = storage;
  // a start that fails late (e.g. a dev seed that refuses) frees the port and the audit file
  const undo: (() => unknown)[] = [];
  try {
    const maxLifetime = config.accessTokenTtl;
    await keyStore.ensureSigningKey(config.signingAlg, maxLifetime);
    const keys = await keyStore.load(config.signingAlg);

    // TLS (HTTPS only; there is no plaintext mode)
    let tls: { cert: string; key: string };
    let caFile: string | undefined;
    const listenValue = options.listen ?? config.listen;
    const listen = parseListen(listenValue);
    if (typeof listen === 'string') throw new Error(`authority listen: ${listen}`);
    if (config.tls === 'dev') {
      const ca = await openDevCa(stateDir, topology.topology.trustDomain);
      const names = [...new Set(['127.0.0.1', 'localhost', '::1', listen.host])];
      tls = await ca.issueServer(names);
      caFile = ca.caFile;
    } else {
      tls = {
        cert: readFileSync(path.resolve(topology.dir, config.tls.cert), 'utf8'),
        key: readFileSync(path.resolve(topology.dir, config.tls.key), 'utf8'),
      };
    }
    let clientCa: string | undefined;
    const clientCerts: ClientCertPolicy = { now };
    if (config.clientCa === 'trust-domain') {
      const bundle = trustBundlePath(stateDir);
      if (!existsSync(bundle))
        throw new Error(`authority clientCa: trust-domain needs the trust domain's CA in the state dir (gatehouse ca init); ${bundle} is missing`);
      clientCa = readFileSync(bundle, 'utf8');
      const revoked = localRevocations(stateDir);
      clientCerts.svid = { trustDomain: topology.topology.trustDomain, isRevoked: (serial) => revoked.isRevoked(serial) };
    } else if (config.clientCa) {
      clientCa = readFileSync(path.resolve(topology.dir, config.clientCa), 'utf8');
    }

    let handler: (req: IncomingMessage, res: ServerResponse) => Promise<void> = async (_req, res) => {
      res.statusCode = 503;
      res.end();
    };
    const server: Server = createServer(
      {
        cert: tls.cert,
        key: tls.key,
        ...tlsPolicy(),
        requestCert: clientCa !== undefined,
        rejectUnauthorized: false, // a client certificate is optional; tls_client_auth checks `authorized`
        ...(clientCa ? { ca: clientCa } : {}),
        maxHeaderSize: 16 * 1024,
        headersTimeout: 10_000,
        requestTimeout: 30_000,
        keepAliveTimeout: 5_000,
      },
      (req, res) => {
        handler(req, res).catch((error: unknown) => {
          log.error({ err: error }, 'request failed');
          writeProblem(res, Internal(error), requestIds.get(req) ?? 'unknown');
        });
      },
    );
    const { address } = await listenOn(server, listen, 'https');
    undo.push(() => {
      server.close();
      server.closeAllConnections();
    });
    const port = address.port;
    const hostForUrl = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    const issuer = config.issuer ?? `https://${hostForUrl}:${port}`;
    const issuerUrl = new URL(issuer);
    const issuerHost = issuerUrl.hostname.replace(/^\[|\]$/g, '');
    const rpId = config.webauthn.rpId ?? issuerHost;
    if (rpId !== issuerHost && !issuerHost.endsWith(`.${rpId}`))
      throw new Error(`authority webauthn.rpId ${JSON.stringify(rpId)} must be the issuer's host (${issuerHost}) or a suffix of it`);

    const confidential = new Map<string, ConfidentialAudience>();
    for (const [aud, c] of Object.entries(config.confidentialClaims))
      confidential.set(aud, { claims: c.claims, key: loadAudienceKey(c.publicKey, topology.dir) });

    const audience = zoneAudience(topology.topology.trustDomain, zone, config);
    // security events to the control plane, quarantined clients refused (monitor.ts)
    const control = options.control ?? (process.env.GATEHOUSE_CONTROL_URL || undefined);
    const monitor = await openAuthorityMonitor({ stateDir, zone, topology: topology.topology, now, clock, log, control, bootstrap: options.bootstrap, firstWaitMs: options.firstBundleWaitMs });
    undo.push(() => monitor.close());
    const audit = createAudit({
      zone,
      file: path.join(dir, 'audit.jsonl'),
      now,
      sink: (line) => {
        options.onAudit?.(line);
        monitor.audit(line);
      },
    });
    undo.push(() => audit.close());
    const ctx: AuthorityContext = {
      zone,
      loaded: topology,
      config,
      issuer,
      audience,
      audiences: [...new Set([audience, ...config.audiences])],
      scopes: [...new Set(config.scopes)],
      db: storage.db,
      keyStore,
      keys,
      clients: stores.clients,
      users: stores.users,
      throttle: new Throttle(storage.db, now, storage.kind),
      audit,
      log,
      now,
      secretHashKey: stores.secretHashKey,
      csrfKey: await keyStore.secret('csrf-hmac'),
      cookieKeys: [(await keyStore.secret('cookie-signing')).toString('base64url')],
      trusted: createTrustedIssuers(stateDir, config.trustedZones, now),
      issuerRevocations: createIssuerRevocations({
        stateDir,
        zone,
        ownIssuer: issuer,
        trustedZones: config.trustedZones,
        db: storage.db,
        now,
        log,
        onDescendantsRevoked: (iss, count) => audit('token.descendants_revoked', { subject_issuer: iss, reason: `${count} token(s) exchanged from tokens revoked there` }),
      }),
      confidential,
      clientCerts,
      quarantine: monitor.spiffeId ? { subject: (sub) => monitor.subjectQuarantined(sub), tokenRevoked: (jti) => monitor.tokenRevoked(jti), refused: (r) => monitor.subjectRefused(r) } : undefined,
      webauthn: { rpId, rpName: config.webauthn.rpName ?? `Gatehouse ${zone}`, origin: issuerUrl.origin },
      dpop: await (async () => {
        const nonceSecret = await keyStore.secret('dpop-nonce');
        return { requireNonce: config.dpop.requireNonce, nonceSecret, nonces: dpopNonces(nonceSecret, now) };
      })(),
    };

    const publish = () => {
      const file = publicFile(stateDir, zone);
      const tmp = `${file}.${process.pid}.tmp`;
      const jwks = { keys: ctx.keys.keys.map((k) => publicOnly(k.publicJwk)) };
      writeFileSync(tmp, JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, jwks }, null, 2) + '\n', { mode: 0o644 });
      renameSync(tmp, file);
    };

    let provider: Provider;
    let providerHandler: (req: IncomingMessage, res: ServerResponse) => void;
    const install = () => {
      const p = buildProvider(ctx);
      p.on('server_error', (_c: unknown, err: unknown) => log.error({ err }, 'oidc-provider server error'));
      p.on('access_token.issued', (t: { jti?: unknown; clientId?: unknown; accountId?: unknown }) => monitor.tokenIssued(t));
      p.on('client_credentials.issued', (t: { jti?: unknown; clientId?: unknown; accountId?: unknown }) => monitor.tokenIssued(t));
      p.use(async (c: KoaContextWithOIDC, next) => {
        const requestId = requestIds.get(c.req) ?? randomUUID();
        c.set('x-request-id', requestId);
        await next();
        if (c.status === 404 && (c.body === undefined || c.body === null)) {
          c.status = 404;
          c.type = PROBLEM_CONTENT_TYPE;
          c.body = problemBody(NotFound(), requestId);
        }
      });
      provider = p;
      providerHandler = p.callback();
      publish();
    };
    install();
    let keyVersion = await keyStore.version(config.signingAlg);

    const reloadKeys = async (): Promise<boolean> => {
      const v = await keyStore.version(config.signingAlg);
      if (v === keyVersion) return false;
      ctx.keys = await keyStore.load(config.signingAlg);
      keyVersion = v;
      install();
      const [active] = ctx.keys.keys;
      audit('key.published', { kid: active.kid, reason: `${ctx.keys.keys.length} key(s) in JWKS; active ${active.kid}` });
      return true;
    };

    ctx.federation = createFederation(ctx, stateDir, caFile ?? path.join(stateDir, 'tls', 'dev-ca.pem'));
    const interactions = createInteractions(() => provider, ctx);
    const account = createAccountPages(() => provider, ctx);
    const userinfoReplay = dbReplayCache(() => provider, issuer);
    handler = async (req, res) => {
      const requestId = randomUUID();
      requestIds.set(req, requestId);
      res.setHeader('x-request-id', requestId);
      res.setHeader('strict-transport-security', 'max-age=31536000');
      res.setHeader('x-content-type-options', 'nosniff');
      // same-origin, not no-referrer: under no-referrer a browser sends `Origin: null`
      // with every form POST (Fetch, "serialize a request origin"), and the
      // sign-in and account forms refuse a POST whose Origin is not the issuer's.
      // Other origins (the client's redirect URI) still get no Referer.
      res.setHeader('referrer-policy', 'same-origin');
      res.setHeader('x-frame-options', 'DENY');
      const url = req.url ?? '/';
      const pathname = url.split('?')[0];
      if (pathname === '/assets/authority.css' && (req.method === 'GET' || req.method === 'HEAD')) {
        res.setHeader('content-type', 'text/css; charset=utf-8');
        res.setHeader('cache-control', 'public, max-age=3600');
        res.end(req.method === 'HEAD' ? undefined : STYLESHEET);
        return;
      }
      if (pathname === '/assets/webauthn.js' && (req.method === 'GET' || req.method === 'HEAD')) {
        res.setHeader('content-type', 'text/javascript; charset=utf-8');
        res.setHeader('cache-control', 'public, max-age=3600');
        res.end(req.method === 'HEAD' ? undefined : WEBAUTHN_SCRIPT);
        return;
      }
      if (pathname === '/revocations') {
        await handleRevocationFeed(ctx, req, res, requestId);
        return;
      }
      if (pathname === '/account' || pathname.startsWith('/account/')) {
        try {
          await account.handle(req, res, pathname, requestId);
        } catch (error) {
          if (isGatehouseError(error)) sendFormError(res, req, error, requestId);
          else throw error;
        }
        return;
      }
      if (pathname === USERINFO_PATH) {
        await handleUserinfo(ctx, userinfoReplay, req, res, requestId);
        return;
      }
      // no valid policy bundle (none yet, or it expired): no sign-in, no token (fail closed)
      if (monitor.unavailable(pathname)) {
        res.setHeader('retry-after', '5');
        if (pathname === '/token' || pathname === '/request') {
          const body = JSON.stringify({ error: 'temporarily_unavailable', error_description: 'this authority has no policy from the control plane yet' });
          res.writeHead(503, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
          res.end(body);
        } else sendFormError(res, req, new GatehouseError('bundle_unavailable', 'Sign-in is paused: this authority has no policy from the control plane yet. Try again shortly.'), requestId);
        return;
      }
      if (pathname === '/healthz') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ status: 'ok' }));
        return;
      }
      if (pathname === FEDERATION_CALLBACK) {
        try {
          await ctx.federation!.bounce(req, res);
        } catch (error) {
          if (isGatehouseError(error)) sendFormError(res, req, error, requestId);
          else throw error;
        }
        return;
      }
      if (pathname.startsWith('/interaction/')) {
        try {
          await interactions.handle(req, res, pathname, requestId);
        } catch (error) {
          if (isGatehouseError(error)) sendFormError(res, req, error, requestId);
          else throw error;
        }
        return;
      }
      if (await monitor.refuse(req, res, requestId)) return;
      monitor.run(req, () => providerHandler(req, res));
    };

    // zones that trust this one get a client to read its revocation feed (zone-trust.ts)
    await grantTrustingZones(ctx, stateDir);
    // zones that sign their users in here get their client (federation-seed.ts)
    const stopFederationGrants = await grantFederatingZones(ctx, stateDir);
    undo.push(stopFederationGrants);
    // the web console signs its operators in here when the topology says so (monitor.ts)
    const stopConsoleGrant = grantConsole(ctx, stateDir);
    undo.push(stopConsoleGrant);
    // every revocation (RFC 7009, grants, consents, clients, exchanged tokens) reaches the control plane (monitor.ts)
    undo.push(monitor.followRevocations((after) => revokedSince(storage.db, after, now())));

    let devCredentials: ZoneDevCredentials | undefined;
    let devFeedClient: DevFeedClient | undefined;
    if (options.dev) {
      devCredentials = await seedDev(
        ctx,
        () => keyStore.getSealed(DEV_CREDENTIALS_SECRET),
        (v) => keyStore.putSealed(DEV_CREDENTIALS_SECRET, v),
      );
      devFeedClient = await seedFeedClient(ctx, (n) => keyStore.getSealed(n), (n, v) => keyStore.putSealed(n, v));
    }

    const timers = [
      setInterval(() => {
        reloadKeys().catch((err: unknown) => log.error({ err }, 'key reload failed'));
      }, options.keyPollMs ?? 5_000),
      setInterval(() => {
        ctx.issuerRevocations.poll().catch((err: unknown) => log.error({ err }, 'trusted issuer revocation poll failed'));
      }, ISSUER_POLL_MS),
      setInterval(() => {
        sweepExpired(storage.db, now())
          .then(() => keyStore.dropUnpublished())
          .catch((err: unknown) => log.error({ err }, 'sweep failed'));
      }, 60_000),
    ];
    for (const t of timers) t.unref();

    log.info({ issuer, storage: storage.kind, alg: ctx.keys.active.alg, kid: ctx.keys.active.kid }, 'authority ready');
    let closed = false;
    return {
      url: issuer,
      issuer,
      jwksUri: `${issuer}/jwks`,
      tokenEndpoint: `${issuer}/token`,
      introspectionEndpoint: `${issuer}/token/introspection`,
      revocationEndpoint: `${issuer}/token/revocation`,
      revocationFeed: `${issuer}/revocations`,
      accountUrl: `${issuer}/account`,
      audience,
      caFile,
      devCredentials,
      devFeedClient,
      storage: storage.kind,
      spiffeId: monitor.spiffeId,
      reloadKeys,
      admin: {
        clients: ctx.clients,
        users: ctx.users,
        async rotateKeys() {
          const r = await keyStore.rotate(config.signingAlg, config.keyRotation.publishLeadSeconds, maxLifetime);
          audit('key.rotated', { kid: r.kid, reason: `signs from ${new Date(r.signFrom).toISOString()}` });
          await reloadKeys();
          return r;
        },
      },
      async close() {
        if (closed) return;
        closed = true;
        for (const t of timers) clearInterval(t);
        stopConsoleGrant();
        stopFederationGrants();
        await monitor.close();
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await audit.close();
        await storage.close();
        db = undefined;
      },
    };
  } catch (error) {
    for (const u of undo.reverse()) await u();
    await db?.close();
    throw error;
  }
}
