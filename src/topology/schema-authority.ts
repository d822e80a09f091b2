// The `authority` block of a zone. Owned by the authority component.
// Every field has a description and the secure default; absent vs empty is
// spelled out where the two differ.
import { z } from 'zod';
import { isIP } from 'node:net';

// schema.ts imports this file, so the listen check is repeated here (small)
// rather than imported (a cycle).
const LISTEN = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/;
const listen = z
  .string()
  .describe('host:port of the authority HTTPS listener; IPv6 as [::1]:8444; port 0 picks a free port')
  .superRefine((value, ctx) => {
    const m = LISTEN.exec(value);
    const host = m ? (m[1] ?? m[2]) : '';
    const ok =
      m !== null &&
      Number(m[3]) <= 65535 &&
      (m[1] !== undefined ? isIP(host) === 6 : host === 'localhost' || isIP(host) === 4);
    if (!ok) ctx.addIssue({ code: 'custom', message: `expected host:port (for example 127.0.0.1:8444), got ${JSON.stringify(value)}` });
  });

/** An OAuth scope token (RFC 6749 §3.3), restricted to a readable set. */
export const ScopeName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9:._\-/]{0,127}$/, 'a scope is letters, digits and : . _ - / (at most 128)')
  .describe('an OAuth scope');

const Audience = z
  .string()
  .min(1)
  .max(512)
  .regex(/^(?:https:\/\/[^\s#]+|urn:[A-Za-z0-9][A-Za-z0-9\-.:_~%/]+)$/, 'an audience is an https URL or a URN')
  .describe('an audience (resource indicator) the zone issues tokens for');

const ClaimName = z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'a claim name is lowercase letters, digits and _');

const TrustedZone = z.union([
  z.string().regex(/^[a-z][a-z0-9-]{0,62}$/).describe('a zone of this topology run on the same machine (its public keys are read from the state dir)'),
  z
    .object({
      zone: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/).describe('the zone name'),
      issuer: z.string().url().describe("issuer of that zone's authority"),
      jwksUri: z.string().url().regex(/^https:/, 'jwksUri must be https').describe("that authority's JWKS URL"),
      revocationFeed: z
        .object({
          url: z.string().url().regex(/^https:/, 'the feed URL must be https').optional().describe("that authority's revocation feed; absent: <issuer>/revocations"),
          clientId: z.string().min(3).max(128).describe('a feed-only client of that authority (gatehouse clients add --revocation-feed there)'),
          clientSecretEnv: z
            .string()
            .regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'an environment variable name')
            .describe('environment variable holding that client’s secret (never the secret itself in the topology)'),
        })
        .strict()
        .describe(
          "how this authority checks, before an exchange, that a token of that zone is not revoked (that authority's revocation feed); required: without it every exchange of that zone's tokens would have to be refused",
        ),
    })
    .strict(),
]);

const Actor = z
  .object({
    audiences: z
      .array(Audience)
      .min(1)
      .optional()
      .describe("audiences at which this client acts for users with their authentication (acr, amr); absent: the zone's own audience only"),
  })
  .strict();

const Budget = (failures: number, lockoutSeconds: number, what: string) =>
  z
    .object({
      maxFailures: z.number().int().min(1).max(1000).default(failures).describe(`${what} failures before a lockout`),
      lockoutSeconds: z
        .number()
        .int()
        .min(1)
        .max(86_400)
        .default(lockoutSeconds)
        .describe('how long the lockout lasts; failures also make each next attempt wait longer (1 s, 2 s, 4 s … 30 s)'),
    })
    .strict()
    .default({ maxFailures: failures, lockoutSeconds });

export const AuthorityConfig = z
  .object({
    listen: listen.default('127.0.0.1:0'),
    issuer: z
      .string()
      .url()
      .regex(/^https:\/\/[^/?#]+$/, 'issuer must be https://host[:port] without a path')
      .optional()
      .describe('public issuer URL (behind a load balancer); absent: https://<listen address>'),
    tls: z
      .union([
        z.literal('dev'),
        z
          .object({
            cert: z.string().min(1).describe('PEM certificate chain file, relative to the topology file'),
            key: z.string().min(1).describe('PEM private key file, relative to the topology file'),
          })
          .strict(),
      ])
      .default('dev')
      .describe("'dev': a certificate from the local dev CA in the state dir; or cert/key files"),
    signingAlg: z
      .enum(['EdDSA', 'ES256'])
      .default('EdDSA')
      .describe('JWS algorithm of access and ID tokens: EdDSA (Ed25519) or ES256 (P-256)'),
    accessTokenTtl: z
      .number()
      .int()
      .min(30)
      .max(900)
      .default(300)
      .describe('access token lifetime in seconds (default 300, at most 900)'),
    refreshTokenTtl: z
      .number()
      .int()
      .min(300)
      .max(90 * 86_400)
      .default(8 * 3600)
      .describe('refresh token lifetime in seconds; every use rotates it'),
    storage: z
      .string()
      .regex(/^(?:sqlite|postgres(?:ql)?:\/\/\S+)$/, "storage is 'sqlite' or a postgres:// URL")
      .default('sqlite')
      .describe("'sqlite': a database file in the state dir; postgres://…: shared by every instance of the authority"),
    audience: Audience.optional().describe(
      "audience of the zone's own API (what its gateway expects in `aud`); absent: urn:gatehouse:<trustDomain>:<zone>",
    ),
    audiences: z
      .array(Audience)
      .default([])
      .describe('further audiences clients may ask tokens for (resource indicators); empty: only the zone audience'),
    scopes: z
      .array(ScopeName)
      .default([])
      .describe('scopes this zone knows; empty: tokens carry no API scope (only openid/offline_access)'),
    trustedZones: z
      .array(TrustedZone)
      .default([])
      .describe('zones whose access tokens may be exchanged here (RFC 8693); empty: only this zone’s own tokens'),
    tokenExchange: z
      .object({
        actors: z
          .record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$/, 'a client id'), Actor)
          .default({})
          .describe(
            "clients (by id) allowed to act for any user at the listed audiences: a token they get by exchange (RFC 8693) keeps the user's acr and amr. Any other client with the token-exchange grant still gets a token, without acr and amr (so an MFA route refuses it), unless the subject token's may_act names it. Empty: only may_act carries acr/amr",
          ),
      })
      .strict()
      .default({ actors: {} })
      .describe('who may act for a user (RFC 8693 §4.4 may_act, or this allow-list)'),
    confidentialClaims: z
      .record(
        Audience,
        z
          .object({
            claims: z.array(ClaimName).min(1).describe('user claims that travel only encrypted to this audience'),
            publicKey: z
              .string()
              .min(1)
              .describe('file (relative to the topology) holding the public JWK (P-256 or X25519) of the audience'),
          })
          .strict(),
      )
      .default({})
      .describe(
        'per audience, claims that travel inside the token as a nested JWE only that audience can open; empty: none',
      ),
    mfa: z
      .object({
        required: z
          .boolean()
          .default(true)
          .describe('every user needs a second factor; a user without one cannot sign in'),
      })
      .strict()
      .default({ required: true }),
    throttle: z
      .object({
        password: Budget(5, 900, 'password').describe('per account'),
        otp: Budget(5, 900, 'one-time code').describe('per account and source; the account-wide budget is 4x'),
        source: Budget(50, 900, 'sign-in').describe('per source address, across accounts (and, separately, across clients)'),
        client: Budget(10, 900, 'client secret').describe(
          'client secrets (HTTP Basic) at the token, introspection, revocation, PAR and revocation-feed endpoints: per client and source; the client-wide budget is 10x. Only a lock, no delay',
        ),
      })
      .strict()
      .describe('every attempt is charged to its budgets before the secret is checked; a success gives the charge back')
      .default({
        password: { maxFailures: 5, lockoutSeconds: 900 },
        otp: { maxFailures: 5, lockoutSeconds: 900 },
        source: { maxFailures: 50, lockoutSeconds: 900 },
        client: { maxFailures: 10, lockoutSeconds: 900 },
      }),
    keyRotation: z
      .object({
        publishLeadSeconds: z
          .number()
          .int()
          .min(0)
          .max(7 * 86_400)
          .default(600)
          .describe('a rotated-in key is published this long before it signs, so verifiers can fetch it first'),
      })
      .strict()
      .default({ publishLeadSeconds: 600 }),
    clientCa: z
      .string()
      .min(1)
      .optional()
      .describe(
        "CA for tls_client_auth (mTLS clients): 'trust-domain' for the trust domain's CA in the state dir (`gatehouse ca init`; client certificates must then be X509-SVIDs of this trust domain, not revoked, matched on their SPIFFE ID), or a PEM CA bundle file relative to the topology (matched on a URI SAN); absent: no client certificate is requested",
      ),
    federation: z
      .array(
        z
          .object({
            name: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'a short lowercase name').describe('names the upstream on the sign-in page and in usernames (<user>@<name>)'),
            label: z.string().min(1).max(64).optional().describe('the button text; absent: "Sign in with <name>"'),
            zone: z.string().regex(/^[a-z][a-z0-9-]{0,62}$/).optional().describe("a zone of this topology whose authority is the upstream (its issuer is read from the state dir); or give issuer"),
            issuer: z.string().url().regex(/^https:/, 'the upstream issuer is https').optional().describe('issuer URL of the upstream OpenID Provider (its discovery document is read from there); or give zone'),
            clientId: z.string().min(1).max(128).describe("this authority's client at the upstream (a confidential client with redirect URI <issuer>/federation/callback)"),
            clientSecretEnv: z
              .string()
              .regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'an environment variable name')
              .describe("environment variable holding that client’s secret (never the secret itself); with zone: unset, the secret that zone's authority granted this one at its start (when this zone's issuer or listen port is fixed)"),
            scope: z.string().default('openid profile email').describe('scopes asked of the upstream'),
            link: z
              .enum(['subject', 'email'])
              .default('subject')
              .describe("'subject': an upstream account is linked to the local user it created, by (issuer, sub) only; 'email': also to an existing local user with the same e-mail, when the upstream says it is verified"),
            allowedDomains: z
              .array(z.string().regex(/^[a-z0-9.-]+$/))
              .default([])
              .describe('e-mail domains admitted (the upstream e-mail must be verified and in one of them); empty: any account of the upstream'),
            roles: z
              .object({
                claim: z.string().regex(/^[A-Za-z_][A-Za-z0-9_:.-]{0,63}$/).default('roles').describe("the upstream claim that lists the user's roles or groups"),
                map: z.record(z.string().min(1).max(128), z.string().min(1).max(128)).default({}).describe('upstream value → Gatehouse role (the `roles` claim of access tokens); unmapped values are dropped'),
              })
              .strict()
              .default({ claim: 'roles', map: {} })
              .describe('roles from the upstream, mapped; replaced at every sign-in'),
            mfa: z
              .enum(['local', 'upstream'])
              .default('local')
              .describe("how the zone's MFA is met: 'local': the user's own second factor here (TOTP or passkey), after the upstream sign-in; 'upstream': the upstream's ID token must say MFA (amr has mfa)"),
          })
          .strict()
          .refine((f) => (f.zone === undefined) !== (f.issuer === undefined), { message: 'give exactly one of zone and issuer' }),
      )
      .default([])
      .describe('upstream OpenID Providers users may sign in with (authorization code + PKCE, nonce and state); empty: only local accounts'),
    dpop: z
      .object({
        requireNonce: z
          .boolean()
          .default(false)
          .describe('DPoP proofs (RFC 9449) at the token endpoint and userinfo must carry a nonce this authority issued (§8): the first request is answered use_dpop_nonce with a DPoP-Nonce header; false: a fresh iat (60 s) is enough'),
      })
      .strict()
      .default({ requireNonce: false })
      .describe('DPoP-bound access tokens (cnf.jkt) for any client that sends a DPoP proof to the token endpoint; a client registered with dpop_bound_access_tokens must send one'),
    webauthn: z
      .object({
        rpId: z
          .string()
          .regex(/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, 'rpId is a lowercase host name')
          .optional()
          .describe("WebAuthn relying party ID: the issuer's host or a registrable suffix of it; absent: the issuer's host (browsers refuse IP addresses: use a name such as localhost)"),
        rpName: z.string().min(1).max(64).optional().describe('name shown by the authenticator; absent: Gatehouse <zone>'),
      })
      .strict()
      .default({})
      .describe('passkeys and security keys as a second factor (enrolled by a signed-in user at /account)'),
    dev: z
      .object({
        redirectUri: z
          .string()
          .url()
          .default('http://127.0.0.1:8765/callback')
          .describe('redirect URI of the seeded web client (dev mode only)'),
        serviceClients: z
          .array(
            z
              .object({
                service: z
                  .string()
                  .regex(/^[a-z][a-z0-9-]{0,62}$/)
                  .describe('a service of the topology (any zone); the client_id is its name'),
                grantTypes: z
                  .array(z.enum(['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange']))
                  .min(1)
                  .default(['urn:ietf:params:oauth:grant-type:token-exchange'])
                  .describe('grants the service may use; default: token exchange only'),
                scopes: z.array(ScopeName).min(1).describe("scopes of this zone the service's tokens may carry"),
                certificateBound: z
                  .boolean()
                  .default(false)
                  .describe("its tokens (client credentials and exchanged) are bound to the workload certificate it authenticated with (RFC 8705 cnf.x5t#S256): lifted from the service, they are useless from anywhere else. The service must present the same certificate where it uses them (get a new token after its certificate rotates)"),
              })
              .strict(),
          )
          .default([])
          .describe(
            'services seeded as clients that authenticate with their workload certificate (tls_client_auth on their SPIFFE ID; needs clientCa: trust-domain), dev mode only; empty: none',
          ),
      })
      .strict()
      .default({ redirectUri: 'http://127.0.0.1:8765/callback', serviceClients: [] })
      .describe('what `gatehouse up` seeds in dev mode'),
  })
  .strict()
  .superRefine((value, ctx) => {
    value.dev.serviceClients.forEach((c, i) => {
      if (value.clientCa !== 'trust-domain')
        ctx.addIssue({
          code: 'custom',
          path: ['dev', 'serviceClients', i],
          message: 'service clients authenticate with their workload certificates: set clientCa: trust-domain',
        });
      for (const scope of c.scopes)
        if (!value.scopes.includes(scope))
          ctx.addIssue({ code: 'custom', path: ['dev', 'serviceClients', i, 'scopes'], message: `scope ${JSON.stringify(scope)} is not in this zone's scopes` });
    });
    const known = new Set([value.audience, ...value.audiences].filter(Boolean));
    for (const [client, actor] of Object.entries(value.tokenExchange.actors))
      for (const aud of actor.audiences ?? [])
        // the default zone audience (urn:gatehouse:<trustDomain>:<zone>) is not known here
        if (!known.has(aud) && !aud.startsWith('urn:gatehouse:'))
          ctx.addIssue({ code: 'custom', path: ['tokenExchange', 'actors', client, 'audiences'], message: `audience ${JSON.stringify(aud)} is not one of this zone's audiences` });
    for (const aud of Object.keys(value.confidentialClaims))
      if (!known.has(aud) && aud !== value.audience)
        ctx.addIssue({
          code: 'custom',
          path: ['confidentialClaims', aud],
          message: `audience ${JSON.stringify(aud)} must also be listed in audiences`,
        });
  });

export type AuthorityConfig = z.infer<typeof AuthorityConfig>;
