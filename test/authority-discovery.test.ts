// Discovery and the standard endpoints, read and driven by openid-client the
// way any OpenID client would: every client authentication method the
// authority accepts is advertised (tls_client_auth with its mTLS aliases), the
// zone's scopes, DPoP algorithms and certificate-bound tokens; userinfo (/me)
// answers the zone's own access tokens that carry `openid`, and refuses those
// that do not, revoked ones, and tokens of another zone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as oidc from 'openid-client';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createHash } from 'node:crypto';
import { startHarness, tempDir, writeTopology, DEFAULT_AUTHORITY, type Harness } from './support/authority-harness.ts';
import { signIn, codeTokens } from './support/authority-flows.ts';
import { loadTopology } from '../src/topology/load.ts';
import { initCa } from '../src/pki/index.ts';

const AUTHORITY = `${DEFAULT_AUTHORITY}clientCa: trust-domain\n`;
let h: Harness;
let tmp: ReturnType<typeof tempDir>;

before(async () => {
  tmp = tempDir();
  const file = writeTopology(tmp.dir, { public: `authority:\n${AUTHORITY.replace(/^/gm, '  ')}` });
  await initCa({ stateDir: path.join(tmp.dir, 'state'), topology: loadTopology(file).topology });
  h = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: AUTHORITY });
});
after(async () => {
  await h.close();
  tmp.remove();
});

const web = () => h.auth.devCredentials!.clients.find((c) => c.client_id === 'public-web')!;
const service = () => h.auth.devCredentials!.clients.find((c) => c.client_id === 'public-service')!;

test('discovery lists every method, scope and sender constraint the authority supports', async () => {
  const config = await h.discover(web().client_id, oidc.ClientSecretBasic(web().client_secret!));
  const md = config.serverMetadata() as Record<string, any>;
  assert.deepEqual(md.token_endpoint_auth_methods_supported, ['client_secret_basic', 'private_key_jwt', 'none', 'tls_client_auth']);
  for (const s of ['openid', 'offline_access', 'profile', 'orders:read', 'orders:write', 'catalog:read']) assert.ok(md.scopes_supported.includes(s), s);
  assert.ok(md.dpop_signing_alg_values_supported.includes('ES256'));
  assert.ok(md.dpop_signing_alg_values_supported.includes('EdDSA'));
  assert.equal(md.tls_client_certificate_bound_access_tokens, true);
  assert.equal(md.mtls_endpoint_aliases.token_endpoint, `${h.auth.issuer}/token`);
  assert.equal(md.mtls_endpoint_aliases.userinfo_endpoint, `${h.auth.issuer}/me`);
  assert.equal(md.userinfo_endpoint, `${h.auth.issuer}/me`);
  assert.deepEqual(md.code_challenge_methods_supported, ['S256']);
  console.log(`discovery: ${JSON.stringify(md)}`);
});

test('userinfo answers the zone access token of a sign-in with openid (openid-client fetchUserInfo)', async () => {
  const config = await h.discover(web().client_id, oidc.ClientSecretBasic(web().client_secret!));
  const login = await signIn(h, config, h.auth.devCredentials!.users[0], { scope: 'openid profile orders:read' });
  const tokens = await codeTokens(config, login);
  const claims = decodeJwt(tokens.access_token);
  assert.equal(claims.aud, h.auth.audience, 'a zone token, for the zone audience');
  assert.deepEqual(String(claims.scope).split(' ').sort(), ['openid', 'orders:read', 'profile']);
  const sub = tokens.claims()!.sub;
  const info = await oidc.fetchUserInfo(config, tokens.access_token, sub);
  assert.equal(info.sub, sub);
  assert.equal(info.preferred_username, 'alice');

  // revoked at the authority: userinfo refuses it at once
  await oidc.tokenRevocation(config, tokens.access_token);
  const r = await h.fetch(`${h.auth.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(r.status, 401);
  assert.match(r.headers.get('www-authenticate')!, /^Bearer realm="public", error="invalid_token"/);
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
});

test('userinfo refuses: no openid, a client token, no token, another scheme, a forged token', async () => {
  const config = await h.discover(web().client_id, oidc.ClientSecretBasic(web().client_secret!));
  h.clock.advance(30_000); // the next TOTP step: a code is accepted once
  const login = await signIn(h, config, h.auth.devCredentials!.users[0], { scope: 'openid orders:read' });
  const tokens = await codeTokens(config, login);
  const svc = await h.discover(service().client_id, oidc.ClientSecretBasic(service().client_secret!));
  const cc = await oidc.clientCredentialsGrant(svc, { scope: 'orders:read' });
  const me = (authorization?: string) => h.fetch(`${h.auth.issuer}/me`, { headers: authorization ? { authorization } : {} });

  const client = await me(`Bearer ${cc.access_token}`);
  assert.equal(client.status, 403, 'a client-credentials token has no user');
  assert.match(client.headers.get('www-authenticate')!, /error="insufficient_scope", scope="openid"/);

  const none = await me();
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="public", DPoP realm="public"');

  const basic = await me('Basic YTpi');
  assert.equal(basic.status, 401);
  assert.match(basic.headers.get('www-authenticate')!, /error="invalid_request"/);

  const [hd, body] = tokens.access_token.split('.');
  const forged = await me(`Bearer ${hd}.${body}.${'A'.repeat(86)}`);
  assert.equal(forged.status, 401);

  const query = await h.fetch(`${h.auth.issuer}/me?access_token=${tokens.access_token}`);
  assert.equal(query.status, 401, 'a token in the query is not read');

  const put = await h.fetch(`${h.auth.issuer}/me`, { method: 'PUT', headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal(put.status, 405);
  assert.equal((await me(`Bearer ${tokens.access_token}`)).status, 200, 'the same token, properly presented');
});

test('dpop.requireNonce: the token endpoint and userinfo ask for their nonce first; openid-client retries with it; a proof without one is use_dpop_nonce', async () => {
  const n = await startHarness({ authorityYaml: `${DEFAULT_AUTHORITY}dpop: { requireNonce: true }\n` });
  try {
    const w = n.auth.devCredentials!.clients.find((c) => c.client_id === 'public-web')!;
    const config = await n.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!));
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const handle = oidc.getDPoPHandle(config, { privateKey, publicKey } as Parameters<typeof oidc.getDPoPHandle>[1]);
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const user = n.auth.devCredentials!.users[0];
    const login = await signIn(n, config, user, { scope: 'openid profile orders:read', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier) });
    const tokens = await oidc.authorizationCodeGrant(config, login.callback, { pkceCodeVerifier: verifier, expectedState: state }, undefined, { DPoP: handle });
    assert.equal(tokens.token_type, 'dpop');
    const info = await oidc.fetchUserInfo(config, tokens.access_token, tokens.claims()!.sub, { DPoP: handle });
    assert.equal(info.preferred_username, user.username);
    // by hand, without a nonce: use_dpop_nonce and a DPoP-Nonce to retry with
    const proof = await new SignJWT({ htm: 'GET', htu: `${n.auth.issuer}/me`, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ath: createHash('sha256').update(tokens.access_token).digest('base64url') })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(publicKey) })
      .sign(privateKey);
    const r = await n.fetch(`${n.auth.issuer}/me`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: proof } });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate')!, /^DPoP realm="public", error="use_dpop_nonce"/);
    assert.ok(r.headers.get('dpop-nonce'));
  } finally {
    await n.close();
  }
});
