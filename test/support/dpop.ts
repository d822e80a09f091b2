// A DPoP client key (RFC 9449) and its proofs, as a real client makes them:
// ES256, typ dpop+jwt, the public JWK in the header, htm/htu/iat/jti, and
// `ath` (the hash of the access token) when a resource is called.
import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { request, type Dispatcher } from 'undici';

export interface DpopKey {
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
  /** RFC 7638 thumbprint: what cnf.jkt of a token bound to this key says */
  jkt: string;
}

export async function dpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, publicKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

export interface ProofClaims {
  htm: string;
  htu: string;
  /** the access token the proof goes with (ath); absent at the token endpoint */
  token?: string;
  nonce?: string;
  /** seconds; default now */
  iat?: number;
  jti?: string;
  /** a header key other than the signing key's (a forgery) */
  jwk?: JWK;
}

export function dpopProof(key: DpopKey, c: ProofClaims): Promise<string> {
  const payload: Record<string, unknown> = { htm: c.htm, htu: c.htu, iat: c.iat ?? Math.floor(Date.now() / 1000), jti: c.jti ?? randomUUID() };
  if (c.token !== undefined) payload.ath = createHash('sha256').update(c.token).digest('base64url');
  if (c.nonce !== undefined) payload.nonce = c.nonce;
  return new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: c.jwk ?? key.jwk }).sign(key.privateKey);
}

/** Headers presenting a DPoP-bound `token` for one request (a fresh proof each call). */
export async function dpopHeaders(key: DpopKey, token: string, method: string, url: string): Promise<{ authorization: string; dpop: string }> {
  const htu = new URL(url);
  htu.search = htu.hash = '';
  return { authorization: `DPoP ${token}`, dpop: await dpopProof(key, { htm: method, htu: htu.href, token }) };
}

/**
 * A one-zone topology (`partner`: an authority with catalog:read and a gateway
 * in front of `upstream`) whose route /bound takes only sender-constrained
 * tokens; `zone` and `routes`: more YAML for the zone and after /bound.
 */
export function boundRouteTopology(trustDomain: string, upstream: string, more: { zone?: string; routes?: string } = {}): string {
  return `version: 1
trustDomain: ${trustDomain}
zones:
  partner:
    authority:
      listen: 127.0.0.1:0
      scopes: [catalog:read]
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    authFailures: { freeFailures: 5000, maxFailures: 10000 }${more.zone ?? ''}
    routes:
      - { name: bound, path: /bound, service: app, auth: { scopes: [catalog:read], senderConstrained: required } }${more.routes ?? ''}
services:
  app: { zone: partner, upstream: '${upstream}' }
`;
}

/**
 * The client-credentials grant of the example's seeded demo service of a zone
 * (the confidential client of dev-credentials.json) at `authority`; with
 * `key`, a DPoP proof goes along and the token is bound to it.
 */
export async function demoServiceToken(o: {
  dispatcher: Dispatcher;
  authority: string;
  clients: { client_id: string; client_secret?: string; grant_types: string[] }[];
  scope: string;
  key?: DpopKey;
}): Promise<{ status: number; token?: string; body: Record<string, any> }> {
  const client = o.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  const endpoint = o.authority + '/token';
  const r = await request(endpoint, {
    dispatcher: o.dispatcher,
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret!)}`).toString('base64'),
      ...(o.key ? { dpop: await dpopProof(o.key, { htm: 'POST', htu: endpoint }) } : {}),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: o.scope }).toString(),
  });
  const body = (await r.body.json()) as Record<string, any>;
  return { status: r.statusCode, token: typeof body.access_token === 'string' ? body.access_token : undefined, body };
}
