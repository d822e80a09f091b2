// Authentication unit: who is calling. Accepts, per route, JWT access tokens
// of trusted issuers, partner API keys and (opaque) introspected tokens. A
// request presenting two kinds of credential is judged on the route's
// preferred one, or refused — never on the union of both. Sources whose
// credentials keep failing are slowed, then blocked. In the identity phase it
// tells the upstream who called: the caller's credentials are stripped and a
// short-lived identity token for exactly that service is added.
import { z } from 'zod';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { REVOKED_TOKEN_IDS, type Decision, type Policy, type ProvisionContext, type Exchange, type Identity } from '../policy.ts';
import type { Logger } from '../../../shared/logger.ts';
import { ZoneAuthentication, RouteAuth } from './schema.ts';
import { createJwksCache } from './jwks.ts';
import { createTokenVerifier, TokenRejected, tokenBinding, type TokenVerifier, type TrustedIssuer } from './verify-token.ts';
import { checkSenderConstraint, memoryReplayCache, presentedToken, SenderConstraintRejected, senderChallenge, type DpopNonces, type ReplayCache } from '../../../shared/sender-constraint.ts';
import { zoneDpopNonces, type NonceRedis } from './dpop-nonces.ts';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { openApiKeyVerifier, type ApiKeyVerifier } from './api-keys.ts';
import { createIntrospector, type Introspector } from './introspect.ts';
import { pollRevocations, type RevocationPoller } from './revocation-feed.ts';
import { Unauthorized, BadRequest, GatehouseError } from '../../../shared/errors.ts';
import { openIdentitySigner, IDENTITY_HEADER, type IdentitySigner } from './identity-token.ts';
import { AuthFailureTracker } from '../rate-limit/auth-failures.ts';
import { AuthFailureConfig } from '../rate-limit/schema.ts';
import { rateLimitMetricsOf } from '../rate-limit/metrics.ts';

type Method = 'jwt' | 'api_key' | 'introspection';
export type RouteAuthObject = Exclude<RouteAuth, string>;

/** `shadow` is the route's `auth.shadow`, where the chain reads every unit's. */
export const AuthenticationConfig = z.object({ zone: ZoneAuthentication, route: z.custom<RouteAuthObject>(), failures: AuthFailureConfig, shadow: z.boolean() });

/** A route's `auth` as its object form (`'jwt'` is `{ accept: ['jwt'] }`). */
export function routeAuthOf(auth: Exclude<RouteAuth, 'anonymous'>): RouteAuthObject {
  return typeof auth === 'string' ? (RouteAuth.parse({ accept: [auth] }) as RouteAuthObject) : auth;
}
export type AuthenticationConfig = { zone: ZoneAuthentication; route: RouteAuthObject; failures: AuthFailureConfig; shadow: boolean };

export interface AuthenticationState {
  realm: string;
  accept: ReadonlySet<Method>;
  prefer: Method | undefined;
  apiKeyHeader: string;
  apiKeyQuery: string | undefined;
  tokens: TokenVerifier | undefined;
  /** The zone's revocation feed: tokens of the issuers it covers need it fresh. */
  feed: FeedGuard | undefined;
  apiKeys: ApiKeyVerifier | undefined;
  introspection: Introspector | undefined;
  failures: AuthFailureTracker;
  /** Credential headers never forwarded on this route. */
  strip: ReadonlySet<string>;
  signer: IdentitySigner;
  /** SPIFFE ID prefix of this zone's services: the identity token's audience is one of them. */
  audiencePrefix: string;
  /** service → its audience (`audiencePrefix` + name), built once: the same string, its hash kept, on every request */
  audiences: Map<string, string>;
  /** refuse JWTs without a sender constraint (the route's or the zone's senderConstrained: required) */
  requireBound: boolean;
  /** DPoP proofs seen (each accepted once) and, when the zone asks for them, this gateway's nonces */
  dpop: { replay: ReplayCache; nonces: DpopNonces | undefined };
}

/** The zone's own authority, as it published itself in the state dir. */
function zoneIssuer(ctx: ProvisionContext): { issuer: string; jwksUri: string; jwks?: { keys: [] } } | undefined {
  const file = path.join(ctx.stateDir, 'authority', ctx.zone, 'public.json');
  if (!existsSync(file)) return undefined;
  const data = JSON.parse(readFileSync(file, 'utf8')) as { issuer: string; jwks_uri: string; jwks?: { keys: [] } };
  return { issuer: data.issuer, jwksUri: data.jwks_uri, jwks: data.jwks };
}

function devCa(ctx: ProvisionContext): string | undefined {
  const file = path.join(ctx.stateDir, 'tls', 'dev-ca.pem');
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
}

/** The token verifier of a zone (and its revocation feed), shared by all its routes. */
function tokenVerifier(zone: ZoneAuthentication, ctx: ProvisionContext): { verifier: TokenVerifier; feed?: FeedGuard } {
  return ctx.shared.get(`auth:tokens:${JSON.stringify(zone)}`, () => {
    const td = ctx.topology.topology.trustDomain;
    const authority = ctx.topology.topology.zones[ctx.zone]?.authority as { audience?: string } | undefined;
    const ca = devCa(ctx);
    const configured =
      zone.issuers ??
      (() => {
        const own = authority ? zoneIssuer(ctx) : undefined;
        if (!own) return [];
        return [{ issuer: own.issuer, jwksUri: own.jwksUri, audiences: [authority?.audience ?? `urn:gatehouse:${td}:${ctx.zone}`], algorithms: ['EdDSA', 'ES256'] as const, initial: own.jwks }];
      })();
    const issuers: TrustedIssuer[] = configured.map((i) => ({
      issuer: i.issuer,
      audiences: i.audiences,
      jwks: ctx.shared.get(
        `jwks:${i.jwksUri}`,
        () =>
          createJwksCache({
            uri: i.jwksUri,
            algorithms: [...i.algorithms],
            refreshMs: zone.jwksRefreshSeconds * 1000,
            unknownKidRefetchMs: zone.unknownKidRefetchSeconds * 1000,
            clock: ctx.clock,
            logger: ctx.logger,
            ca,
            initial: 'initial' in i ? (i.initial as { keys: [] } | undefined) : undefined,
          }),
        (c) => c.close(),
      ),
    }));
    const verifier = createTokenVerifier({
      issuers,
      leewaySeconds: zone.leewaySeconds,
      maxTokenBytes: zone.maxTokenBytes,
      cacheSize: zone.tokenCache,
      clock: ctx.clock,
      revokedIds: ctx.shared.get(REVOKED_TOKEN_IDS, () => new Set<string>()),
    });
    const feed = zone.revocationFeed;
    const own = authority ? zoneIssuer(ctx) : undefined;
    if (feed) {
      const feedUrl = feed.url ?? (own ? `${own.issuer}/revocations` : undefined);
      if (!feedUrl) throw new Error('revocationFeed needs a url, or the zone authority (which publishes itself in the state dir)');
      const secret = process.env[feed.clientSecretEnv];
      if (!secret) throw new Error(`environment variable ${feed.clientSecretEnv} (revocation feed client secret) is not set`);
      const poller = ctx.shared.get(
        `auth:revocations:${feedUrl}`,
        () =>
          pollRevocations({
            feedUrl,
            clientId: feed.clientId,
            clientSecret: secret,
            intervalMs: feed.pollSeconds * 1000,
            tokens: verifier,
            logger: ctx.logger,
            ca,
            maxStaleMs: feed.maxStaleSeconds * 1000,
            clock: ctx.clock,
          }),
        (p) => p.close(),
      );
      // the feed answers for the issuer it lies under (the zone authority: <issuer>/revocations)
      const covered = issuers.map((i) => i.issuer).filter((iss) => feedUrl.startsWith(iss.replace(/\/$/, '') + '/'));
      if (covered.length === 0) throw new Error(`revocationFeed ${feedUrl} lies under none of the zone's issuers`);
      return { verifier, feed: { poller, issuers: new Set(covered), refuse: feed.whenStale === 'refuse', retryAfter: feed.pollSeconds, logger: ctx.logger, warned: false } };
    }
    return { verifier };
  });
}

interface FeedGuard {
  poller: RevocationPoller;
  /** Issuers whose tokens the feed answers for. */
  issuers: ReadonlySet<string>;
  refuse: boolean;
  retryAfter: number;
  logger: Logger;
  /** A stale feed was already logged (accept mode logs once per stale period). */
  warned: boolean;
}

const RevocationUnknown = (retryAfter: number) =>
  new GatehouseError('revocation_status_unknown', 'The gateway cannot confirm that this token has not been revoked; retry shortly.',
    { headers: { 'retry-after': String(retryAfter) } },
  );

/**
 * Where the gateway remembers the DPoP proofs it accepted (each once, until it
 * would be too old anyway). In memory per gateway process, unless the zone's
 * rate limits keep their buckets in Redis — the zone's `policies.rate_limit`,
 * else the first route of the zone whose rate_limit does, with
 * `store: { type: redis }`: then the proofs are kept in that Redis too (key
 * <prefix>dpop:<jkt>:<jti>, SET NX with the proof's remaining lifetime), so a
 * proof one replica accepted is refused at every other. When that Redis
 * fails: with the store's failOpen, this process's memory (a replay at
 * another replica is not seen meanwhile; logged); otherwise the proof is
 * refused, 503 replay_check_unavailable (fail closed).
 */
async function dpopReplayCache(ctx: ProvisionContext): Promise<{ cache: ReplayCache; redis?: NonceRedis }> {
  const memory = ctx.shared.get('auth:dpop-replay', () => memoryReplayCache(() => ctx.clock.now()));
  const zone = ctx.topology.topology.zones[ctx.zone];
  const limits = [zone?.policies.rate_limit, ...(zone?.routes ?? []).map((r) => r.policies?.rate_limit)];
  const store = limits.map((l) => (l ? l.store : undefined)).find((st) => st?.type === 'redis');
  if (!store || store.type !== 'redis') return { cache: memory };
  const shared = ctx.shared.get(
    `auth:dpop-replay:redis:${JSON.stringify([store.url, store.prefix, store.timeoutMs])}`,
    () => {
      const client = new Redis(store.url, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        autoResendUnfulfilledCommands: false,
        commandTimeout: store.timeoutMs,
        connectTimeout: Math.max(1000, store.timeoutMs),
        retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
      });
      const u = new URL(store.url);
      const where = `${u.hostname}:${u.port || 6379}`; // never the credentials
      let failing = false;
      client.on('error', (error: Error) => {
        if (!failing) ctx.logger.error({ err: error, redis: where }, 'DPoP replay cache: Redis failing');
        failing = true;
      });
      client.on('ready', () => {
        if (failing) ctx.logger.info({ redis: where }, 'DPoP replay cache: Redis recovered');
        failing = false;
      });
      const cache: ReplayCache = {
        async unique(key, expiresAt) {
          const ttl = Math.max(1, Math.ceil(expiresAt - ctx.clock.now()));
          try {
            return (await client.set(`${store.prefix}dpop:${key}`, '1', 'PX', ttl, 'NX')) === 'OK';
          } catch (error) {
            if (!store.failOpen) throw new GatehouseError('replay_check_unavailable', 'The gateway cannot check this DPoP proof for replay now; retry shortly.', { headers: { 'retry-after': '1' }, cause: error });
            if (!failing) ctx.logger.warn({ err: error, redis: where }, 'DPoP replay cache: Redis unavailable, proofs checked by this gateway alone (failOpen)');
            return memory.unique(key, expiresAt);
          }
        },
      };
      // a first connection before the first proof (enableOfflineQueue is off), waited for once per
      // gateway: one that starts without Redis refuses (or falls back) at once, every route alike
      const ready = once(client, 'ready', { signal: AbortSignal.timeout(1000) }).then(
        () => undefined,
        () => undefined,
      );
      return { client, cache, ready, where };
    },
    (x) => x.client.disconnect(),
  );
  await shared.ready;
  return { cache: shared.cache, redis: { client: shared.client, prefix: store.prefix, where: shared.where } };
}

/** The token of an Authorization header and its scheme (Bearer, or DPoP: RFC 9449 §7.1); '' when the header is neither. */
function credentialOf(header: string | undefined): { scheme: 'Bearer' | 'DPoP'; token: string } | '' | undefined {
  if (header === undefined) return undefined;
  return presentedToken(header) ?? '';
}

const policy: Policy<AuthenticationConfig, AuthenticationState> = {
  id: 'authentication',
  phase: 'authenticate',
  schema: AuthenticationConfig as unknown as z.ZodType<AuthenticationConfig>,
  async provision(config, ctx) {
    const accept = new Set<Method>(config.route.accept);
    const zone = config.zone;
    let introspection: Introspector | undefined;
    if (accept.has('introspection')) {
      if (!zone.introspection) throw new Error('a route accepts introspection but the zone configures no introspection endpoint');
      const i = zone.introspection;
      const secret = process.env[i.clientSecretEnv];
      if (!secret) throw new Error(`environment variable ${i.clientSecretEnv} (introspection client secret) is not set`);
      introspection = ctx.shared.get(
        'auth:introspection',
        () => createIntrospector({ endpoint: i.endpoint, clientId: i.clientId, clientSecret: secret, cacheSeconds: i.cacheSeconds, clock: ctx.clock, ca: devCa(ctx) }),
        (x) => x.close(),
      );
    }
    const jwt = accept.has('jwt') ? tokenVerifier(zone, ctx) : undefined;
    // start with the current revocation list (a failed first read leaves the feed stale: fail closed)
    if (jwt?.feed) await jwt.feed.poller.first;
    const trustDomain = ctx.topology.topology.trustDomain;
    const ttlSeconds = zone.identity.ttlSeconds;
    const signer = await ctx.shared.get(`auth:identity-signer:${ttlSeconds}`, () =>
      openIdentitySigner({ stateDir: ctx.stateDir, zone: ctx.zone, trustDomain, ttlSeconds, clock: ctx.clock }),
    );
    const strip = new Set<string>();
    if (!config.route.forwardToken) {
      strip.add('authorization');
      strip.add('dpop');
    }
    if (accept.has('api_key')) strip.add(zone.apiKeyHeader);
    const { cache: replay, redis } = await dpopReplayCache(ctx);
    // one nonce secret for every replica that shares the replay cache's Redis, else one per process (dpop-nonces.ts)
    const nonces = zone.dpopNonce ? await zoneDpopNonces(ctx, redis) : undefined;
    return {
      requireBound: config.route.senderConstrained === 'required' || zone.senderConstrained === 'required',
      dpop: { replay, nonces },
      strip,
      signer,
      audiencePrefix: `spiffe://${trustDomain}/zone/${ctx.zone}/svc/`,
      audiences: new Map(),
      realm: ctx.zone,
      accept,
      prefer: config.route.prefer,
      apiKeyHeader: zone.apiKeyHeader,
      apiKeyQuery: config.route.apiKeyQuery,
      tokens: jwt?.verifier,
      feed: jwt?.feed,
      apiKeys: accept.has('api_key')
        ? ctx.shared.get('auth:api-keys', () => openApiKeyVerifier(ctx.stateDir, ctx.zone), (v) => v.close())
        : undefined,
      introspection,
      failures: ctx.shared.get(`auth:failures:${JSON.stringify(config.failures)}`, () => new AuthFailureTracker(config.failures, ctx.clock, rateLimitMetricsOf(ctx.shared))),
    };
  },
  onRequest(ex, s) {
    // a source whose credentials keep failing waits, then is blocked, before any credential is looked at
    const wait = s.failures.check(ex.clientAddress);
    if (wait) return wait;
    const decision = authenticate(ex, s);
    if (decision instanceof Promise)
      return decision.then((d) => {
        if (d?.status === 401) s.failures.record(ex.clientAddress);
        return d;
      });
    if (decision?.status === 401) s.failures.record(ex.clientAddress);
    return decision;
  },
  onIdentity(ex, s) {
    ex.stripHeaders = s.strip;
    // a key read from the query string is a credential like the header: the upstream never sees it
    if (s.apiKeyQuery !== undefined) ex.query = withoutParameter(ex.query, s.apiKeyQuery);
    if (ex.identity === undefined) return; // shadow mode let an unauthenticated request pass
    const service = ex.route.config.service;
    let audience = s.audiences.get(service);
    if (audience === undefined) s.audiences.set(service, (audience = s.audiencePrefix + service));
    const token = s.signer.sign(ex.identity, audience);
    if (typeof token === 'string') ex.upstreamHeaders.push(IDENTITY_HEADER, token);
    else return token.then((t) => void ex.upstreamHeaders.push(IDENTITY_HEADER, t));
  },
};

function rejected(error: unknown, s: AuthenticationState): GatehouseError {
  if (error instanceof TokenRejected) return Unauthorized(s.realm, error.reason, 'invalid_token');
  if (error instanceof GatehouseError) return error;
  throw error;
}

function authenticate(ex: Exchange, s: AuthenticationState): GatehouseError | undefined | Promise<GatehouseError | undefined> {
  const credential = credentialOf(ex.headers.authorization);
  if (credential === '') return Unauthorized(s.realm, 'the Authorization header is not a Bearer or DPoP token', 'invalid_request');
  const bearer = credential?.token;
  let apiKey = s.accept.has('api_key') ? headerValue(ex.headers[s.apiKeyHeader]) : undefined;
  if (apiKey === undefined && s.apiKeyQuery !== undefined) apiKey = queryValue(ex.query, s.apiKeyQuery);
  const isJwt = bearer !== undefined && isCompactJws(bearer);
  const offered: Method[] = [];
  if (bearer !== undefined && isJwt && s.accept.has('jwt')) offered.push('jwt');
  if (bearer !== undefined && !isJwt && s.accept.has('introspection')) offered.push('introspection');
  if (bearer !== undefined && isJwt && !s.accept.has('jwt') && s.accept.has('introspection')) offered.push('introspection');
  if (apiKey !== undefined) offered.push('api_key');
  if (offered.length === 0) {
    if (bearer !== undefined) return Unauthorized(s.realm, 'this kind of token is not accepted here', 'invalid_token');
    return Unauthorized(s.realm, 'this route needs a credential');
  }
  let method: Method;
  if (offered.length === 1) method = offered[0];
  else if (s.prefer !== undefined && offered.includes(s.prefer)) method = s.prefer;
  else return BadRequest('the request presents more than one credential', false);
  if (method === 'api_key') {
    const record = s.apiKeys!.verify(apiKey!);
    if (!record) return Unauthorized(s.realm, 'the API key is not valid', 'invalid_token');
    ex.identity = {
      kind: 'consumer',
      sub: record.consumer,
      consumer: record.consumer,
      scopes: new Set(record.scopes),
      roles: new Set(),
      amr: [],
      jti: record.prefix,
      tier: record.tier,
    };
    return undefined;
  }
  // only this zone's JWTs can carry a binding the gateway checks (cnf); an opaque token is a bearer token
  if (method === 'introspection' && (credential!.scheme === 'DPoP' || s.requireBound))
    return Unauthorized(s.realm, 'this route needs a sender-constrained JWT', 'invalid_token');
  let result: Identity | Promise<Identity>;
  try {
    result = method === 'jwt' ? s.tokens!.verify(bearer!) : s.introspection!.verify(bearer!);
  } catch (error) {
    return rejected(error, s);
  }
  if (method === 'introspection') {
    if (result instanceof Promise)
      return result.then(
        (identity) => accepted(ex, s, identity),
        (error: unknown) => rejected(error, s),
      );
    return accepted(ex, s, result);
  }
  if (result instanceof Promise)
    return result.then(
      (identity) => bound(ex, s, identity, credential!),
      (error: unknown) => rejected(error, s),
    );
  return bound(ex, s, result, credential!);
}

/**
 * A verified JWT (fresh or from the cache) held by its sender: the DPoP proof
 * or the connection's certificate must match its `cnf` (sender-constraint.ts).
 * A bearer token presented as Bearer where none is required stays synchronous.
 */
function bound(ex: Exchange, s: AuthenticationState, identity: Identity, credential: { scheme: 'Bearer' | 'DPoP'; token: string }): Decision | Promise<Decision> {
  const binding = tokenBinding(identity);
  if (binding === undefined && credential.scheme === 'Bearer' && !s.requireBound) return accepted(ex, s, identity);
  return checkSenderConstraint({
    scheme: credential.scheme,
    token: credential.token,
    claims: binding ?? {},
    peerCertificate: ex.peerCertificate?.(),
    requireBound: s.requireBound,
    dpop: {
      proof: ex.headers.dpop,
      method: ex.method,
      url: ex.requestUrl?.() ?? `https://${ex.host}${ex.path}`,
      now: () => ex.now,
      replay: s.dpop.replay,
      nonces: s.dpop.nonces,
    },
  }).then(
    () => accepted(ex, s, identity),
    (error: unknown) => {
      // the shared replay cache could not be asked: a 503 decision, not an exception
      if (error instanceof GatehouseError) return error;
      if (!(error instanceof SenderConstraintRejected)) throw error;
      const headers: Record<string, string> = { 'www-authenticate': senderChallenge(s.realm, error) };
      if (error.nonce) headers['dpop-nonce'] = error.nonce;
      return new GatehouseError('unauthorized', error.message, { headers });
    },
  );
}

/** A verified credential: unless the revocation feed that covers its issuer has gone stale (then 503, fail closed). */
function accepted(ex: Exchange, s: AuthenticationState, identity: Identity): GatehouseError | undefined {
  const feed = s.feed;
  if (feed && identity.issuer !== undefined && feed.issuers.has(identity.issuer)) {
    if (!feed.poller.fresh()) {
      // refusals are counted as gatehouse_gateway_refused_total{reason="revocation_status_unknown"}
      if (feed.refuse) return RevocationUnknown(feed.retryAfter);
      if (!feed.warned) feed.logger.warn({ issuer: identity.issuer }, 'revocation feed is stale; tokens pass unchecked for revocation (whenStale: accept)');
      feed.warned = true;
    } else feed.warned = false;
  }
  ex.identity = identity;
  return undefined;
}

/** Three dot-separated parts, as a JWS in compact form has (counted without splitting a token on every request). */
function isCompactJws(token: string): boolean {
  const first = token.indexOf('.');
  if (first === -1) return false;
  const second = token.indexOf('.', first + 1);
  return second !== -1 && token.indexOf('.', second + 1) === -1;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** `query` without any parameter called `name` (as sent or percent-decoded); the rest byte for byte. */
export function withoutParameter(query: string, name: string): string {
  if (query === '') return query;
  const kept = query.split('&').filter((part) => {
    const eq = part.indexOf('=');
    const raw = eq === -1 ? part : part.slice(0, eq);
    if (raw === name) return false;
    try {
      return decodeURIComponent(raw.replaceAll('+', ' ')) !== name;
    } catch {
      return true;
    }
  });
  return kept.join('&');
}

function queryValue(query: string, name: string): string | undefined {
  if (query === '') return undefined;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq) === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1));
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

export default policy;
