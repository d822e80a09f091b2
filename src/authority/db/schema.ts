// Tables of the authority. Times are milliseconds since the epoch (BIGINT);
// JSON is stored as text so both back ends read it the same way.
import type { Generated } from 'kysely';

export interface OidcModelTable {
  /** oidc-provider model name: Session, Grant, AuthorizationCode, RefreshToken, Interaction … */
  model: string;
  id: string;
  payload: string;
  grant_id: string | null;
  user_code: string | null;
  uid: string | null;
  /** null: no expiry */
  expires_at: number | null;
  consumed_at: number | null;
}

export interface ClientTable {
  client_id: string;
  /** oidc-provider client metadata, without any secret */
  metadata: string;
  /** HMAC-SHA256 of the secret under the zone's secret-hash key; null for non-secret clients */
  secret_hash: string | null;
  created_at: number;
}

export interface UserTable {
  id: string;
  username: string;
  password_hash: string;
  /** TOTP secret, encrypted under the key-encryption key; null: not enrolled */
  totp_secret: string | null;
  /** last accepted TOTP time step (a code is accepted once per step) */
  totp_last_step: number;
  locked: number;
  /** extra user claims (email, name …) as JSON */
  claims: string;
  created_at: number;
}

export interface KeyTable {
  kid: string;
  alg: string;
  public_jwk: string;
  /** private JWK, encrypted under the key-encryption key */
  private_jwk: string;
  created_at: number;
  /** the key may sign from this time on (it is published from created_at) */
  sign_from: number;
  /** null: published; otherwise removed from JWKS at this time */
  unpublish_at: number | null;
}

export interface SecretTable {
  name: string;
  /** encrypted under the key-encryption key */
  value: string;
}

export interface ThrottleTable {
  key: string;
  failures: number;
  last_failure: number;
  locked_until: number;
}

export interface MfaPendingTable {
  uid: string;
  account_id: string;
  expires_at: number;
}

export interface TokenIndexTable {
  jti: string;
  client_id: string;
  grant_id: string | null;
  expires_at: number;
  revoked: number;
  /** when it was revoked (ms); null while live. What the gateway's revocation feed reads. */
  revoked_at: number | null;
  /** exchanged tokens (RFC 8693): the jti and issuer of the subject token; null otherwise */
  subject_jti?: string | null;
  subject_iss?: string | null;
}

export interface WebAuthnCredentialTable {
  /** credential id, base64url */
  id: string;
  user_id: string;
  /** COSE public key, base64url */
  public_key: string;
  /** last signature counter seen; an assertion must go above it (unless both are 0) */
  counter: number;
  /** JSON array of transports the browser reported */
  transports: string;
  /** 'singleDevice' (hardware-bound: amr hwk) or 'multiDevice' (synced passkey: amr swk) */
  device_type: string;
  backed_up: number;
  aaguid: string;
  /** the user's label for it */
  name: string;
  created_at: number;
  last_used_at: number | null;
}

export interface WebAuthnChallengeTable {
  /** base64url, 32 random bytes; consumed (deleted) by the one response that presents it */
  challenge: string;
  purpose: 'register' | 'login';
  /** the interaction uid (login) or the session uid (register) it was issued to */
  binding: string;
  account_id: string;
  expires_at: number;
}

export interface ConsentTable {
  account_id: string;
  client_id: string;
  /** space-separated: OpenID scopes and `<audience>|<scope>` for API scopes, as consented */
  scopes: string;
  granted_at: number;
}

export interface FederationPendingTable {
  /** the `state` sent upstream (random, 256 bits); consumed by the one callback that presents it */
  state: string;
  /** the interaction it belongs to (the browser's sign-in) */
  uid: string;
  upstream: string;
  nonce: string;
  /** PKCE code verifier */
  verifier: string;
  expires_at: number;
}

export interface FederatedIdentityTable {
  issuer: string;
  subject: string;
  user_id: string;
  created_at: number;
}

export interface Database {
  oidc_models: OidcModelTable;
  clients: ClientTable;
  users: UserTable;
  signing_keys: KeyTable;
  secrets: SecretTable;
  throttle: ThrottleTable;
  mfa_pending: MfaPendingTable;
  token_index: TokenIndexTable;
  webauthn_credentials: WebAuthnCredentialTable;
  webauthn_challenges: WebAuthnChallengeTable;
  consents: ConsentTable;
  federation_pending: FederationPendingTable;
  federated_identities: FederatedIdentityTable;
  /** used only for the type of Generated; keeps kysely's import */
  _unused?: { id: Generated<number> };
}
