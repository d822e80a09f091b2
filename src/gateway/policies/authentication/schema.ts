// How a zone's gateway recognises credentials, and what each route requires.
import { z } from 'zod';

const Scope = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9:._\-/]{0,127}$/, 'a scope is letters, digits and : . _ - /');
const Algorithm = z.enum(['EdDSA', 'ES256', 'ES384', 'PS256', 'RS256']);

export const Issuer = z
  .object({
    issuer: z.string().url().describe('expected `iss`'),
    jwksUri: z.string().url().regex(/^https:/, 'jwksUri must be https').describe('where the issuer publishes its keys'),
    audiences: z.array(z.string().min(1)).min(1).describe('accepted `aud` values (one must match)'),
    algorithms: z.array(Algorithm).min(1).default(['EdDSA', 'ES256']).describe('accepted signing algorithms (never none or HMAC)'),
  })
  .strict();

export const ZoneAuthentication = z
  .object({
    issuers: z
      .array(Issuer)
      .optional()
      .describe("token issuers; absent: the zone's own authority (found in the state dir); empty: no JWTs at all"),
    leewaySeconds: z.number().int().min(0).max(30).default(30).describe('clock skew allowed on exp/nbf/iat (at most 30 s)'),
    maxTokenBytes: z.number().int().min(512).max(65536).default(8192).describe('larger bearer tokens are refused unread'),
    jwksRefreshSeconds: z.number().int().min(10).max(86400).default(300).describe('how often keys are refreshed in the background'),
    unknownKidRefetchSeconds: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .default(30)
      .describe('an unknown kid refetches the keys at most once per this interval'),
    tokenCache: z.number().int().min(0).max(1_000_000).default(10_000).describe('verified tokens kept (0: no cache)'),
    apiKeyHeader: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,63}$/)
      .default('x-api-key')
      .describe('request header that carries API keys'),
    introspection: z
      .object({
        endpoint: z.string().url().regex(/^https:/, 'introspection must be https').describe('RFC 7662 endpoint'),
        clientId: z.string().min(1).describe('client id the gateway authenticates with'),
        clientSecretEnv: z
          .string()
          .regex(/^[A-Z_][A-Z0-9_]*$/)
          .describe('environment variable holding the client secret (never in the file)'),
        cacheSeconds: z.number().int().min(0).max(300).default(60).describe('longest time an answer is reused (never past the token exp)'),
      })
      .strict()
      .optional()
      .describe('opaque tokens of an external identity provider; absent: opaque tokens are refused'),
    revocationFeed: z
      .object({
        url: z
          .string()
          .url()
          .regex(/^https:/, 'the feed must be https')
          .optional()
          .describe("the feed URL; absent: <issuer of the zone's own authority>/revocations"),
        clientId: z.string().min(1).describe("the gateway's client at the zone authority (registered with --revocation-feed)"),
        clientSecretEnv: z
          .string()
          .regex(/^[A-Z_][A-Z0-9_]*$/)
          .describe('environment variable holding its client secret (never in the file)'),
        pollSeconds: z.number().int().min(1).max(300).default(5).describe('a revoked token stops passing within this bound'),
        maxStaleSeconds: z
          .number()
          .int()
          .min(2)
          .max(3600)
          .default(30)
          .describe("when the feed has not been read for this long, the issuer's tokens are refused (503) until it is again"),
        whenStale: z
          .enum(['refuse', 'accept'])
          .default('refuse')
          .describe("'refuse' (fail closed) or 'accept' (revoked tokens pass while the feed is unreachable; logged)"),
      })
      .strict()
      .refine((f) => f.maxStaleSeconds > f.pollSeconds, { message: 'maxStaleSeconds must exceed pollSeconds', path: ['maxStaleSeconds'] })
      .optional()
      .describe("poll the zone authority's revocation feed; absent: revoked JWTs pass until they expire (at most their lifetime)"),
    identity: z
      .object({
        ttlSeconds: z.number().int().min(5).max(60).default(60).describe('lifetime of the identity token sent upstream'),
        forwardAccessToken: z.boolean().default(false).describe("also forward the client's Authorization header"),
      })
      .strict()
      .default({ ttlSeconds: 60, forwardAccessToken: false }),
    senderConstrained: z
      .enum(['optional', 'required'])
      .default('optional')
      .describe(
        "'required': every JWT must be sender-constrained — DPoP (cnf.jkt, RFC 9449: `Authorization: DPoP` and a proof for this request) or bound to the TLS client certificate of the connection (cnf.x5t#S256, RFC 8705); 'optional': bearer tokens pass too. A bound token is always checked, whatever this says",
      ),
    dpopNonce: z
      .boolean()
      .default(false)
      .describe('DPoP proofs must carry a nonce this gateway issued (RFC 9449 §9): a proof without one is answered 401 use_dpop_nonce with a DPoP-Nonce header; false: a fresh iat (60 s) is enough'),
  })
  .strict();

const Method = z.enum(['jwt', 'api_key', 'introspection']);

const ScopeRule = z
  .union([
    z.array(Scope).min(1),
    z.object({ all: z.array(Scope).min(1) }).strict(),
    z.object({ any: z.array(Scope).min(1) }).strict(),
  ])
  .describe('a list means all of them; { any: [...] } means at least one');

export const RouteAuth = z.union([
  z.literal('anonymous').describe('no credential needed (must be written: nothing is anonymous by default)'),
  z.enum(['jwt', 'api_key', 'introspection']).describe('shorthand for { accept: [that] }'),
  z
    .object({
      accept: z.array(Method).min(1).default(['jwt']).describe('credentials this route accepts'),
      prefer: Method.optional().describe(
        'when a request presents several credentials, judge it on this one; absent: such a request is refused',
      ),
      scopes: ScopeRule.optional().describe('scopes the credential must carry; absent: none'),
      roles: z.array(z.string().min(1).max(128)).min(1).optional().describe('roles (the `roles` claim), all required'),
      mfa: z.enum(['required', 'optional']).default('optional').describe("'required': only users who passed MFA (acr/amr)"),
      forwardToken: z
        .boolean()
        .default(false)
        .describe("also send the client's Authorization header upstream (e.g. for token exchange); default: only the gateway's identity token"),
      apiKeyQuery: z
        .string()
        .regex(/^[a-z][a-z0-9_]{0,63}$/)
        .optional()
        .describe('query parameter that may carry the API key on this route; absent: never the query string'),
      shadow: z
        .boolean()
        .default(false)
        .describe('log and count the requests authentication or authorization would refuse, and let them pass (no identity token then)'),
      senderConstrained: z
        .literal('required')
        .optional()
        .describe("'required': only sender-constrained JWTs (DPoP or certificate-bound) on this route; absent: the zone's senderConstrained"),
    })
    .strict(),
]);

export type ZoneAuthentication = z.infer<typeof ZoneAuthentication>;
export type RouteAuth = z.infer<typeof RouteAuth>;
