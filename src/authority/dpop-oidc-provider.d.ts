// oidc-provider's own DPoP proof check for the token endpoint (RFC 9449 §4.3,
// §8: htm, htu = this route's URL, iat window or the provider's nonce, the
// embedded key's signature) and its replay check (ReplayDetection: the
// authority's database, shared by its instances). Its built-in grants call
// them; a grant added with registerGrantType must call them itself
// (token-exchange.ts through dpop-token-endpoint.ts). Typed loosely, like
// oidc-provider.d.ts.
declare module 'oidc-provider/lib/helpers/validate_dpop.js' {
  import type Provider from 'oidc-provider';
  import type { KoaContextWithOIDC } from 'oidc-provider';

  export interface ValidatedDpop {
    /** RFC 7638 thumbprint of the proof's key */
    thumbprint: string;
    jti: string;
    iat: number;
  }
  /** undefined when the request has no DPoP header; throws invalid_dpop_proof / use_dpop_nonce */
  export default function validateDpop(provider: Provider, ctx: KoaContextWithOIDC, accessToken?: string): Promise<ValidatedDpop | undefined>;
  export function checkDpopReplay(provider: Provider, ctx: KoaContextWithOIDC, dPoP: ValidatedDpop, clientId: string, ErrorClass?: new (description?: string) => Error): Promise<void>;
}
