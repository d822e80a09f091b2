// The zone authority end to end, with openid-client as the real client and
// jose verifying every token: discovery, client credentials, authorization
// code + PKCE through the real login and TOTP forms, refresh rotation,
// introspection, revocation, token exchange, dev credentials.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader, decodeJwt, type JWTVerifyGetKey } from 'jose';
import * as oidc from 'openid-client';
import { startHarness, type Harness, REDIRECT } from './support/authority-harness.ts';
import { signIn, codeTokens } from './support/authority-flows.ts';
import { TOKEN_EXCHANGE } from '../src/authority/index.ts';

let h: Harness;
let jwks: JWTVerifyGetKey;
let service: oidc.Configuration;
let web: oidc.Configuration;

before(async () => {
  h = await startHarness();
  jwks = createRemoteJWKSet(new URL(h.auth.jwksUri), { [Symbol.for('customFetch')]: undefined } as any);
  const creds = h.auth.devCredentials!;
  const s = creds.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  const w = creds.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  service = await h.discover(s.client_id, oidc.ClientSecretBasic(s.client_secret!));
  web = await h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
});
after(() => h.close());

async function verify(token: string, audience = h.auth.audience) {
  // fetch JWKS through the CA-trusting fetch, then verify locally
  const res = await h.fetch(h.auth.jwksUri);
  const set = (await res.json()) as { keys: Record<string, unknown>[] };
  const { createLocalJWKSet } = await import('jose');
  return jwtVerify(token, createLocalJWKSet(set as any), { issuer: h.auth.issuer, audience, typ: 'at+jwt', algorithms: ['EdDSA'] });
}

test('discovery advertises only what the zone allows', async () => {
  const md = service.serverMetadata();
  assert.equal(md.issuer, h.auth.issuer);
  assert.deepEqual(md.code_challenge_methods_supported, ['S256']);
  assert.deepEqual(md.response_types_supported, ['code']);
  assert.equal(md.authorization_response_iss_parameter_supported, true);
  for (const g of ['implicit', 'password', 'urn:ietf:params:oauth:grant-type:device_code'])
    assert.ok(!md.grant_types_supported?.includes(g), `${g} is off`);
  assert.ok(md.grant_types_supported?.includes(TOKEN_EXCHANGE));
  assert.ok(md.token_endpoint_auth_methods_supported?.includes('private_key_jwt'));
  assert.ok(!md.token_endpoint_auth_methods_supported?.includes('client_secret_post'));
  const keys = (await (await h.fetch(h.auth.jwksUri)).json()) as { keys: Record<string, unknown>[] };
  assert.ok(keys.keys.length >= 1);
  for (const k of keys.keys) {
    assert.equal(k.d, undefined, 'JWKS never holds a private part');
    assert.equal(k.alg, 'EdDSA');
  }
  void jwks;
});

test('client credentials: an RFC 9068 JWT, 5 minutes, signed EdDSA', async () => {
  const tokens = await oidc.clientCredentialsGrant(service, { scope: 'orders:read catalog:read' });
  assert.equal(tokens.token_type.toLowerCase(), 'bearer');
  assert.equal(tokens.expires_in, 300);
  assert.equal(tokens.refresh_token, undefined);
  const { payload, protectedHeader } = await verify(tokens.access_token);
  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.equal(protectedHeader.alg, 'EdDSA');
  assert.equal(payload.client_id, 'public-service');
  assert.equal(payload.sub, 'public-service');
  assert.equal(payload.scope, 'orders:read catalog:read');
  assert.equal(payload.aud, h.auth.audience);
  assert.equal(payload.exp! - payload.iat!, 300);
  assert.ok(typeof payload.jti === 'string' && payload.jti.length >= 16);
});

test('client credentials: a scope the client may not have is refused', async () => {
  await assert.rejects(oidc.clientCredentialsGrant(service, { scope: 'orders:read admin' }), (e: any) => {
    assert.equal(e.error, 'invalid_scope');
    return true;
  });
});

test('authorization code + PKCE through the login and TOTP forms; refresh rotates; id token and access token verify', async () => {
  const user = h.auth.devCredentials!.users[0];
  const login = await signIn(h, web, user);
  assert.equal(login.callback.searchParams.get('iss'), h.auth.issuer, 'RFC 9207 iss in the response');
  const tokens = await codeTokens(web, login);
  assert.ok(tokens.refresh_token);
  const { payload } = await verify(tokens.access_token);
  const account = await h.auth.admin.users.byUsername(user.username);
  assert.equal(payload.sub, account!.id);
  assert.equal(payload.client_id, 'public-web');
  assert.equal(payload.scope, 'openid orders:read', 'the granted OpenID scope stays, for userinfo');
  assert.deepEqual(payload.amr, ['pwd', 'otp', 'mfa']);
  assert.equal(payload.acr, 'urn:gatehouse:acr:mfa');
  assert.ok(typeof payload.auth_time === 'number');
  const claims = tokens.claims()!;
  assert.equal(claims.sub, account!.id);
  assert.equal(decodeProtectedHeader(tokens.id_token!).alg, 'EdDSA');

  const refreshed = await oidc.refreshTokenGrant(web, tokens.refresh_token!);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token, 'rotated on every use');
  const p2 = (await verify(refreshed.access_token)).payload;
  assert.deepEqual(p2.amr, ['pwd', 'otp', 'mfa'], 'a refreshed token still says how the user signed in');

  // reuse of the consumed refresh token revokes the whole grant
  await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant');
  await assert.rejects(oidc.refreshTokenGrant(web, refreshed.refresh_token!), (e: any) => e.error === 'invalid_grant');
  const intro = await oidc.tokenIntrospection(web, refreshed.access_token);
  assert.equal(intro.active, false, 'access tokens of a revoked grant read inactive');
  assert.ok(h.audit.some((e) => e.event === 'token.reuse_detected'));
});

test('introspection: own token active with its claims; another client sees it inactive', async () => {
  const tokens = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  const mine = await oidc.tokenIntrospection(service, tokens.access_token);
  assert.equal(mine.active, true);
  assert.equal(mine.client_id, 'public-service');
  assert.equal(mine.scope, 'orders:read');
  assert.equal(mine.iss, h.auth.issuer);
  const theirs = await oidc.tokenIntrospection(web, tokens.access_token);
  assert.deepEqual(theirs, { active: false });
  const garbage = await oidc.tokenIntrospection(service, 'not-a-token');
  assert.equal(garbage.active, false);
});

test('revocation: only the owning client; a revoked token reads inactive', async () => {
  const tokens = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  await assert.rejects(oidc.tokenRevocation(web, tokens.access_token), (e: any) => e.error === 'unauthorized_client');
  assert.equal((await oidc.tokenIntrospection(service, tokens.access_token)).active, true, 'a foreign revocation changes nothing');
  await oidc.tokenRevocation(service, tokens.access_token);
  assert.equal((await oidc.tokenIntrospection(service, tokens.access_token)).active, false);
  assert.ok(h.audit.some((e) => e.event === 'token.revoked' && e.client_id === 'public-service'));
});

test('refresh token revocation by its client ends the grant', async () => {
  const user = await h.auth.admin.users.add({ username: 'rita', claims: {} });
  const tokens = await codeTokens(web, await signIn(h, web, { username: 'rita', password: user.password, totp_secret: user.totp_secret! }));
  await oidc.tokenRevocation(web, tokens.refresh_token!);
  await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant');
  assert.equal((await oidc.tokenIntrospection(web, tokens.access_token)).active, false);
});

test('token exchange: user token for a narrower one that names the client as actor', async () => {
  const user = await h.auth.admin.users.add({ username: 'xavier' });
  const tokens = await codeTokens(
    web,
    await signIn(h, web, { username: 'xavier', password: user.password, totp_secret: user.totp_secret! }, { scope: 'openid orders:read orders:write' }),
  );
  const exchanged = await oidc.genericGrantRequest(service, TOKEN_EXCHANGE, {
    subject_token: tokens.access_token,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    scope: 'orders:read',
  });
  assert.equal((exchanged as any).issued_token_type, 'urn:ietf:params:oauth:token-type:access_token');
  const { payload } = await verify(exchanged.access_token);
  assert.equal(payload.sub, user.id);
  assert.equal(payload.client_id, 'public-service');
  assert.deepEqual(payload.act, { sub: 'public-service' });
  assert.equal(payload.scope, 'orders:read');
  // public-service is not an allowed actor (tokenExchange.actors, may_act): no MFA claims of the user
  assert.equal(payload.amr, undefined);
  assert.equal(payload.acr, undefined);
  assert.ok(payload.exp! <= decodeJwt(tokens.access_token).exp!, 'never outlives the subject token');

  // widening is refused
  await assert.rejects(
    oidc.genericGrantRequest(service, TOKEN_EXCHANGE, {
      subject_token: exchanged.access_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'orders:read orders:write',
    }),
    (e: any) => e.error === 'invalid_scope',
  );
  // a client without the grant type is refused
  await assert.rejects(
    oidc.genericGrantRequest(web, TOKEN_EXCHANGE, {
      subject_token: tokens.access_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    }),
    (e: any) => e.error === 'unauthorized_client' || e.error === 'invalid_request',
  );
  assert.ok(h.audit.some((e) => e.event === 'token.exchanged' && e.sub === user.id && e.actor === 'public-service'));
});

test('dev credentials have the DESIGN.md shape and are stable across restarts', async () => {
  const creds = h.auth.devCredentials!;
  assert.deepEqual(Object.keys(creds).sort(), ['clients', 'users']);
  const cc = creds.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  assert.equal(cc.scope, 'orders:read orders:write catalog:read');
  assert.match(cc.client_secret!, /^[\w-]{43}$/, '256-bit secret');
  const webClient = creds.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  assert.deepEqual(webClient.redirect_uris, [REDIRECT]);
  assert.match(creds.users[0].totp_secret, /^[A-Z2-7]+=*$/);
});

test('audit lines never carry a secret', async () => {
  const text = JSON.stringify(h.audit);
  const creds = h.auth.devCredentials!;
  for (const c of creds.clients) if (c.client_secret) assert.ok(!text.includes(c.client_secret));
  assert.ok(!text.includes(creds.users[0].password));
  assert.ok(!text.includes('eyJ'), 'no JWT in the audit log');
  for (const kind of ['login.success', 'mfa.challenge', 'token.issued', 'token.refreshed'])
    assert.ok(h.audit.some((e) => e.event === kind), `audits ${kind}`);
});
