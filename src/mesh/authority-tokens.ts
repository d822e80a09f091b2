// Tokens a service gets from a zone's authority, for createClient:
//   serviceToken()   client credentials: the service's own token in that zone;
//   exchange(token)  RFC 8693 token exchange: a user's token (from this zone or
//                    a zone the authority trusts) for one of that zone naming
//                    the user as subject and this service as actor (`act`).
// The service authenticates with private_key_jwt (a signed assertion),
// tls_client_auth (its X509-SVID) or a client secret. Tokens are cached until
// `refreshAt` (80%) of their lifetime; concurrent callers share one request;
// failures are not cached. Tokens and assertions never reach a log.
// With tls_client_auth a token may be bound to the certificate it was fetched
// with (RFC 8705 cnf.x5t#S256): each cached token remembers that certificate,
// and once the workload certificate is renewed (createClient then calls with
// the new one) a token of the old certificate is not handed out again — a new
// one is fetched with the new certificate before the call, so a renewal costs
// no failed request.
import { createHash, randomUUID } from 'node:crypto';
import type { Agent } from 'undici';
import { importJWK, SignJWT, type JWK } from 'jose';
import { systemClock, type Clock } from '../shared/clock.ts';
import type { WorkloadIdentity } from '../pki/workload-identity.ts';
import type { IdentityManager } from '../pki/identity-manager.ts';
import { createServiceTokenCache, type FetchedToken } from './service-token-cache.ts';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export type ClientAuthentication =
  | { method: 'private_key_jwt'; privateJwk: JWK }
  | { method: 'tls_client_auth'; identity: WorkloadIdentity | IdentityManager }
  | { method: 'client_secret_basic'; clientSecret: string };

export interface AuthorityTokensOptions {
  /** The zone authority's issuer (https://host:port). */
  issuer: string;
  clientId: string;
  auth: ClientAuthentication;
  /** PEM trust anchors of the authority's TLS certificate; absent: the system's CAs. */
  ca?: string;
  /** Scope to ask for (space-separated); absent: what the authority grants by default. */
  scope?: string;
  /** Audience (resource) to ask for; absent: the zone's own. */
  audience?: string;
  /** Fraction of a token's lifetime after which a new one is fetched (default 0.8). */
  refreshAt?: number;
  /** Exchanged tokens kept at most (default 1000); the oldest go first. */
  maxCached?: number;
  timeoutMs?: number;
  clock?: Clock;
}

export interface AuthorityTokens {
  readonly issuer: string;
  readonly clientId: string;
  /** This service's own token (client credentials). */
  serviceToken(): Promise<string>;
  /** `subjectToken` exchanged for a token of this zone naming this service as actor. */
  exchange(subjectToken: string): Promise<string>;
  /** Forget a cached token (after the target answered 401), or all of them. */
  invalidate(token?: string): void;
  close(): Promise<void>;
}

/** The authority refused or failed a token request. `oauthError` is its `error` code when it sent one. */
export class TokenRequestError extends Error {
  readonly status: number;
  readonly oauthError: string | undefined;
  constructor(status: number, oauthError: string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TokenRequestError';
    this.status = status;
    this.oauthError = oauthError;
  }
}

const MAX_ANSWER = 64 * 1024;

export function createAuthorityTokens(options: AuthorityTokensOptions): AuthorityTokens {
  const clock = options.clock ?? systemClock;
  const refreshAt = options.refreshAt ?? 0.8;
  const maxCached = options.maxCached ?? 1000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const issuer = new URL(options.issuer);
  if (issuer.protocol !== 'https:') throw new Error('the authority is called over https only');
  const issuerString = options.issuer.replace(/\/+$/, '');

  // one connection pool per client certificate (tls_client_auth rotates with the identity);
  // undici loads with the first token request: a service that never asks does not load it
  let agent: { serial: string; agent: Agent } | undefined;
  const retired: Agent[] = [];
  const identityOf = () => {
    if (options.auth.method !== 'tls_client_auth') return undefined;
    const i = options.auth.identity;
    return typeof (i as IdentityManager).current === 'function' ? (i as IdentityManager).current() : (i as WorkloadIdentity);
  };
  const dispatcher = async (): Promise<Agent> => {
    const { Agent } = await import('undici');
    const id = identityOf();
    const serial = id?.serial ?? '';
    if (!agent || agent.serial !== serial) {
      if (agent) {
        // requests in flight finish on the old pool; it closes after a grace period
        const old = agent.agent;
        retired.push(old);
        setTimeout(() => {
          retired.splice(retired.indexOf(old), 1);
          void old.close();
        }, 30_000).unref();
      }
      agent = {
        serial,
        agent: new Agent({
          connect: { ca: options.ca, minVersion: 'TLSv1.2', ...(id ? { cert: id.certPem, key: id.keyPem } : {}) },
          keepAliveTimeout: 4_000,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        }),
      };
    }
    return agent.agent;
  };

  let tokenEndpoint: Promise<string> | undefined;
  const discover = () =>
    (tokenEndpoint ??= (async () => {
      const { request } = await import('undici');
      const res = await request(`${issuerString}/.well-known/openid-configuration`, { dispatcher: await dispatcher(), headersTimeout: timeoutMs });
      const text = await readLimited(res.body);
      if (res.statusCode !== 200) throw new TokenRequestError(res.statusCode, undefined, `the authority's metadata answered ${res.statusCode}`);
      const md = JSON.parse(text) as { issuer?: unknown; token_endpoint?: unknown };
      if (md.issuer !== issuerString || typeof md.token_endpoint !== 'string' || new URL(md.token_endpoint).origin !== issuer.origin)
        throw new TokenRequestError(0, undefined, 'the authority metadata does not match its issuer');
      return md.token_endpoint;
    })().catch((error: unknown) => {
      tokenEndpoint = undefined;
      throw error;
    }));

  const privateKey =
    options.auth.method === 'private_key_jwt'
      ? importJWK(options.auth.privateJwk, options.auth.privateJwk.alg ?? algOf(options.auth.privateJwk))
      : undefined;
  privateKey?.catch(() => {}); // reported on first use

  async function tokenRequest(params: Record<string, string>): Promise<FetchedToken> {
    const endpoint = await discover();
    const body = new URLSearchParams(params);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    const auth = options.auth;
    if (auth.method === 'client_secret_basic') {
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(auth.clientSecret)}`).toString('base64')}`;
    } else {
      body.set('client_id', options.clientId);
      if (auth.method === 'private_key_jwt') {
        const jwk = auth.privateJwk;
        const now = Math.floor(clock.now() / 1000);
        const assertion = await new SignJWT({ jti: randomUUID() })
          .setProtectedHeader({ alg: jwk.alg ?? algOf(jwk), ...(jwk.kid ? { kid: jwk.kid } : {}) })
          .setIssuer(options.clientId)
          .setSubject(options.clientId)
          .setAudience(issuerString)
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .sign(await privateKey!);
        body.set('client_assertion_type', JWT_BEARER_ASSERTION);
        body.set('client_assertion', assertion);
      }
    }
    const started = clock.now();
    let res;
    try {
      const { request } = await import('undici');
      res = await request(endpoint, { method: 'POST', headers, body: body.toString(), dispatcher: await dispatcher(), headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    } catch (error) {
      throw new TokenRequestError(0, undefined, `the authority ${issuerString} cannot be reached`, { cause: error });
    }
    const text = await readLimited(res.body);
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      // reported below
    }
    if (res.statusCode !== 200) {
      const code = typeof json.error === 'string' ? json.error.slice(0, 64) : undefined;
      throw new TokenRequestError(res.statusCode, code, `the authority refused the token request (${res.statusCode}${code ? ` ${code}` : ''})`);
    }
    if (typeof json.access_token !== 'string' || typeof json.expires_in !== 'number' || !(json.expires_in > 0))
      throw new TokenRequestError(res.statusCode, undefined, 'the authority answered without a usable token');
    // a slow answer ate into the lifetime
    const spent = (clock.now() - started) / 1000;
    return { accessToken: json.access_token, expiresIn: Math.max(1, json.expires_in - spent) };
  }

  const extra = () => ({
    ...(options.scope ? { scope: options.scope } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
  });

  /** The serial of the certificate a token request made now presents ('' without tls_client_auth). */
  const certificateSerial = () => identityOf()?.serial ?? '';

  // the certificate the cached own token was fetched with
  let ownSerial: string | undefined;
  const own = createServiceTokenCache({
    clock,
    refreshAt,
    fetch: async () => {
      const serial = certificateSerial();
      const t = await tokenRequest({ grant_type: 'client_credentials', ...extra() });
      ownSerial = serial;
      return t;
    },
  });

  const exchanged = new Map<string, { token: string; refreshAfter: number; serial: string }>();
  const inflight = new Map<string, Promise<string>>();
  // per subject token and certificate: an exchange made with a certificate renewed since is made again
  const keyOf = (subject: string, serial: string) => createHash('sha256').update(subject).update('\0').update(serial).digest('base64url');

  function remember(key: string, token: string, refreshAfter: number, serial: string) {
    if (exchanged.size >= maxCached) {
      const now = clock.now();
      for (const [k, v] of exchanged) if (v.refreshAfter <= now || v.serial !== serial) exchanged.delete(k);
      while (exchanged.size >= maxCached) exchanged.delete(exchanged.keys().next().value!);
    }
    exchanged.set(key, { token, refreshAfter, serial });
  }

  return {
    issuer: issuerString,
    clientId: options.clientId,
    serviceToken() {
      // renewed since the cached token was fetched: it may be bound to the old certificate
      if (ownSerial !== undefined && ownSerial !== certificateSerial()) {
        ownSerial = undefined;
        own.invalidate();
      }
      return own.get();
    },
    exchange(subjectToken: string) {
      if (typeof subjectToken !== 'string' || subjectToken.length === 0 || subjectToken.length > 8192)
        return Promise.reject(new TokenRequestError(0, 'invalid_grant', 'the subject token is malformed'));
      const serial = certificateSerial();
      const key = keyOf(subjectToken, serial);
      const hit = exchanged.get(key);
      if (hit && clock.now() < hit.refreshAfter) return Promise.resolve(hit.token);
      let p = inflight.get(key);
      if (!p) {
        p = (async () => {
          try {
            const start = clock.now();
            const t = await tokenRequest({
              grant_type: TOKEN_EXCHANGE_GRANT,
              subject_token: subjectToken,
              subject_token_type: ACCESS_TOKEN_TYPE,
              requested_token_type: ACCESS_TOKEN_TYPE,
              ...extra(),
            });
            remember(key, t.accessToken, start + t.expiresIn * 1000 * refreshAt, serial);
            return t.accessToken;
          } finally {
            inflight.delete(key);
          }
        })();
        inflight.set(key, p);
      }
      return p;
    },
    invalidate(token?: string) {
      if (token === undefined) {
        own.invalidate();
        exchanged.clear();
        return;
      }
      own.invalidate();
      for (const [k, v] of exchanged) if (v.token === token) exchanged.delete(k);
    },
    async close() {
      exchanged.clear();
      const agents = [...retired, ...(agent ? [agent.agent] : [])];
      agent = undefined;
      retired.length = 0;
      await Promise.all(agents.map((a) => a.close()));
    },
  };
}

function algOf(jwk: JWK): string {
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return 'ES384';
  if (jwk.kty === 'RSA') return 'PS256';
  throw new Error('the client key has no usable algorithm (set `alg`)');
}

async function readLimited(body: AsyncIterable<Buffer | Uint8Array>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += c.length;
    if (size > MAX_ANSWER) throw new TokenRequestError(0, undefined, 'the authority answer is too large');
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks).toString('utf8');
}
