// OAuth 2.0 Token Exchange (RFC 8693) as an oidc-provider grant type. The
// subject token is a JWT access token of this zone or of a zone the topology
// trusts; the result narrows (never widens) audience and scope, keeps the
// subject, and names the calling client as the actor (`act`), nesting any
// earlier actor chain.
//
// Revocation: a subject token of this zone must be live here; one of a
// trusted zone is checked at its issuer's revocation feed, read afresh for
// the exchange (issuer-revocations.ts); when that cannot be read the exchange
// is refused (fail closed). The exchanged token records its subject token's
// jti and issuer, so revoking the subject revokes it too (access-token.ts).
//
// Acting for the user (RFC 8693 §4.4): a subject token with `may_act` may be
// exchanged only by the client it names. The user's authentication (acr, amr)
// carries over only to an actor allowed to act for the user at that audience:
// named by may_act, or listed in the zone's tokenExchange.actors for it.
//
// Sender constraint: a sender-constrained subject token is exchanged only by
// whoever proves its binding (its client certificate on this connection, or
// a DPoP proof of its key), so a lifted token never becomes a bearer token.
// A DPoP proof with the exchange request binds the
// exchanged token to its key (cnf.jkt, token_type DPoP), checked as the
// library checks it for its own grants (dpop-token-endpoint.ts); a client
// registered dpop-bound must send one. A certificate-bound client's token is
// bound to the certificate it authenticated with (cnf.x5t#S256).
import { decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import { apiScopesOf, TOKEN_EXCHANGE } from './client-registry.ts';
import { isLive, looksLikeJwt, ownKeys, type AccessTokenClaims } from './access-token.ts';
import { peerCertificate } from './client-certificate.ts';
import { RevocationStatusUnknown } from './issuer-revocations.ts';
import { dpopAtTokenEndpoint } from './dpop-token-endpoint.ts';
import { bindingOf, certificateThumbprint } from '../shared/sender-constraint.ts';

/** Claims an exchanged token carries (act, auth_time …), read by customize-token.ts at signing. */
export const exchangeClaims = new WeakMap<object, Record<string, unknown>>();
/**
 * The grant an exchanged token hangs off (its subject token's, within this
 * zone): indexed at signing, so ending that grant revokes the exchanged token
 * too (introspection, revocation feed).
 */
export const exchangeGrant = new WeakMap<object, string>();
/** The subject token an exchanged token was made from (jti, issuer): indexed at signing. */
export const exchangeSubject = new WeakMap<object, { jti: string; iss: string }>();

const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const PARAMS = [
  'subject_token',
  'subject_token_type',
  'actor_token',
  'actor_token_type',
  'requested_token_type',
  'audience',
  'resource',
  'scope',
];

function fail(description: string): never {
  throw new errors.InvalidRequest(description);
}

/** RFC 8693 §4.4: whether `may_act` (absent: no restriction) lets `clientId` of `issuer` act for the subject. */
export function mayActAllows(mayAct: unknown, clientId: string, issuer: string): boolean | undefined {
  if (mayAct === undefined) return undefined;
  if (typeof mayAct !== 'object' || mayAct === null || Array.isArray(mayAct)) return false;
  const m = mayAct as { sub?: unknown; iss?: unknown };
  if (m.sub !== clientId) return false;
  return m.iss === undefined || m.iss === issuer;
}

export function registerTokenExchange(provider: Provider, ctx: AuthorityContext): void {
  provider.registerGrantType(
    TOKEN_EXCHANGE,
    async (c: KoaContextWithOIDC) => {
      const { params, client } = c.oidc;
      const subjectToken = params.subject_token;
      if (typeof subjectToken !== 'string' || subjectToken === '') fail('missing required parameter(s) (subject_token)');
      if (params.subject_token_type !== ACCESS_TOKEN_TYPE && params.subject_token_type !== JWT_TYPE)
        fail('subject_token_type must be urn:ietf:params:oauth:token-type:access_token');
      if (params.actor_token !== undefined || params.actor_token_type !== undefined)
        fail('actor_token is not supported: the authenticated client is the actor');
      if (params.requested_token_type !== undefined && params.requested_token_type !== ACCESS_TOKEN_TYPE)
        fail('only access tokens can be requested');
      if (params.audience !== undefined && params.resource !== undefined) fail('give audience or resource, not both');
      if (!looksLikeJwt(subjectToken)) throw new errors.InvalidGrant('subject token is invalid');
      // the proof first: a bad or replayed one is refused whatever the subject token
      const jkt = await dpopAtTokenEndpoint(provider, c);

      // Which issuer? Decoding before verifying only picks the keys to verify with.
      let iss: unknown;
      try {
        iss = decodeJwt(subjectToken).iss;
      } catch {
        throw new errors.InvalidGrant('subject token is invalid');
      }
      const own = iss === ctx.issuer;
      const trusted = own || typeof iss !== 'string' ? undefined : ctx.trusted.resolve(iss);
      if (!own && !trusted) throw new errors.InvalidGrant('subject token issuer is not trusted by this zone');
      let subject: JWTPayload;
      try {
        ({ payload: subject } = await jwtVerify(subjectToken, own ? ownKeys(ctx) : trusted!.keys, {
          issuer: iss as string,
          typ: 'at+jwt',
          algorithms: ['EdDSA', 'ES256'],
          currentDate: new Date(ctx.now()),
          clockTolerance: 5,
          requiredClaims: ['sub', 'exp', 'jti', 'client_id'],
        }));
      } catch {
        throw new errors.InvalidGrant('subject token is invalid or expired');
      }
      if (own && !(await isLive(ctx, subject as AccessTokenClaims))) throw new errors.InvalidGrant('subject token is revoked');
      if (!own) {
        let revoked: boolean;
        try {
          revoked = await ctx.issuerRevocations.isRevoked(iss as string, trusted!.zone, subject.jti as string);
        } catch (error) {
          if (!(error instanceof RevocationStatusUnknown)) throw error;
          ctx.audit('token.exchange_refused', { client_id: client.clientId, subject_issuer: iss as string, reason: `revocation status unknown: ${error.message}`, source: c.ip });
          // RFC 6749 §5.2: token endpoint errors are 400; the code says it is temporary
          throw new errors.TemporarilyUnavailable('the subject token’s revocation status cannot be checked at its issuer now; retry later');
        }
        if (revoked) throw new errors.InvalidGrant('subject token is revoked');
      }
      // a sender-constrained subject token is exchanged only by whoever holds what it is bound to: else
      // any client with the grant could turn a token lifted from its holder into one of its own
      const held = holdsBinding(subject, jkt, c.socket);
      if (held !== true) {
        ctx.audit('token.exchange_refused', { client_id: client.clientId, sub: subject.sub, reason: held, source: c.ip });
        throw new errors.InvalidGrant(`the subject token is sender-constrained: ${held}`);
      }
      const mayAct = mayActAllows(subject.may_act, client.clientId, ctx.issuer);
      if (mayAct === false) {
        ctx.audit('token.exchange_refused', { client_id: client.clientId, sub: subject.sub, reason: 'may_act names another actor', source: c.ip });
        throw new errors.InvalidGrant('the subject token does not allow this client to act for it (may_act)');
      }

      // Scope: only narrows. Absent: what the subject has that the client may hold.
      const subjectScopes = new Set(typeof subject.scope === 'string' ? subject.scope.split(' ').filter(Boolean) : []);
      const clientScopes = apiScopesOf(client);
      const zoneScopes = new Set(ctx.scopes);
      let scopes: string[];
      if (typeof params.scope === 'string' && params.scope !== '') {
        scopes = [...new Set<string>(params.scope.split(' ').filter(Boolean))];
        const wider = scopes.filter((s) => !subjectScopes.has(s) || !clientScopes.has(s) || !zoneScopes.has(s));
        if (wider.length > 0) throw new errors.InvalidScope('requested scope exceeds the subject token or the client', wider.join(' '));
      } else {
        scopes = [...subjectScopes].filter((s) => clientScopes.has(s) && zoneScopes.has(s));
      }
      if (scopes.length === 0) throw new errors.InvalidScope('no scope in common between the subject token and the client');

      // Audience: within this zone, one of the subject token's audiences;
      // from a trusted zone, one of this zone's audiences (default: the zone's own).
      const requested = (params.audience ?? params.resource) as string | undefined;
      const subjectAud = new Set(Array.isArray(subject.aud) ? subject.aud : subject.aud ? [subject.aud] : []);
      let audience: string;
      if (requested !== undefined) {
        if (!ctx.audiences.includes(requested)) throw new errors.InvalidTarget('unknown audience for this zone');
        if (own && !subjectAud.has(requested)) throw new errors.InvalidTarget('audience may only narrow');
        audience = requested;
      } else if (own) {
        const first = [...subjectAud].find((a) => ctx.audiences.includes(a));
        if (!first) throw new errors.InvalidTarget('the subject token has no audience of this zone');
        audience = first;
      } else {
        audience = ctx.audience;
      }

      const act: Record<string, unknown> = { sub: client.clientId };
      if (subject.act && typeof subject.act === 'object') act.act = subject.act;
      const extra: Record<string, unknown> = { act };
      if (subject.auth_time !== undefined) extra.auth_time = subject.auth_time;
      // the user's authentication goes only to an actor allowed to act for them here
      const listed = ctx.config.tokenExchange.actors[client.clientId];
      const actsForUser = mayAct === true || (listed !== undefined && (listed.audiences ?? [ctx.audience]).includes(audience));
      if (actsForUser) for (const k of ['acr', 'amr'] as const) if (subject[k] !== undefined) extra[k] = subject[k];
      if (!own) extra.subject_iss = iss;

      const at = new provider.AccessToken({
        accountId: subject.sub,
        client,
        scope: scopes.join(' '),
        gty: 'token_exchange',
      });
      exchangeClaims.set(at, extra);
      exchangeSubject.set(at, { jti: subject.jti as string, iss: iss as string });
      if (own) {
        const row = await ctx.db.selectFrom('token_index').select('grant_id').where('jti', '=', subject.jti as string).executeTakeFirst();
        if (row?.grant_id) exchangeGrant.set(at, row.grant_id);
      }
      at.resourceServer = new provider.ResourceServer(audience, {
        scope: ctx.scopes.filter((s) => clientScopes.has(s)).join(' '),
        audience,
        // lifetime only narrows too: never past the subject token's expiry
        accessTokenTTL: Math.min(ctx.config.accessTokenTtl, Math.max(1, (subject.exp as number) - Math.floor(ctx.now() / 1000))),
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: ctx.keys.active.alg, kid: ctx.keys.active.kid } },
      });
      // RFC 8705 §3: a client registered for certificate-bound tokens gets the exchanged token bound too
      if (client.tlsClientCertificateBoundAccessTokens) {
        const cert = peerCertificate(c.socket);
        if (!cert) throw new errors.InvalidGrant('mutual TLS client certificate not provided');
        at.setThumbprint('x5t', cert.toString());
      }
      if (jkt) at.setThumbprint('jkt', jkt);
      c.oidc.entity('AccessToken', at);
      const value = await at.save();
      // a subject revoked while this was being made: its cascade may have missed this one
      if (own && !(await isLive(ctx, subject as AccessTokenClaims))) {
        await ctx.db.updateTable('token_index').set({ revoked: 1, revoked_at: ctx.now() }).where('jti', '=', at.jti).where('revoked', '=', 0).execute();
        throw new errors.InvalidGrant('subject token is revoked');
      }
      ctx.audit('token.exchanged', {
        client_id: client.clientId,
        sub: subject.sub,
        actor: client.clientId,
        scope: scopes.join(' '),
        aud: audience,
        jti: at.jti,
        subject_issuer: iss as string,
        reason: actsForUser ? 'acts for the user (acr, amr kept)' : 'not an allowed actor here: acr and amr not carried',
        source: c.ip,
      });
      c.body = {
        access_token: value,
        issued_token_type: ACCESS_TOKEN_TYPE,
        token_type: jkt ? 'DPoP' : 'Bearer',
        expires_in: at.expiration,
        scope: scopes.join(' '),
      };
    },
    PARAMS,
  );
}

/**
 * Does the exchange request prove what the subject token is bound to (RFC 8705
 * cnf.x5t#S256: this connection's client certificate; RFC 9449 cnf.jkt: the
 * DPoP proof sent with the exchange)? true, or why not.
 */
function holdsBinding(subject: JWTPayload, proofJkt: string | undefined, socket: unknown): true | string {
  if (subject.cnf === undefined) return true;
  const binding = bindingOf(subject as Record<string, unknown>);
  if (binding === undefined) return 'it is bound to something this authority cannot check';
  if (binding.kind === 'dpop') return proofJkt === binding.jkt ? true : 'send a DPoP proof made with the key it is bound to';
  const cert = peerCertificate(socket);
  return cert !== undefined && certificateThumbprint(cert) === binding.x5t ? true : 'present the client certificate it is bound to';
}
