// A DPoP client key (RFC 9449) and its proofs, as a real client makes them:
// ES256, typ dpop+jwt, the public JWK in the header, htm/htu/iat/jti, and
// `ath` (the hash of the access token) when a resource is called.
import { request, type Dispatcher } from 'undici';
import { dpopProof, type DpopKey } from '../../src/shared/dpop-client.ts';

// the client side of DPoP is the product's own (the probe uses it too)
export { dpopKey, dpopProof, dpopHeaders, type DpopKey, type ProofClaims } from '../../src/shared/dpop-client.ts';

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
