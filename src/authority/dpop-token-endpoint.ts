// DPoP (RFC 9449) for a grant the authority adds to oidc-provider (token
// exchange): the same proof check, nonces and replay store as the library's
// own grants, which a registered grant type does not get by itself.
//   no DPoP header                 → undefined (a bearer token), unless the
//                                    client is registered dpop-bound: refused
//                                    (invalid_grant "DPoP proof JWT not
//                                    provided", as the built-in grants say);
//   a proof for another method or URL, too old, from the future, signed with
//   a key other than its header's → invalid_dpop_proof; without or with a
//   stale nonce where nonces are required → use_dpop_nonce + DPoP-Nonce;
//   a proof seen before            → invalid_grant "DPoP proof JWT Replay
//                                    detected" (provider.ts answers it as
//                                    invalid_dpop_proof).
// The result is the key's thumbprint: the caller binds its token to it
// (cnf.jkt) and answers token_type DPoP.
import type Provider from 'oidc-provider';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import validateDpop, { checkDpopReplay } from 'oidc-provider/lib/helpers/validate_dpop.js';

export async function dpopAtTokenEndpoint(provider: Provider, c: KoaContextWithOIDC): Promise<string | undefined> {
  const dPoP = await validateDpop(provider, c);
  const client = c.oidc.client as { clientId: string; dpopBoundAccessTokens?: boolean };
  if (!dPoP) {
    if (client.dpopBoundAccessTokens) throw new errors.InvalidGrant('DPoP proof JWT not provided');
    return undefined;
  }
  await checkDpopReplay(provider, c, dPoP, client.clientId, errors.InvalidGrant);
  return dPoP.thumbprint;
}
