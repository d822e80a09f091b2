// The oidc-provider instance of a zone: the protocol is the library's; this
// file is the zone's policy over it. What is on: authorization code (PKCE S256
// required, exact redirect URIs, `iss` in the response), client credentials,
// rotating refresh tokens, token exchange, introspection, revocation, logout.
// What is off: implicit, hybrid, password, device, CIBA, dynamic registration,
// HS* algorithms, client_secret_post/jwt, dev interactions.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { createAdapterClass } from './oidc-adapter.ts';
import { apiScopesOf, compareClientSecret, isFirstParty, OIDC_SCOPES, API_SCOPES_PROPERTY, REVOCATION_FEED_PROPERTY, FIRST_PARTY_PROPERTY, TOKEN_EXCHANGE } from './client-registry.ts';
import { consentedKeys } from './consent.ts';
import { customizeAccessToken } from './customize-token.ts';
import { registerTokenExchange } from './token-exchange.ts';
import { installJwtIntrospection } from './jwt-introspection.ts';
import { installClientThrottle } from './client-throttle.ts';
import { httpOrigin, installHtmlPolicy } from './html-policy.ts';
import { HTML_CSP_BASE, logoutPage, messagePage } from './views.ts';
import { certificateMatchesSanUri, peerCertificate, verifiedPeerCertificate } from './client-certificate.ts';

export const INTERACTION_TTL = 600;

/** token requests refused for a replayed DPoP proof (answered invalid_dpop_proof) */
const dpopReplays = new WeakSet<object>();

/** What an authorization request asks for, narrowed to what the client may have: OpenID scopes, and API scopes per audience. */
export function requestedScopes(oidc: any): { oidc: string[]; resources: Record<string, string[]> } {
  const allowed = new Set<string>([...String(oidc.client.scope ?? '').split(' '), ...apiScopesOf(oidc.client)]);
  const requested = [...(oidc.requestParamScopes as Set<string>)].filter((s) => allowed.has(s));
  const resources: Record<string, string[]> = {};
  for (const [indicator, rs] of Object.entries(oidc.resourceServers ?? {}) as [string, any][]) {
    const scopes = requested.filter((s) => rs.scopes.has(s));
    if (scopes.length > 0) resources[indicator] = scopes;
  }
  return { oidc: requested.filter((s) => OIDC_SCOPES.includes(s)), resources };
}

export function buildProvider(ctx: AuthorityContext): Provider {
  const { config } = ctx;
  const alg = config.signingAlg;
  const ttl = config.accessTokenTtl;
  const mtls = config.clientCa !== undefined;
  const Adapter = createAdapterClass(ctx.db, ctx.now, {
    onReuse(model, grantId, clientId) {
      ctx.audit('token.reuse_detected', {
        reason: model === 'RefreshToken' ? 'refresh token redeemed twice at once' : 'code redeemed twice at once',
        client_id: clientId,
        grant_id: grantId ?? undefined,
      });
    },
  });

  // The scopes a client may get at an audience: the zone's, narrowed to the client's.
  const resourceInfo = (indicator: string, client: any) => ({
    scope: ctx.scopes.filter((s) => apiScopesOf(client).has(s)).join(' '),
    audience: indicator,
    accessTokenTTL: ttl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: ctx.keys.active.alg, kid: ctx.keys.active.kid } },
  });

  const provider = new Provider(ctx.issuer, {
    adapter: Adapter,
    clients: [],
    jwks: { keys: ctx.keys.keys.map((k) => k.privateJwk) },
    async findAccount(c: KoaContextWithOIDC, sub: string) {
      // a quarantined subject obtains no token (code, refresh) and its sessions end
      const q = ctx.quarantine?.subject(sub);
      if (q) {
        if (c?.oidc?.route !== 'token') return undefined;
        ctx.quarantine!.refused({ sub, client: c.oidc.client?.clientId, source: c.req.socket.remoteAddress, where: 'token', decision: q });
        const refused = new errors.InvalidGrant('the subject is quarantined');
        refused.error_description = `the subject is quarantined until ${q.until}`;
        throw refused;
      }
      const user = await ctx.users.byId(sub);
      // a locked or removed user has no account: refresh and userinfo fail
      if (!user || user.locked) return undefined;
      return {
        accountId: sub,
        async claims() {
          const email = typeof user.claims.email === 'string' ? { email: user.claims.email, email_verified: user.claims.email_verified !== false } : {};
          return { sub, preferred_username: user.username, ...(Array.isArray(user.claims.roles) ? { roles: user.claims.roles } : {}), ...email };
        },
      };
    },
    // acr (and amr, auth_time) in ID tokens too: the library's defaults, which a claims map replaces
    // the profile and email claims are answered by userinfo (/me, userinfo.ts); listed here so discovery's claims_supported names them
    claims: { acr: null, amr: null, sid: null, auth_time: null, iss: null, openid: ['sub', 'acr', 'amr', 'auth_time'], profile: ['preferred_username', 'roles'], email: ['email', 'email_verified'] },
    // only OpenID scopes here: API scopes belong to the resource servers (audiences)
    scopes: OIDC_SCOPES,
    acrValues: ['urn:gatehouse:acr:pwd', 'urn:gatehouse:acr:mfa'],
    responseTypes: ['code'],
    pkce: { required: () => true },
    allowOmittingSingleRegisteredRedirectUri: false,
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt', 'none', ...(mtls ? ['tls_client_auth'] : [])],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
    },
    enabledJWA: {
      clientAuthSigningAlgValues: ['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256'],
      idTokenSigningAlgValues: ['EdDSA', 'ES256'],
      requestObjectSigningAlgValues: ['EdDSA', 'ES256'],
      userinfoSigningAlgValues: ['EdDSA', 'ES256'],
      introspectionSigningAlgValues: ['EdDSA', 'ES256'],
      authorizationSigningAlgValues: ['EdDSA', 'ES256'],
    },
    cookies: {
      keys: ctx.cookieKeys,
      long: { httpOnly: true, sameSite: 'lax', signed: true },
      short: { httpOnly: true, sameSite: 'lax', signed: true },
      // per zone: browsers key cookies by host, not port, so two zones' authorities on one host
      // (the example's, all on 127.0.0.1) would overwrite each other's session
      names: { session: `gh_session_${ctx.zone}`, interaction: `gh_interaction_${ctx.zone}`, resume: `gh_resume_${ctx.zone}` },
    },
    ttl: {
      AccessToken: (_c: unknown, token: any) => token.resourceServer?.accessTokenTTL ?? ttl,
      ClientCredentials: (_c: unknown, token: any) => token.resourceServer?.accessTokenTTL ?? ttl,
      IdToken: ttl,
      AuthorizationCode: 60,
      RefreshToken: config.refreshTokenTtl,
      Grant: config.refreshTokenTtl,
      Session: config.refreshTokenTtl,
      Interaction: INTERACTION_TTL,
    },
    rotateRefreshToken: true,
    issueRefreshToken: async (_c: KoaContextWithOIDC, client: any) => client.grantTypeAllowed('refresh_token'),
    // A user's grant ends with the browser session it was made in: signing out
    // (RP-initiated logout) revokes it, refresh tokens included, whatever the
    // scope (offline_access only says a refresh token is wanted). Sessions
    // last as long as refresh tokens, so this shortens nothing else.
    expiresWithSession: async () => true,
    conformIdTokenClaims: true,
    interactions: { url: (_c: KoaContextWithOIDC, interaction: any) => `/interaction/${interaction.uid}` },
    // A first-party client (FIRST_PARTY_PROPERTY) gets what it may have
    // without asking the user; a third-party one gets what the user consented
    // to (consent.ts), and the consent page is shown for anything more. A
    // grant made on the consent page (result.consent.grantId) is used as is.
    async loadExistingGrant(c: KoaContextWithOIDC) {
      const { oidc } = c;
      if (!oidc.session?.accountId) return undefined;
      const accountId = oidc.session.accountId;
      const clientId = oidc.client.clientId;
      const resumed = oidc.result?.consent?.grantId;
      const grantId = resumed ?? oidc.session.grantIdFor(clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (grant && (grant.accountId !== accountId || grant.clientId !== clientId)) grant = undefined;
      if (resumed) return grant;
      const consented = isFirstParty(oidc.client) ? undefined : await consentedKeys(ctx, accountId, clientId);
      if (!isFirstParty(oidc.client) && !consented) return grant;
      grant ??= new oidc.provider.Grant({ clientId, accountId });
      const requested = requestedScopes(oidc);
      const ok = (key: string) => consented === undefined || consented.has(key);
      grant.addOIDCScope(requested.oidc.filter(ok).join(' '));
      for (const [indicator, scopes] of Object.entries(requested.resources)) {
        const kept = scopes.filter((s) => ok(`${indicator}|${s}`));
        if (kept.length > 0) grant.addResourceScope(indicator, kept.join(' '));
      }
      await grant.save();
      return grant;
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: {
        enabled: true,
        // another client's token reads as inactive
        allowedPolicy: async (_c: KoaContextWithOIDC, client: any, token: any) => token.clientId === client.clientId,
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_c: KoaContextWithOIDC, client: any, token: any) => {
          if (token.clientId !== client.clientId)
            throw new errors.UnauthorizedClient('client is not authorized to revoke the presented token');
          return true;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => ctx.audience,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (c: KoaContextWithOIDC, indicator: string, client: any) => {
          if (!ctx.audiences.includes(indicator)) throw new errors.InvalidTarget('unknown resource (audience)');
          const info = resourceInfo(indicator, client);
          // a scope the client may not have is an error, not silently dropped
          const allowed = new Set(info.scope.split(' '));
          const requested = typeof c.oidc.params?.scope === 'string' ? c.oidc.params.scope.split(' ') : [];
          const refused = requested.filter((s: string) => s && !OIDC_SCOPES.includes(s) && !allowed.has(s));
          if (refused.length > 0) throw new errors.InvalidScope('requested scope is not allowed', refused.join(' '));
          return info;
        },
      },
      rpInitiatedLogout: {
        enabled: true,
        async logoutSource(c: KoaContextWithOIDC, form: string) {
          // Browsers check every redirect after a form POST against form-action:
          // the confirm form ends at the client's post_logout_redirect_uri (which
          // oidc-provider has checked against the client's registration by now).
          c.set('content-security-policy', `${HTML_CSP_BASE}; form-action ${["'self'", ...httpOrigin(c.oidc.session?.state?.postLogoutRedirectUri)].join(' ')}`);
          c.type = 'html';
          c.body = logoutPage(form, ctx.zone);
        },
        async postLogoutSuccessSource(c: KoaContextWithOIDC) {
          c.set('content-security-policy', HTML_CSP_BASE);
          c.type = 'html';
          c.body = messagePage('Signed out', 'You are signed out.');
        },
      },
      userinfo: { enabled: true },
      // RFC 9449: any client that sends a proof to the token endpoint gets a
      // DPoP-bound token (cnf.jkt); one registered with dpop_bound_access_tokens must
      dPoP: { enabled: true, nonceSecret: ctx.dpop.nonceSecret, requireNonce: () => ctx.dpop.requireNonce, allowReplay: false },
      registration: { enabled: false },
      deviceFlow: { enabled: false },
      ciba: { enabled: false },
      pushedAuthorizationRequests: { enabled: true },
      mTLS: {
        enabled: mtls,
        tlsClientAuth: mtls,
        // RFC 8705 §3: clients registered with tls_client_certificate_bound_access_tokens get cnf.x5t#S256
        certificateBoundAccessTokens: mtls,
        getCertificate(c: KoaContextWithOIDC) {
          return peerCertificate(c.socket)?.toString();
        },
        certificateAuthorized: (c: KoaContextWithOIDC) => verifiedPeerCertificate(c.socket) !== undefined,
        certificateSubjectMatches(c: KoaContextWithOIDC, property: string, expected: string) {
          const cert = verifiedPeerCertificate(c.socket);
          if (!cert) return false;
          if (property === 'tls_client_auth_san_uri') return certificateMatchesSanUri(cert, expected, ctx.clientCerts);
          return false; // only SAN URI (SPIFFE ID) matching is offered
        },
      },
    },
    formats: { customizers: { jwt: (c: KoaContextWithOIDC, token: any, jwt: any) => customizeAccessToken(ctx, c, token, jwt) } },
    extraClientMetadata: {
      properties: [API_SCOPES_PROPERTY, REVOCATION_FEED_PROPERTY, FIRST_PARTY_PROPERTY],
      validator(_c: unknown, key: string, value: unknown) {
        if (key === FIRST_PARTY_PROPERTY && value !== undefined && typeof value !== 'boolean')
          throw new errors.InvalidClientMetadata(`${FIRST_PARTY_PROPERTY} must be a boolean`);
        if (key === API_SCOPES_PROPERTY && value !== undefined && typeof value !== 'string')
          throw new errors.InvalidClientMetadata(`${API_SCOPES_PROPERTY} must be a string`);
        if (key === REVOCATION_FEED_PROPERTY && value !== undefined && typeof value !== 'boolean')
          throw new errors.InvalidClientMetadata(`${REVOCATION_FEED_PROPERTY} must be a boolean`);
      },
    },
    async renderError(c: KoaContextWithOIDC, out: { error: string; error_description?: string }) {
      c.type = 'html';
      c.set('content-security-policy', HTML_CSP_BASE);
      c.body = messagePage('Sign-in problem', `${out.error}: ${out.error_description ?? ''}`, c.response.get('x-request-id'));
    },
    discovery: {
      service_documentation: undefined,
      // RFC 8705 §5: this listener asks every client for a certificate, so the mTLS endpoints are the same URLs
      ...(mtls
        ? {
            mtls_endpoint_aliases: {
              token_endpoint: `${ctx.issuer}/token`,
              introspection_endpoint: `${ctx.issuer}/token/introspection`,
              revocation_endpoint: `${ctx.issuer}/token/revocation`,
              pushed_authorization_request_endpoint: `${ctx.issuer}/request`,
              userinfo_endpoint: `${ctx.issuer}/me`,
            },
          }
        : {}),
    },
  });
  provider.proxy = false;

  // Secrets are stored as keyed hashes: hash what the client presents.
  provider.Client.prototype.compareClientSecret = function (this: { clientSecret: string }, actual: unknown) {
    return compareClientSecret(ctx.secretHashKey, this.clientSecret, actual);
  };

  provider.use(async (c: KoaContextWithOIDC, next) => {
    await next();
    // a replayed DPoP proof is invalid_dpop_proof (RFC 9449 §5.10), where the library says invalid_grant
    const err = c.body as { error?: string; error_description?: string } | undefined;
    if (c.oidc?.route === 'token' && err?.error === 'invalid_grant' && dpopReplays.has(c)) {
      err.error = 'invalid_dpop_proof';
      err.error_description = 'DPoP proof was already used';
    }
    // scopes_supported: the OpenID scopes and the zone's API scopes (the library lists only the former)
    if (c.oidc?.route === 'discovery' && c.body && typeof c.body === 'object') {
      const body = c.body as Record<string, unknown>;
      body.scopes_supported = [...new Set([...(body.scopes_supported as string[]), ...ctx.scopes])];
    }
  });
  provider.on('grant.error', (c: KoaContextWithOIDC, e: { error_detail?: string }) => {
    if (e.error_detail === 'DPoP proof JWT Replay detected') dpopReplays.add(c);
  });
  installHtmlPolicy(provider, ctx);
  installClientThrottle(provider, ctx);
  registerTokenExchange(provider, ctx);
  installJwtIntrospection(provider, ctx);
  wireAudit(provider, ctx);
  return provider;
}

function wireAudit(provider: Provider, ctx: AuthorityContext): void {
  const { audit } = ctx;
  provider.on('grant.success', (c: KoaContextWithOIDC) => {
    const gt = c.oidc.params?.grant_type as string;
    if (gt === TOKEN_EXCHANGE) return; // audited by the handler, with the subject
    const at = c.oidc.entities.AccessToken ?? c.oidc.entities.ClientCredentials;
    audit(gt === 'refresh_token' ? 'token.refreshed' : 'token.issued', {
      client_id: c.oidc.client?.clientId,
      grant_type: gt,
      sub: at?.accountId,
      scope: at?.scope,
      aud: at?.aud,
      jti: at?.format === 'jwt' ? at.jti : undefined,
      source: c.ip,
    });
  });
  provider.on('grant.error', (c: KoaContextWithOIDC, err: { error_description?: string; error_detail?: string }) => {
    const d = `${err.error_description ?? ''} ${err.error_detail ?? ''}`.trim();
    if (/already (used|consumed)/.test(d))
      audit('token.reuse_detected', { client_id: c.oidc.client?.clientId, reason: d, source: c.ip });
  });
  provider.on('grant.revoked', (c: KoaContextWithOIDC, grantId: string) => {
    audit('grant.revoked', { client_id: c.oidc?.client?.clientId, grant_id: grantId });
  });
  provider.on('end_session.success', (c: KoaContextWithOIDC) => {
    audit('logout', { client_id: c.oidc?.client?.clientId, source: c.ip });
  });
}
