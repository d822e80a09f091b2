// Checks a zone's access tokens inside a service: a JWT (`typ: at+jwt`) signed
// by the zone authority (keys from its JWKS over HTTPS, cached and refetched
// on an unknown key id), for the expected audience, not expired. Used by
// services that act for a user (the subject) — and read who acts for them
// (`act`, RFC 8693) — whatever the gateway in front has already checked.
// A sender-constrained token (cnf) is checked with its request: the DPoP
// proof, or the mTLS certificate the caller connected with (verifyRequest).
import type { Agent } from 'undici';
import { createRemoteJWKSet, customFetch, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { systemClock, type Clock } from '../shared/clock.ts';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { checkSenderConstraint, memoryReplayCache, presentedToken, SenderConstraintRejected } from '../shared/sender-constraint.ts';

export interface AccessTokenVerifierOptions {
  /** The zone authority's issuer (https://host:port); its metadata names the JWKS. */
  issuer: string;
  /** The audience tokens must carry (the zone's API, e.g. urn:gatehouse:<td>:<zone>). */
  audience: string | string[];
  /** PEM trust anchors of the authority's TLS certificate; absent: the system's CAs. */
  ca?: string;
  algorithms?: string[];
  /** Seconds of clock skew tolerated (default 5). */
  clockToleranceSeconds?: number;
  clock?: Clock;
  /** verifyRequest refuses bearer tokens (no cnf): only DPoP or certificate-bound tokens. Default false. */
  requireSenderConstrained?: boolean;
}

export interface VerifiedAccessToken {
  sub: string;
  /** The actor chain (RFC 8693 `act`): who acts for the subject, outermost first. */
  actors: string[];
  scopes: string[];
  clientId?: string;
  claims: JWTPayload;
}

export interface AccessTokenVerifier {
  /**
   * Resolves with the token's claims; rejects when it is not a valid token of this zone and audience.
   * A sender-constrained token (cnf) is refused, unless `o.senderCheckedBy` says who checked its
   * binding (a gateway that relays the token: the service's peer is then the gateway, not the sender);
   * a token presented by its sender directly is checked with verifyRequest.
   */
  verify(token: string, o?: { senderCheckedBy?: 'gateway' }): Promise<VerifiedAccessToken>;
  /**
   * The access token of an incoming request (`Authorization: Bearer` or `DPoP`), with its sender
   * constraint checked: a DPoP proof for this method and `url` (RFC 9449), or the TLS client
   * certificate of this connection (RFC 8705). Rejects with SenderConstraintRejected (its
   * `challenge`, `error` and `nonce` make the 401's WWW-Authenticate: senderChallenge) or an Error.
   */
  verifyRequest(req: IncomingMessage, url: string): Promise<VerifiedAccessToken>;
  close(): Promise<void>;
}

export function createAccessTokenVerifier(options: AccessTokenVerifierOptions): AccessTokenVerifier {
  const clock = options.clock ?? systemClock;
  const issuer = options.issuer.replace(/\/+$/, '');
  if (new URL(issuer).protocol !== 'https:') throw new Error('the authority is called over https only');
  // undici loads with the first key fetch: a verifier that is never handed a token does not load it
  let agent: Agent | undefined;
  const fetchVia = (async (url: string, init: RequestInit) => {
    const { Agent, fetch: undiciFetch } = await import('undici');
    agent ??= new Agent({ connect: { ca: options.ca, minVersion: 'TLSv1.2' }, headersTimeout: 10_000, bodyTimeout: 10_000 });
    return undiciFetch(url, { ...(init as object), dispatcher: agent });
  }) as unknown as typeof fetch;

  let keys: Promise<JWTVerifyGetKey> | undefined;
  const jwks = () =>
    (keys ??= (async () => {
      const res = await fetchVia(`${issuer}/.well-known/openid-configuration`, { headers: { accept: 'application/json' } });
      if (res.status !== 200) throw new Error(`the authority's metadata answered ${res.status}`);
      const md = (await res.json()) as { issuer?: unknown; jwks_uri?: unknown };
      if (md.issuer !== issuer || typeof md.jwks_uri !== 'string' || new URL(md.jwks_uri).origin !== new URL(issuer).origin)
        throw new Error('the authority metadata does not match its issuer');
      return createRemoteJWKSet(new URL(md.jwks_uri), { [customFetch]: fetchVia as never, cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 });
    })().catch((error: unknown) => {
      keys = undefined;
      throw error;
    }));

  const replay = memoryReplayCache(() => clock.now());
  const check = async (token: string): Promise<VerifiedAccessToken> => {
    if (typeof token !== 'string' || token.length === 0 || token.length > 8192) throw new Error('malformed access token');
    const { payload } = await jwtVerify(token, await jwks(), {
      issuer,
      audience: options.audience,
      typ: 'at+jwt',
      algorithms: options.algorithms ?? ['EdDSA', 'ES256'],
      currentDate: new Date(clock.now()),
      clockTolerance: options.clockToleranceSeconds ?? 5,
      requiredClaims: ['sub', 'exp'],
    });
    const actors: string[] = [];
    let act = payload.act as { sub?: unknown; act?: unknown } | undefined;
    for (let depth = 0; act && typeof act === 'object' && depth < 8; depth++) {
      if (typeof act.sub === 'string') actors.push(act.sub);
      act = act.act as typeof act;
    }
    return {
      sub: payload.sub!,
      actors,
      scopes: typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
      clientId: typeof payload.client_id === 'string' ? payload.client_id : undefined,
      claims: payload,
    };
  };

  return {
    async verify(token: string, o?: { senderCheckedBy?: 'gateway' }) {
      const verified = await check(token);
      if (verified.claims.cnf !== undefined && o?.senderCheckedBy !== 'gateway') throw new SenderConstraintRejected('Bearer', 'invalid_token', 'a sender-constrained token must be checked with its request (verifyRequest)');
      return verified;
    },
    async verifyRequest(req: IncomingMessage, url: string) {
      const presented = presentedToken(req.headers.authorization);
      if (!presented) throw new SenderConstraintRejected('Bearer', 'invalid_request', 'no Bearer or DPoP access token');
      const verified = await check(presented.token);
      const tls = req.socket as TLSSocket;
      await checkSenderConstraint({
        scheme: presented.scheme,
        token: presented.token,
        claims: verified.claims as Record<string, unknown>,
        peerCertificate: typeof tls.getPeerCertificate === 'function' ? tls.getPeerCertificate(false)?.raw : undefined,
        requireBound: options.requireSenderConstrained,
        dpop: { proof: req.headers.dpop, method: req.method ?? '', url, now: () => clock.now(), replay },
      });
      return verified;
    },
    close: async () => agent?.close(),
  };
}

/** The bearer token of an Authorization header, or undefined (absent, another scheme, or malformed). */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined;
  const m = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/i.exec(header.trim());
  return m ? m[1] : undefined;
}
