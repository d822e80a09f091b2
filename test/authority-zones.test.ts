// Keys (rotation, algorithms, encryption at rest), confidential claims and
// token exchange between zones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { statSync, writeFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import * as oidc from 'openid-client';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { startHarness, tempDir, trustingFetch, writeTopology, silentLogger, offsetClock, REDIRECT, type Harness } from './support/authority-harness.ts';
import { signIn, codeTokens } from './support/authority-flows.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startAuthority, openConfidentialClaims, TOKEN_EXCHANGE, CONFIDENTIAL_CLAIM } from '../src/authority/index.ts';

async function cc(h: Harness, scope = 'orders:read') {
  const s = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  const config = await h.discover(s.client_id, oidc.ClientSecretBasic(s.client_secret!));
  return oidc.clientCredentialsGrant(config, { scope });
}

async function jwks(h: Harness): Promise<{ keys: Record<string, any>[] }> {
  return (await (await h.fetch(h.auth.jwksUri)).json()) as any;
}

test('key rotation: published before it signs; the old key stays until its tokens expired', async () => {
  const h = await startHarness({ authorityYaml: 'scopes: [orders:read]\naccessTokenTtl: 60\nkeyRotation:\n  publishLeadSeconds: 30\n' });
  try {
    const t1 = await cc(h);
    const k1 = decodeProtectedHeader(t1.access_token).kid!;
    const r = await h.auth.admin.rotateKeys();
    assert.deepEqual(r.retired, [k1]);
    let set = await jwks(h);
    assert.deepEqual(set.keys.map((k) => k.kid).sort(), [k1, r.kid].sort(), 'the new key is published at once');
    assert.equal(decodeProtectedHeader((await cc(h)).access_token).kid, k1, 'but does not sign yet');

    h.clock.advance(31_000);
    await h.auth.reloadKeys();
    const t2 = await cc(h);
    assert.equal(decodeProtectedHeader(t2.access_token).kid, r.kid, 'the new key signs after the lead');
    set = await jwks(h);
    assert.ok(set.keys.some((k) => k.kid === k1), 'the old key is still published');
    await jwtVerify(t1.access_token, createLocalJWKSet(set as any), { typ: 'at+jwt' });

    h.clock.advance((60 + 61) * 1000);
    await h.auth.reloadKeys();
    set = await jwks(h);
    assert.deepEqual(set.keys.map((k) => k.kid), [r.kid], 'gone once every token it signed has expired');
    assert.ok(h.audit.some((e) => e.event === 'key.rotated' && e.kid === r.kid));
    for (const k of set.keys) assert.equal(k.d, undefined);
  } finally {
    await h.close();
  }
});

test('ES256 zone; signing keys are sealed at rest; the key file is 0600; a wrong master key refuses to start', async () => {
  const tmp = tempDir();
  try {
    const h = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: 'scopes: [orders:read]\nsigningAlg: ES256\n' });
    const t = await cc(h);
    assert.equal(decodeProtectedHeader(t.access_token).alg, 'ES256');
    const set = await jwks(h);
    assert.equal(set.keys[0].kty, 'EC');
    assert.equal(set.keys[0].d, undefined);
    await h.close();

    const zoneDir = path.join(tmp.dir, 'state', 'authority', 'public');
    assert.equal(statSync(path.join(tmp.dir, 'state', 'vault', 'master.key')).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(zoneDir, 'authority.sqlite')).mode & 0o777, 0o600);
    const db = new DatabaseSync(path.join(zoneDir, 'authority.sqlite'), { readOnly: true });
    const rows = db.prepare('select private_jwk from signing_keys').all() as { private_jwk: string }[];
    db.close();
    assert.ok(rows.length >= 1);
    for (const r of rows) {
      assert.match(r.private_jwk, /^v2\./);
      assert.doesNotMatch(r.private_jwk, /"d"/);
    }

    const before = process.env.GATEHOUSE_MASTER_KEY;
    process.env.GATEHOUSE_MASTER_KEY = Buffer.alloc(32, 7).toString('base64');
    try {
      await assert.rejects(
        startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: 'scopes: [orders:read]\nsigningAlg: ES256\n' }),
        /cannot decrypt/,
      );
    } finally {
      if (before === undefined) delete process.env.GATEHOUSE_MASTER_KEY;
      else process.env.GATEHOUSE_MASTER_KEY = before;
    }
  } finally {
    tmp.remove();
  }
});

test('confidential claims travel as a nested JWE only the audience can open', async () => {
  const tmp = tempDir();
  const audienceKeys = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256', extractable: true });
  const otherKeys = await generateKeyPair('ECDH-ES+A256KW', { crv: 'P-256', extractable: true });
  writeFileSync(path.join(tmp.dir, 'orders.jwk.json'), JSON.stringify({ ...(await exportJWK(audienceKeys.publicKey)), kid: 'orders-1' }));
  const yaml = `scopes: [orders:read]
audiences: [https://orders.internal]
confidentialClaims:
  https://orders.internal:
    claims: [email]
    publicKey: orders.jwk.json
`;
  const h = await startHarness({ dir: tmp.dir, authorityYaml: yaml });
  try {
    const w = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
    const web = await h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
    const u = await h.auth.admin.users.add({ username: 'carol', claims: { email: 'carol@example.test' } });
    const tokens = await codeTokens(
      web,
      await signIn(h, web, { username: 'carol', password: u.password, totp_secret: u.totp_secret! }, { resource: 'https://orders.internal' }),
    );
    const set = createLocalJWKSet((await jwks(h)) as any);
    const { payload } = await jwtVerify(tokens.access_token, set, { audience: 'https://orders.internal', typ: 'at+jwt' });
    assert.equal(payload.email, undefined, 'not in clear');
    assert.ok(!Buffer.from(tokens.access_token.split('.')[1], 'base64url').toString().includes('carol@'));
    const inner = payload[CONFIDENTIAL_CLAIM] as string;
    const header = decodeProtectedHeader(inner);
    assert.equal(header.alg, 'ECDH-ES+A256KW');
    assert.equal(header.enc, 'A256GCM');
    assert.deepEqual(await openConfidentialClaims(inner, audienceKeys.privateKey as any), { email: 'carol@example.test' });
    await assert.rejects(openConfidentialClaims(inner, otherKeys.privateKey as any));

    // a refresh cannot move the grant to another audience
    await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!, { resource: h.auth.audience }), (e: any) => e.error === 'invalid_target');
    // a token for the zone's own audience carries no confidential claims
    h.clock.advance(30_000);
    const plain = await codeTokens(web, await signIn(h, web, { username: 'carol', password: u.password, totp_secret: u.totp_secret! }));
    assert.equal(decodeJwt(plain.access_token).aud, h.auth.audience);
    assert.equal(decodeJwt(plain.access_token)[CONFIDENTIAL_CLAIM], undefined);
  } finally {
    await h.close();
  }
});

test('token exchange across zones: only from a trusted zone; the result is this zone’s token naming the actor', async () => {
  const tmp = tempDir();
  const stateDir = path.join(tmp.dir, 'state');
  const file = writeTopology(tmp.dir, {
    public: 'authority:\n  scopes: [orders:read, orders:write, catalog:read]\n',
    private: 'authority:\n  scopes: [orders:read, orders:write]\n  trustedZones: [public]\n  tokenExchange:\n    actors:\n      private-service: {}\n',
    partner: 'authority:\n  scopes: [orders:read]\n',
  });
  const topology = loadTopology(file);
  const common = { topology, stateDir, dev: true, logger: silentLogger(), clock: offsetClock() };
  const pub = await startAuthority({ ...common, zone: 'public' });
  const priv = await startAuthority({ ...common, zone: 'private' });
  const partner = await startAuthority({ ...common, zone: 'partner' });
  const tf = trustingFetch(pub.caFile!);
  try {
    const discover = (issuer: string, id: string, secret: string, md?: any) =>
      oidc.discovery(new URL(issuer), id, md, oidc.ClientSecretBasic(secret), { [oidc.customFetch]: tf.fetch as any });
    const pw = pub.devCredentials!.clients[1];
    const web = await discover(pub.issuer, pw.client_id, pw.client_secret!, { redirect_uris: [REDIRECT] });
    const h = { auth: pub, fetch: tf.fetch, totp: async (s: string) => (await import('otplib')).generate({ secret: s, epoch: Math.floor(common.clock.now() / 1000) }) } as unknown as Harness;
    const user = pub.devCredentials!.users[0];
    const userTokens = await codeTokens(web, await signIn(h, web, user, { scope: 'openid orders:read orders:write' }));

    const ps = priv.devCredentials!.clients[0];
    const privService = await discover(priv.issuer, ps.client_id, ps.client_secret!);
    const exchanged = await oidc.genericGrantRequest(privService, TOKEN_EXCHANGE, {
      subject_token: userTokens.access_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'orders:read',
    });
    const privJwks = createLocalJWKSet((await (await tf.fetch(priv.jwksUri)).json()) as any);
    const { payload } = await jwtVerify(exchanged.access_token, privJwks, { issuer: priv.issuer, audience: priv.audience, typ: 'at+jwt' });
    assert.equal(payload.sub, decodeJwt(userTokens.access_token).sub);
    assert.deepEqual(payload.act, { sub: 'private-service' });
    assert.equal(payload.client_id, 'private-service');
    assert.equal(payload.scope, 'orders:read');
    assert.deepEqual(payload.amr, ['pwd', 'otp', 'mfa']);

    // audience can only be one of this zone's
    await assert.rejects(
      oidc.genericGrantRequest(privService, TOKEN_EXCHANGE, {
        subject_token: userTokens.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        audience: pub.audience,
      }),
      (e: any) => e.error === 'invalid_target',
    );
    // a zone the topology does not trust
    const pt = partner.devCredentials!.clients[0];
    const partnerService = await discover(partner.issuer, pt.client_id, pt.client_secret!);
    const partnerToken = await oidc.clientCredentialsGrant(partnerService, { scope: 'orders:read' });
    await assert.rejects(
      oidc.genericGrantRequest(privService, TOKEN_EXCHANGE, {
        subject_token: partnerToken.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      }),
      (e: any) => e.error === 'invalid_grant',
    );
  } finally {
    await pub.close();
    await priv.close();
    await partner.close();
    await tf.close();
    tmp.remove();
  }
});
