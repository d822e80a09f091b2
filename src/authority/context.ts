// Everything a running zone authority shares between its parts, built once at
// start (provision) and read on the request path.
import type { Kysely } from 'kysely';
import type { JWK } from 'jose';
import type { AuthorityConfig } from '../topology/schema-authority.ts';
import type { LoadedTopology } from '../topology/load.ts';
import type { Logger } from '../shared/logger.ts';
import type { Database } from './db/schema.ts';
import type { KeyStore, KeySet } from './keys/key-store.ts';
import type { ClientRegistry } from './client-registry.ts';
import type { UserRegistry } from './user-registry.ts';
import type { Throttle } from './throttle.ts';
import type { Audit } from './audit.ts';
import type { TrustedIssuers } from './trusted-issuers.ts';
import type { IssuerRevocations } from './issuer-revocations.ts';
import type { ClientCertPolicy } from './client-certificate.ts';
import type { DpopNonces } from '../shared/sender-constraint.ts';
import type { Federation } from './federation.ts';
import type { Quarantine } from '../policy/index.ts';

export interface ConfidentialAudience {
  claims: string[];
  key: JWK;
}

export interface AuthorityContext {
  zone: string;
  loaded: LoadedTopology;
  config: AuthorityConfig;
  issuer: string;
  /** the zone's own audience */
  audience: string;
  /** every audience a token may be issued for (the zone's first) */
  audiences: string[];
  /** the API scopes the zone knows */
  scopes: string[];
  db: Kysely<Database>;
  keyStore: KeyStore;
  keys: KeySet;
  clients: ClientRegistry;
  users: UserRegistry;
  throttle: Throttle;
  audit: Audit;
  log: Logger;
  now: () => number;
  secretHashKey: Buffer;
  csrfKey: Buffer;
  cookieKeys: string[];
  trusted: TrustedIssuers;
  /** revocation status of trusted zones' tokens, at their issuers (token exchange) */
  issuerRevocations: IssuerRevocations;
  confidential: Map<string, ConfidentialAudience>;
  /** how client certificates are matched to clients (tls_client_auth, revocation feed) */
  clientCerts: ClientCertPolicy;
  /** WebAuthn relying party: ID (a host name) and the one origin assertions must come from */
  webauthn: { rpId: string; rpName: string; origin: string };
  /** DPoP (RFC 9449): the nonce secret oidc-provider's token endpoint uses, and the nonces of the zone's own resource endpoints (userinfo) */
  dpop: { requireNonce: boolean; nonceSecret: Buffer; nonces: DpopNonces };
  /**
   * The decisions in force here (the authority's policy bundle, monitor.ts):
   * a quarantined subject signs in nowhere and obtains no token; a revoked
   * token id (revoked at any replica or authority of the trust domain) is
   * inactive at introspection, userinfo and token exchange. Absent: the
   * authority follows no control plane.
   */
  quarantine?: {
    subject(sub: string): Quarantine | undefined;
    /** True when the bundle lists `jti` among the revoked token ids. */
    tokenRevoked(jti: string): boolean;
    /** Records a refusal of a quarantined subject (a token_refused event and a log line). */
    refused(r: { sub: string; username?: string; client?: string; source?: string; where: string; decision: Quarantine }): void;
  };
  /** sign-in through upstream OpenID Providers (federation.ts); set once the authority listens */
  federation?: Federation;
}

export const ACR_PASSWORD = 'urn:gatehouse:acr:pwd';
export const ACR_MFA = 'urn:gatehouse:acr:mfa';

/** The audience of a zone's own API: what its gateway expects in `aud`. */
export function zoneAudience(trustDomain: string, zone: string, config: Pick<AuthorityConfig, 'audience'>): string {
  return config.audience ?? `urn:gatehouse:${trustDomain}:${zone}`;
}
