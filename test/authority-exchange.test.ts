// Token exchange (RFC 8693) and revocation, within a zone and across zones,
// and who receives the user's authentication (acr, amr) by exchange.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as oidc from 'openid-client';
import { decodeJwt } from 'jose';
import { generate } from 'otplib';
import { tempDir, trustingFetch, writeTopology, silentLogger, offsetClock, REDIRECT, type Harness } from './support/authority-harness.ts';
import { signIn, codeTokens } from './support/authority-flows.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startAuthority, TOKEN_EXCHANGE, type RunningAuthority } from '../src/authority/index.ts';

const AT = 'urn:ietf:params:oauth:token-type:access_token';
const REPORTS = 'https://reports.internal';

let tmp: ReturnType<typeof tempDir>;
let pub: RunningAuthority;
let priv: RunningAuthority;
let tf: ReturnType<typeof trustingFetch>;
const clock = offsetClock();
const audit: Record<string, unknown>[] = [];
let pubWeb: oidc.Configuration;
let pubService: oidc.Configuration;
let privService: oidc.Configuration;
let privNosy: oidc.Configuration;
let privFeed: { id: string; secret: string };
let pubFeed: { id: string; secret: string };

const discover = (issuer: string, id: string, secret: string, md?: Partial<oidc.ClientMetadata>) =>
  oidc.discovery(new URL(issuer), id, md, oidc.ClientSecretBasic(secret), { [oidc.customFetch]: tf.fetch as any });

before(async () => {
  tmp = tempDir();
  const file = writeTopology(tmp.dir, {
    public: 'authority:\n  scopes: [orders:read, orders:write]\n',
    private: `authority:\n  scopes: [orders:read, orders:write]\n  audiences: [${REPORTS}]\n  trustedZones: [public]\n  tokenExchange:\n    actors:\n      private-service: {}\n`,
  });
  const common = { topology: loadTopology(file), stateDir: path.join(tmp.dir, 'state'), dev: true, logger: silentLogger(), clock, onAudit: (e: Record<string, unknown>) => audit.push(e) };
  pub = await startAuthority({ ...common, zone: 'public' });
  priv = await startAuthority({ ...common, zone: 'private' });
  tf = trustingFetch(pub.caFile!);
  const pc = pub.devCredentials!.clients;
  pubWeb = await discover(pub.issuer, pc[1].client_id, pc[1].client_secret!, { redirect_uris: [REDIRECT] });
  pubService = await discover(pub.issuer, pc[0].client_id, pc[0].client_secret!);
  const ps = priv.devCredentials!.clients[0];
  privService = await discover(priv.issuer, ps.client_id, ps.client_secret!);
  const nosy = await priv.admin.clients.add({ clientId: 'nosy-service', grantTypes: [TOKEN_EXCHANGE], scope: 'orders:read orders:write', authMethod: 'client_secret_basic' });
  privNosy = await discover(priv.issuer, nosy.client_id, nosy.client_secret!);
  const f1 = await priv.admin.clients.add({ clientId: 'feed-private', grantTypes: [], scope: '', authMethod: 'client_secret_basic', revocationFeed: true });
  privFeed = { id: f1.client_id, secret: f1.client_secret! };
  const f2 = await pub.admin.clients.add({ clientId: 'feed-public', grantTypes: [], scope: '', authMethod: 'client_secret_basic', revocationFeed: true });
  pubFeed = { id: f2.client_id, secret: f2.client_secret! };
});

after(async () => {
  await priv.close();
  await pub.close();
  await tf.close();
  tmp.remove();
});

async function userToken(username: string): Promise<string> {
  const user = await pub.admin.users.add({ username });
  const h = { auth: pub, fetch: tf.fetch, totp: async (s: string) => generate({ secret: s, epoch: Math.floor(clock.now() / 1000) }) } as unknown as Harness;
  const tokens = await codeTokens(pubWeb, await signIn(h, pubWeb, { username, password: user.password, totp_secret: user.totp_secret! }, { scope: 'openid orders:read orders:write' }));
  return tokens.access_token;
}

const exchange = (config: oidc.Configuration, subject: string, extra: Record<string, string> = {}) =>
  oidc.genericGrantRequest(config, TOKEN_EXCHANGE, { subject_token: subject, subject_token_type: AT, scope: 'orders:read', ...extra });

async function feedJtis(auth: RunningAuthority, c: { id: string; secret: string }): Promise<string[]> {
  const res = await tf.fetch(auth.revocationFeed, { headers: { authorization: 'Basic ' + Buffer.from(`${c.id}:${c.secret}`).toString('base64') } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { jtis: { jti: string }[] }).jtis.map((j) => j.jti);
}

async function eventually(what: string, check: () => Promise<boolean>, ms = 12_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    if (await check()) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what} within ${ms} ms`);
}

test('a public token revoked at its issuer is not exchanged in the private zone; what was exchanged from it is revoked there too', async () => {
  const subject = await userToken('rosa');
  const before = await exchange(privService, subject);
  assert.equal((await oidc.tokenIntrospection(privService, before.access_token)).active, true);

  await oidc.tokenRevocation(pubWeb, subject);
  await assert.rejects(exchange(privService, subject), (e: any) => e.error === 'invalid_grant');
  // the refused exchange read the issuer's feed: the earlier exchanged token is revoked at once
  assert.equal((await oidc.tokenIntrospection(privService, before.access_token)).active, false);
  assert.ok((await feedJtis(priv, privFeed)).includes(decodeJwt(before.access_token).jti!), "the private gateway's feed lists it");

  // without another exchange, the private authority's poll of the public feed finds it
  const second = await userToken('sven');
  const exchanged = await exchange(privService, second);
  await oidc.tokenRevocation(pubWeb, second);
  const ms = await eventually('the exchanged token is listed in the private feed', async () =>
    (await feedJtis(priv, privFeed)).includes(decodeJwt(exchanged.access_token).jti!),
  );
  console.log(`# a revocation in the public zone reached the private feed by polling in ${ms.toFixed(0)} ms`);
  assert.ok(audit.some((e) => e.event === 'token.descendants_revoked' && e.subject_issuer === pub.issuer));
});

test('within a zone: revoking the subject token revokes the tokens exchanged from it', async () => {
  const subject = await userToken('tomas');
  const exchanged = await exchange(pubService, subject);
  const twice = await exchange(pubService, exchanged.access_token);
  assert.equal((await oidc.tokenIntrospection(pubService, exchanged.access_token)).active, true);
  await oidc.tokenRevocation(pubWeb, subject);
  assert.equal((await oidc.tokenIntrospection(pubService, exchanged.access_token)).active, false, 'its child');
  assert.equal((await oidc.tokenIntrospection(pubService, twice.access_token)).active, false, 'and its grandchild');
  const listed = await feedJtis(pub, pubFeed);
  for (const t of [exchanged, twice]) assert.ok(listed.includes(decodeJwt(t.access_token).jti!), "the public gateway's feed lists it");
  await assert.rejects(exchange(pubService, exchanged.access_token), (e: any) => e.error === 'invalid_grant');
});

test('acr and amr go only to an actor allowed to act for the user at that audience', async () => {
  const subject = await userToken('uma');
  assert.deepEqual(decodeJwt(subject).amr, ['pwd', 'otp', 'mfa']);

  const allowed = decodeJwt((await exchange(privService, subject)).access_token);
  assert.deepEqual(allowed.act, { sub: 'private-service' });
  assert.deepEqual(allowed.amr, ['pwd', 'otp', 'mfa'], 'a listed actor at its audience keeps the MFA claims');
  assert.equal(allowed.acr, 'urn:gatehouse:acr:mfa');

  const other = decodeJwt((await exchange(privNosy, subject)).access_token);
  assert.deepEqual(other.act, { sub: 'nosy-service' });
  assert.equal(other.amr, undefined, 'a client that may exchange but is no listed actor gets no amr');
  assert.equal(other.acr, undefined);

  const elsewhere = decodeJwt((await exchange(privService, subject, { audience: REPORTS })).access_token);
  assert.equal(elsewhere.aud, REPORTS);
  assert.equal(elsewhere.amr, undefined, 'the listed actor at an audience not listed for it gets no amr');
  assert.equal(elsewhere.acr, undefined);
  assert.ok(audit.some((e) => e.event === 'token.exchanged' && e.client_id === 'nosy-service' && /not carried/.test(String(e.reason))));
});

test('the example topology lets the BFF act for users in the private zone (its orders-create route requires MFA)', () => {
  const shop = loadTopology(path.join(import.meta.dirname, '../examples/shop/gatehouse.yaml')).topology;
  const priv = shop.zones.private.authority!;
  assert.deepEqual(priv.tokenExchange.actors, { bff: {} });
  assert.ok(priv.dev.serviceClients.some((c) => c.service === 'bff' && c.grantTypes.includes(TOKEN_EXCHANGE)));
});

test('fail closed: when the issuer cannot be asked, a trusted zone token is not exchanged', async () => {
  const subject = await userToken('vera');
  await pub.close();
  await assert.rejects(exchange(privService, subject), (e: any) => {
    assert.equal(e.error, 'temporarily_unavailable');
    return true;
  });
  assert.ok(audit.some((e) => e.event === 'token.exchange_refused' && /revocation status unknown/.test(String(e.reason))));
});
