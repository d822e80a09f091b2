// Clients of a zone: created by the admin CLI (or the dev seed), stored in
// the database. A client secret has 256 bits of entropy, is shown once, and
// is stored only as HMAC-SHA256 under a server key: a slow password hash buys
// nothing for a random secret and would make every token request slow.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { JWK } from 'jose';
import type { Database } from './db/schema.ts';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** OpenID scopes live in the client's `scope`; API scopes in `gh_api_scopes` (oidc-provider keeps the two apart). */
export const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email'];
export const API_SCOPES_PROPERTY = 'gh_api_scopes';
/** A client with this metadata set to true may read GET /revocations (revocation-feed.ts): the zone's gateway. */
export const REVOCATION_FEED_PROPERTY = 'gh_revocation_feed';
/** A client with this metadata set to true is the zone's own (first party): its users are not asked to consent unless it asks (prompt=consent). */
export const FIRST_PARTY_PROPERTY = 'gh_first_party';

export function isFirstParty(client: { metadata(): Record<string, unknown> }): boolean {
  return client.metadata()[FIRST_PARTY_PROPERTY] === true;
}

export function apiScopesOf(client: { metadata(): Record<string, unknown> }): Set<string> {
  const v = client.metadata()[API_SCOPES_PROPERTY];
  return new Set(typeof v === 'string' ? v.split(' ').filter(Boolean) : []);
}

export type ClientAuthMethod = 'client_secret_basic' | 'private_key_jwt' | 'tls_client_auth' | 'none';
export type GrantType = 'authorization_code' | 'refresh_token' | 'client_credentials' | typeof TOKEN_EXCHANGE;

export interface ClientSpec {
  clientId?: string;
  grantTypes: GrantType[];
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  scope: string;
  authMethod: ClientAuthMethod;
  /** public keys for private_key_jwt */
  jwks?: { keys: JWK[] };
  /** for tls_client_auth: the SAN URI (SPIFFE ID) the client certificate must carry */
  tlsSanUri?: string;
  name?: string;
  /** may read the revocation feed (GET /revocations); for the zone's gateway. With no grant types it can do nothing else. */
  revocationFeed?: boolean;
  /** the zone's own application: users are not asked to consent (unless prompt=consent). Absent: false, a third party. */
  firstParty?: boolean;
  /** RFC 8705 §3: access tokens are bound to the client certificate (cnf.x5t#S256); needs tls_client_auth */
  certificateBound?: boolean;
  /** RFC 9449 §5.2: the token endpoint refuses requests without a DPoP proof (dpop_bound_access_tokens) */
  dpopBound?: boolean;
}

export interface ClientSummary {
  client_id: string;
  grant_types: string[];
  redirect_uris: string[];
  scope: string;
  token_endpoint_auth_method: string;
  revocation_feed: boolean;
  first_party: boolean;
  sender_constraint?: 'mtls' | 'dpop';
  created_at: string;
}

export class ClientError extends Error {
  readonly code = 'client_error';
}

const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$/;

export function hashClientSecret(key: Buffer, secret: string): string {
  return createHmac('sha256', key).update(secret).digest('base64url');
}

export function compareClientSecret(key: Buffer, stored: string, presented: unknown): boolean {
  if (typeof presented !== 'string' || presented.length === 0 || presented.length > 512) return false;
  const a = Buffer.from(hashClientSecret(key, presented));
  const b = Buffer.from(stored);
  return a.length === b.length && timingSafeEqual(a, b);
}

function checkRedirectUri(uri: string): void {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new ClientError(`redirect URI ${JSON.stringify(uri)} is not a URL`);
  }
  if (u.hash) throw new ClientError('a redirect URI has no fragment');
  if (u.username || u.password) throw new ClientError('a redirect URI has no userinfo');
  const loopback = u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost';
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback))
    throw new ClientError('a redirect URI is https (or http on a loopback address)');
}

export class ClientRegistry {
  readonly #db: Kysely<Database>;
  readonly #secretKey: Buffer;
  readonly #now: () => number;

  constructor(db: Kysely<Database>, secretKey: Buffer, now: () => number) {
    this.#db = db;
    this.#secretKey = secretKey;
    this.#now = now;
  }

  /** Adds a client; returns its metadata and, for secret clients, the secret (shown once). */
  async add(spec: ClientSpec): Promise<{ client_id: string; client_secret?: string }> {
    const clientId = spec.clientId ?? `client-${randomBytes(9).toString('base64url')}`;
    if (!CLIENT_ID.test(clientId)) throw new ClientError('client_id is 3-128 letters, digits, . _ -');
    // a client without grant types is a revocation-feed reader and nothing else
    // (oidc-provider never sees it: oidc-adapter.ts), so it holds no scope either
    if (spec.grantTypes.length === 0 && !spec.revocationFeed) throw new ClientError('a client needs at least one grant type');
    if (spec.grantTypes.length === 0 && (spec.scope.trim() !== '' || spec.redirectUris?.length))
      throw new ClientError('a feed-only client (no grant type) has no scope and no redirect URI');
    const codeFlow = spec.grantTypes.includes('authorization_code');
    const redirectUris = spec.redirectUris ?? [];
    if (codeFlow && redirectUris.length === 0) throw new ClientError('authorization_code needs a redirect URI');
    redirectUris.forEach(checkRedirectUri);
    if (spec.authMethod === 'none' && spec.grantTypes.some((g) => g !== 'authorization_code' && g !== 'refresh_token'))
      throw new ClientError('a public client may only use authorization_code (with PKCE) and refresh_token');
    if (spec.authMethod === 'private_key_jwt' && !spec.jwks?.keys.length)
      throw new ClientError('private_key_jwt needs the client public key (jwks)');
    if (spec.authMethod === 'tls_client_auth' && !spec.tlsSanUri)
      throw new ClientError('tls_client_auth needs the SAN URI of the client certificate');
    const scopes = [...new Set(spec.scope.split(' ').filter(Boolean))];
    const metadata: Record<string, unknown> = {
      client_id: clientId,
      client_name: spec.name,
      grant_types: spec.grantTypes,
      response_types: codeFlow ? ['code'] : [],
      redirect_uris: redirectUris,
      post_logout_redirect_uris: spec.postLogoutRedirectUris ?? [],
      scope: scopes.filter((x) => OIDC_SCOPES.includes(x)).join(' ') || undefined,
      [API_SCOPES_PROPERTY]: scopes.filter((x) => !OIDC_SCOPES.includes(x)).join(' '),
      token_endpoint_auth_method: spec.authMethod,
      id_token_signed_response_alg: undefined,
    };
    if (spec.jwks) metadata.jwks = { keys: spec.jwks.keys.map((k) => ({ ...k, d: undefined })) };
    if (spec.tlsSanUri) metadata.tls_client_auth_san_uri = spec.tlsSanUri;
    if (spec.firstParty) metadata[FIRST_PARTY_PROPERTY] = true;
    if (spec.certificateBound) {
      if (spec.authMethod !== 'tls_client_auth') throw new ClientError('certificate-bound tokens need tls_client_auth (the certificate the token is bound to)');
      metadata.tls_client_certificate_bound_access_tokens = true;
    }
    if (spec.dpopBound) metadata.dpop_bound_access_tokens = true;
    if (spec.revocationFeed) {
      if (spec.authMethod !== 'client_secret_basic' && spec.authMethod !== 'tls_client_auth')
        throw new ClientError('the revocation feed is read with client_secret_basic or tls_client_auth');
      metadata[REVOCATION_FEED_PROPERTY] = true;
    }
    let secret: string | undefined;
    if (spec.authMethod === 'client_secret_basic') secret = randomBytes(32).toString('base64url');
    const inserted = await this.#db
      .insertInto('clients')
      .values({
        client_id: clientId,
        metadata: JSON.stringify(metadata),
        secret_hash: secret ? hashClientSecret(this.#secretKey, secret) : null,
        created_at: this.#now(),
      })
      .onConflict((oc) => oc.column('client_id').doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) throw new ClientError(`client ${clientId} already exists`);
    return secret ? { client_id: clientId, client_secret: secret } : { client_id: clientId };
  }

  async list(): Promise<ClientSummary[]> {
    const rows = await this.#db.selectFrom('clients').select(['metadata', 'created_at']).orderBy('client_id').execute();
    return rows.map((r) => {
      const m = JSON.parse(r.metadata) as Record<string, any>;
      return {
        client_id: m.client_id,
        grant_types: m.grant_types,
        redirect_uris: m.redirect_uris ?? [],
        scope: [m.scope, m[API_SCOPES_PROPERTY]].filter(Boolean).join(' '),
        token_endpoint_auth_method: m.token_endpoint_auth_method,
        revocation_feed: m[REVOCATION_FEED_PROPERTY] === true,
        first_party: m[FIRST_PARTY_PROPERTY] === true,
        sender_constraint: m.tls_client_certificate_bound_access_tokens ? 'mtls' : m.dpop_bound_access_tokens ? 'dpop' : undefined,
        created_at: new Date(Number(r.created_at)).toISOString(),
      };
    });
  }

  /** The stored metadata and secret hash of a client (for the authority's own endpoints). */
  async find(clientId: string): Promise<{ metadata: Record<string, unknown>; secretHash: string | null } | undefined> {
    if (!CLIENT_ID.test(clientId)) return undefined;
    const r = await this.#db.selectFrom('clients').select(['metadata', 'secret_hash']).where('client_id', '=', clientId).executeTakeFirst();
    return r ? { metadata: JSON.parse(r.metadata) as Record<string, unknown>, secretHash: r.secret_hash } : undefined;
  }

  async exists(clientId: string): Promise<boolean> {
    return (await this.#db.selectFrom('clients').select('client_id').where('client_id', '=', clientId).executeTakeFirst()) !== undefined;
  }

  /** Removes the client and every grant, code and refresh token issued to it. */
  async remove(clientId: string): Promise<boolean> {
    const r = await this.#db.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
    if (Number(r.numDeletedRows) === 0) return false;
    // grants carry clientId in their payload; find them and drop everything bound to them
    const grants = await this.#db
      .selectFrom('oidc_models')
      .select(['id', 'payload'])
      .where('model', '=', 'Grant')
      .execute();
    for (const g of grants) {
      if ((JSON.parse(g.payload) as { clientId?: string }).clientId === clientId)
        await this.#db.deleteFrom('oidc_models').where('grant_id', '=', g.id).execute();
    }
    await this.#db
      .updateTable('token_index')
      .set({ revoked: 1, revoked_at: this.#now() })
      .where('client_id', '=', clientId)
      .where('revoked', '=', 0)
      .execute();
    return true;
  }
}
