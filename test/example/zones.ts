// The example's four trust zones as `gatehouse up` runs them, each with the
// controls the README's "Trust zones" names:
//   partner   API keys with tiers on the moved route (gone from public), an
//             OAuth route that takes only sender-constrained tokens, a client
//             added by `gatehouse clients add` is a third party (consent);
//   internal  an admin route that needs a role from the SSO, sign-in through
//             the corp authority only;
//   private   the BFF's exchanged tokens bound to the certificate it exchanged
//             with: another certificate of the same workload, or the DPoP
//             scheme, gets 401.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import { decodeJwt } from 'jose';
import { sharedExample, certificateFor, exampleCli } from '../support/example-up.ts';
import { authorize, signIn, codeTokens, signInUntilConsent } from '../support/authority-flows.ts';
import { REDIRECT, type Harness, type TestFetch } from '../support/authority-harness.ts';
import { demoServiceToken, dpopKey, dpopHeaders } from '../support/dpop.ts';
import { serviceSpiffeId } from '../../src/pki/index.ts';
import { certificateThumbprint } from '../../src/shared/sender-constraint.ts';

const ex = await sharedExample('127.0.1.5');

after(async () => {
  for (const a of strangers.values()) await a.close();
  for (const a of harnessAgents) await a.close();
});

/**
 * An agent calling from another loopback address: a gateway slows down, then
 * blocks, a source whose credentials keep failing (authFailures), so each
 * test's refused calls come from an address of their own.
 */
const strangers = new Map<string, Agent>();
function from(address: string): Agent {
  let a = strangers.get(address);
  if (!a) strangers.set(address, (a = new Agent({ connect: { ca: readFileSync(ex.endpoints.caBundle, 'utf8') }, localAddress: address })));
  return a;
}

/**
 * A harness's own connections: cli() blocks the event loop (spawnSync) long enough for an authority to close an
 * idle keep-alive connection that the shared agent, its timers late, would then reuse ("other side closed").
 */
const harnessAgents: Agent[] = [];
const edgeFetch = () => {
  const agent = new Agent({ connect: { ca: readFileSync(ex.endpoints.caBundle, 'utf8') } });
  harnessAgents.push(agent);
  return ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as TestFetch;
};
const harness = (issuer: string) => ({ auth: { issuer }, fetch: edgeFetch(), totp: async (secret: string) => generate({ secret }) }) as unknown as Harness;

/** A CLI verb against the running example's state; the JSON it prints. */
const cli = (args: string[]) => exampleCli(ex.stateDir, args);

async function get(url: string, headers: Record<string, string> = {}, dispatcher: Agent = ex.edge) {
  const r = await request(url, { dispatcher, headers });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) as Record<string, any> };
}

/** A client-credentials token of the zone's demo service; with a DPoP proof when `key` is given. */
async function serviceToken(zone: string, scope: string, key?: Awaited<ReturnType<typeof dpopKey>>) {
  const r = await demoServiceToken({ dispatcher: ex.edge, authority: ex.endpoints.zones[zone].authority!, clients: ex.credentials.zones[zone].clients, scope, key });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.token!;
}

test('four trust zones and the SSO stand-in: public, partner, internal and private each have a gateway and an authority; corp an authority only', () => {
  const zones = ex.endpoints.zones as Record<string, { gateway?: string; authority?: string }>;
  assert.deepEqual(Object.keys(zones).sort(), ['corp', 'internal', 'partner', 'private', 'public']);
  for (const z of ['public', 'partner', 'internal', 'private']) {
    assert.match(zones[z].gateway!, /^https:\/\/127\.0\.0\.1:\d+$/, z);
    assert.match(zones[z].authority!, /^https:\/\/127\.0\.0\.1:\d+$/, z);
  }
  assert.equal(zones.corp.gateway, undefined);
  assert.equal(ex.endpoints.services['partner-catalog'].zone, 'partner');
  assert.equal(ex.endpoints.services.backoffice.zone, 'internal');
});

test('partner: the catalog with an API key at the partner gateway (gone from public), 60 a minute or 600 for the gold tier; keys of another zone or none refused', async () => {
  const standard = cli(['keys', 'api', 'add', '--zone', 'partner', '--consumer', 'acme', '--scopes', 'catalog:read']).key as string;
  const gold = cli(['keys', 'api', 'add', '--zone', 'partner', '--consumer', 'globex', '--scopes', 'catalog:read', '--tier', 'gold']).key as string;
  const url = ex.endpoints.zones.partner.gateway + '/api/partner/catalog';
  // the gateway reloads its keys every 2 s
  // (asked from a fresh address each time until it knows the key: the 401s before count as failures of that address)
  let probe = 0;
  const once = async (key: string) => {
    for (let i = 0; i < 60 && (await get(url, { 'x-api-key': key }, from(`127.0.8.${++probe}`))).status !== 200; i++) await new Promise((resolve) => setTimeout(resolve, 250));
    return get(url, { 'x-api-key': key });
  };
  const first = await once(standard);
  assert.equal(first.status, 200, first.text);
  assert.ok((first.json().products as unknown[]).length > 0, 'the catalog, served by the partner zone’s own service');
  assert.match(String(first.headers['ratelimit-policy']), /q=60;w=60/);
  const golden = await once(gold);
  assert.equal(golden.status, 200);
  assert.match(String(golden.headers['ratelimit-policy']), /q=600;w=60/, 'the gold tier');
  const refused = from('127.0.0.2');
  assert.equal((await get(url, {}, refused)).status, 401, 'no key');
  assert.equal((await get(url, { 'x-api-key': standard.slice(0, -1) + (standard.endsWith('A') ? 'B' : 'A') }, refused)).status, 401, 'a forged key');
  const publicKey = cli(['keys', 'api', 'add', '--zone', 'public', '--consumer', 'acme', '--scopes', 'catalog:read']).key as string;
  await new Promise((resolve) => setTimeout(resolve, 2500)); // past a key reload
  assert.equal((await get(url, { 'x-api-key': publicKey }, refused)).status, 401, 'a key of the public zone is no key here');
  // the route moved: the public gateway has no partner route any more
  assert.equal((await get(ex.endpoints.zones.public.gateway + '/api/partner/catalog', { 'x-api-key': standard })).status, 404);
});

test('partner: the OAuth route takes only sender-constrained tokens — a bearer token is refused, a DPoP-bound one with a fresh proof is served once per proof', async () => {
  const url = ex.endpoints.zones.partner.gateway + '/api/partner/oauth/catalog';
  const bearer = await serviceToken('partner', 'catalog:read');
  const refusedFrom = from('127.0.0.3');
  const refused = await get(url, { authorization: `Bearer ${bearer}` }, refusedFrom);
  assert.equal(refused.status, 401, refused.text);
  assert.match(String(refused.headers['www-authenticate']), /error="invalid_token"/);
  const key = await dpopKey();
  const bound = await serviceToken('partner', 'catalog:read', key);
  assert.equal((decodeJwt(bound).cnf as { jkt: string }).jkt, key.jkt);
  const headers = await dpopHeaders(key, bound, 'GET', url);
  const ok = await get(url, headers);
  assert.equal(ok.status, 200, ok.text);
  assert.ok((ok.json().products as unknown[]).length > 0);
  const replay = await get(url, headers, refusedFrom);
  assert.equal(replay.status, 401, 'the proof was used');
  assert.match(String(replay.headers['www-authenticate']), /error="invalid_dpop_proof"/);
  const thief = await dpopKey();
  assert.equal((await get(url, await dpopHeaders(thief, bound, 'GET', url), refusedFrom)).status, 401, 'the token without its key');
});

test('partner: a client added with `gatehouse clients add` is a third party — the user consents once, and its token is DPoP-bound for the partner route', async () => {
  const created = cli(['clients', 'add', '--zone', 'partner', '--id', 'acme-portal', '--name', 'Acme Portal', '--grant', 'authorization_code', '--redirect-uri', REDIRECT, '--scope', 'openid catalog:read']);
  const issuer = ex.endpoints.zones.partner.authority!;
  const h = harness(issuer);
  const config = await oidc.discovery(new URL(issuer), created.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(created.client_secret), { [oidc.customFetch]: h.fetch as any });
  const user = ex.credentials.zones.partner.users[0];
  const p = await signInUntilConsent(h, config, user, { scope: 'openid catalog:read' });
  assert.equal(p.page.status, 200, 'the consent page, not the callback');
  assert.match(p.page.html, /Acme Portal/);
  assert.match(p.page.html, /catalog:read/);
  const consented = await p.browser.submit(p.page, '/consent', {}, issuer);
  assert.equal(consented.status, 0, 'allowed: back at the client');
  // the code redeemed with a DPoP proof: the user's token is bound to the app's key
  const key = await dpopKey();
  const handle = oidc.getDPoPHandle(config, { privateKey: key.privateKey, publicKey: key.publicKey });
  const tokens = await oidc.authorizationCodeGrant(config, new URL(consented.url), { pkceCodeVerifier: p.verifier, expectedState: p.state }, undefined, { DPoP: handle });
  const claims = decodeJwt(tokens.access_token);
  assert.equal(claims.client_id, 'acme-portal');
  assert.equal((claims.cnf as { jkt: string }).jkt, key.jkt);
  // consented once for this scope set: prompt=none in the same session comes straight back with a code
  const again = await authorize(h, config, { scope: 'openid catalog:read', prompt: 'none' }, p.browser);
  assert.equal(again.page.status, 0);
  assert.ok(new URL(again.page.url).searchParams.get('code'), again.page.url);
  const url = ex.endpoints.zones.partner.gateway + '/api/partner/oauth/catalog';
  assert.equal((await get(url, await dpopHeaders(key, tokens.access_token, 'GET', url))).status, 200, "the user's DPoP-bound token, with its key");
  assert.equal((await get(url, { authorization: `Bearer ${tokens.access_token}` }, from('127.0.0.4'))).status, 401, 'the same token without its key');
});

test('internal: the admin route needs the admin role from the SSO — no token 401, a token without the role 403; the sign-in page offers the corp SSO', async () => {
  const url = ex.endpoints.zones.internal.gateway + '/api/admin/reports';
  assert.equal((await get(url, {}, from('127.0.0.5'))).status, 401);
  const noRole = await get(url, { authorization: `Bearer ${await serviceToken('internal', 'admin:read')}` }, from('127.0.0.5'));
  assert.equal(noRole.status, 403, noRole.text);
  // the sign-in page has the SSO's button; corp granted this zone its client at start
  const issuer = ex.endpoints.zones.internal.authority!;
  const web = ex.credentials.zones.internal.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const h = harness(issuer);
  const config = await oidc.discovery(new URL(issuer), web.client_id, { redirect_uris: web.redirect_uris }, oidc.ClientSecretBasic(web.client_secret!), { [oidc.customFetch]: h.fetch as any });
  const { Browser } = await import('../support/authority-browser.ts');
  const browser = new Browser(h.fetch);
  const login = await browser.follow(oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid admin:read', code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256', state: oidc.randomState() }).toString(), issuer);
  assert.equal(login.status, 200);
  assert.match(login.html, /Sign in with Corp SSO/);
  const grant = JSON.parse(readFileSync(path.join(ex.stateDir, 'authority', 'internal', 'federation', 'corp.json'), 'utf8')) as { client_id: string; issuer: string };
  assert.equal(grant.client_id, 'internal-sso');
  assert.equal(grant.issuer, ex.endpoints.zones.corp.authority);
});

test('partner: the gateway asks for a client certificate and requires none — a certificate-bound token passes over its certificate only (the API-key test above calls without any)', async () => {
  // a partner backend registered with tls_client_auth and certificate-bound tokens (the example's authority trusts the
  // trust domain's CA: a workload certificate stands in for the partner's; a partner CA of its own: test/gateway-partner-certificate.test.ts)
  const san = serviceSpiffeId('shop.local', 'partner', 'partner-catalog');
  cli(['clients', 'add', '--zone', 'partner', '--id', 'partner-sync', '--grant', 'client_credentials', '--scope', 'catalog:read', '--auth', 'tls_client_auth', '--tls-san-uri', san, '--certificate-bound']);
  const ca = readFileSync(ex.endpoints.caBundle, 'utf8');
  const [a, b] = [await certificateFor(ex.stateDir, san), await certificateFor(ex.stateDir, san)];
  const asA = new Agent({ connect: { ca, cert: a.certPem, key: a.keyPem } });
  const asB = new Agent({ connect: { ca, cert: b.certPem, key: b.keyPem }, localAddress: '127.0.0.8' });
  try {
    const r = await request(ex.endpoints.zones.partner.authority + '/token', {
      dispatcher: asA,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: 'partner-sync', scope: 'catalog:read' }).toString(),
    });
    const body = (await r.body.json()) as { access_token: string };
    assert.equal(r.statusCode, 200, JSON.stringify(body));
    assert.equal((decodeJwt(body.access_token).cnf as Record<string, string>)['x5t#S256'], certificateThumbprint(new X509Certificate(a.certPem)));
    const url = ex.endpoints.zones.partner.gateway + '/api/partner/oauth/catalog';
    const served = await get(url, { authorization: `Bearer ${body.access_token}` }, asA);
    assert.equal(served.status, 200, served.text);
    const overB = await get(url, { authorization: `Bearer ${body.access_token}` }, asB);
    assert.equal(overB.status, 401);
    assert.match(String(overB.headers['www-authenticate']), /^Bearer .*error="invalid_token".*another client certificate/);
    const none = await get(url, { authorization: `Bearer ${body.access_token}` }, from('127.0.0.9'));
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /none was presented/);
  } finally {
    await asA.close();
    await asB.close();
  }
  // its certificate request names no CA, so that a partner's client (Go and Java send only a certificate of a CA
  // named) sends its own, whoever issued it; the private gateway, which checks the chain, names the trust domain's
  const caNames = (gateway: string) => {
    const u = new URL(gateway);
    const r = spawnSync('openssl', ['s_client', '-connect', `${u.hostname}:${u.port}`, '-servername', 'localhost', '-tls1_3'], { input: '', encoding: 'utf8', timeout: 15_000 });
    return r.stdout;
  };
  if (spawnSync('openssl', ['version']).status !== 0) return;
  assert.match(caNames(ex.endpoints.zones.partner.gateway!), /No client certificate CA names sent/);
  assert.match(caNames(ex.endpoints.zones.private.gateway!), /Acceptable client certificate CA names\n.*shop\.local/);
});

/**
 * A back-office user's sign-in at the internal zone through the corp SSO, as
 * a browser does it (one browser per authority: both are on 127.0.0.1, and
 * cookies are per host): the corp button, password + TOTP at corp, back at
 * internal the user's own second factor (mfa: local). The access token.
 */
async function signInThroughCorp(corpUser: { username: string; password: string; totp_secret: string }, internalTotp: string): Promise<string> {
  const issuer = ex.endpoints.zones.internal.authority!;
  const corpIssuer = ex.endpoints.zones.corp.authority!;
  const web = ex.credentials.zones.internal.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const h = harness(issuer);
  const config = await oidc.discovery(new URL(issuer), web.client_id, { redirect_uris: web.redirect_uris }, oidc.ClientSecretBasic(web.client_secret!), { [oidc.customFetch]: h.fetch as any });
  const { Browser, parseForm } = await import('../support/authority-browser.ts');
  const browser = new Browser(h.fetch);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const login = await browser.follow(oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid admin:read', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state }).toString(), issuer);
  assert.equal(login.status, 200);
  const form = parseForm(login.html, '/federate');
  const pressed = await browser.request(new URL(form.action, issuer).toString(), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: issuer },
    body: new URLSearchParams({ ...form.hidden, upstream: 'corp' }).toString(),
  });
  assert.equal(pressed.status, 303, await pressed.text());
  const authUrl = pressed.headers.get('location')!;
  assert.ok(authUrl.startsWith(`${corpIssuer}/`), authUrl);
  const corpBrowser = new Browser(edgeFetch());
  const corpLogin = await corpBrowser.follow(authUrl, corpIssuer);
  assert.equal(corpLogin.status, 200, `corp knows internal's sign-in client at the address internal runs at: ${corpLogin.html.slice(0, 300)}`);
  const corpOtp = await corpBrowser.submit(corpLogin, '/login', { username: corpUser.username, password: corpUser.password }, corpIssuer);
  const back = await corpBrowser.submit(corpOtp, '/otp', { otp: await generate({ secret: corpUser.totp_secret }) }, corpIssuer);
  assert.equal(back.status, 0, back.html.slice(0, 300));
  assert.ok(back.url.startsWith(`${issuer}/federation/callback?`), back.url);
  const hop = await browser.follow(back.url, issuer);
  const next = /<meta http-equiv="refresh" content="0;url=([^"]+)">/.exec(hop.html);
  assert.ok(next, hop.html.slice(0, 300));
  const otp = await browser.follow(new URL(next[1].replace(/&amp;/g, '&'), issuer).toString(), issuer);
  assert.equal(otp.status, 200, otp.html.slice(0, 300));
  assert.match(otp.html, /name="otp"/, "the internal zone's own second factor (mfa: local)");
  const done = await browser.submit(otp, '/otp', { otp: await generate({ secret: internalTotp }) }, issuer);
  assert.equal(done.status, 0, done.html.slice(0, 300));
  const tokens = await oidc.authorizationCodeGrant(config, new URL(done.url), { pkceCodeVerifier: verifier, expectedState: state, idTokenExpected: true });
  return tokens.access_token;
}

test('internal: a corp user given corp-admins (`gatehouse users roles --add`) signs in through the SSO with MFA here and reaches the admin route; a corp user without it gets 403', async () => {
  const url = ex.endpoints.zones.internal.gateway + '/api/admin/reports';
  // alice of corp (the dev user) becomes a corp admin; the internal zone links her by her verified e-mail to its own alice
  const changed = cli(['users', 'roles', 'alice', '--zone', 'corp', '--add', 'corp-admins']);
  assert.deepEqual(changed.roles, ['corp-admins']);
  const admin = await signInThroughCorp(ex.credentials.zones.corp.users[0], ex.credentials.zones.internal.users[0].totp_secret);
  const claims = decodeJwt(admin);
  assert.deepEqual(claims.roles, ['admin'], 'corp-admins maps to admin');
  assert.equal(claims.acr, 'urn:gatehouse:acr:mfa');
  const served = await get(url, { authorization: `Bearer ${admin}` });
  assert.equal(served.status, 200, served.text);
  // bob: a corp account without the role (added with `gatehouse users add`), and his local account here
  const corpBob = cli(['users', 'add', 'bob', '--zone', 'corp', '--email', 'bob@shop.local']);
  assert.deepEqual(corpBob.roles, []);
  const localBob = cli(['users', 'add', 'bob', '--zone', 'internal', '--email', 'bob@shop.local']);
  const staff = await signInThroughCorp({ username: 'bob', password: corpBob.password, totp_secret: corpBob.totp_secret }, localBob.totp_secret);
  assert.equal(decodeJwt(staff).roles, undefined);
  const refused = await get(url, { authorization: `Bearer ${staff}` }, from('127.0.0.7'));
  assert.equal(refused.status, 403, refused.text);
});

test('private: the BFF’s exchanged token is bound to the certificate it exchanged with — another certificate of the BFF, or the DPoP scheme, gets 401', async () => {
  // a signed-in public user's token, exchanged at the private authority as the BFF does (tls_client_auth with its SVID)
  const zone = ex.credentials.zones.public;
  const web = zone.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const publicIssuer = ex.endpoints.zones.public.authority!;
  const h = harness(publicIssuer);
  const config = await oidc.discovery(new URL(publicIssuer), web.client_id, { redirect_uris: web.redirect_uris }, oidc.ClientSecretBasic(web.client_secret!), { [oidc.customFetch]: h.fetch as any });
  // a customer of his own (`gatehouse users add`): the probe signs alice in (`gatehouse token --user`), and one TOTP step serves one sign-in
  const dave = cli(['users', 'add', 'dave', '--zone', 'public']) as { username: string; password: string; totp_secret: string };
  const user = await codeTokens(config, await signIn(h, config, dave, { scope: 'openid orders:read' }));
  const bffId = serviceSpiffeId('shop.local', 'public', 'bff');
  const svid = await certificateFor(ex.stateDir, bffId);
  const ca = readFileSync(ex.endpoints.caBundle, 'utf8');
  const asBff = new Agent({ connect: { ca, cert: svid.certPem, key: svid.keyPem } });
  try {
    const r = await request(ex.endpoints.zones.private.authority + '/token', {
      dispatcher: asBff,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        client_id: 'bff',
        subject_token: user.access_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        scope: 'orders:read',
      }).toString(),
    });
    const exchanged = (await r.body.json()) as { access_token: string };
    assert.equal(r.statusCode, 200, JSON.stringify(exchanged));
    const cnf = decodeJwt(exchanged.access_token).cnf as Record<string, string>;
    assert.equal(cnf['x5t#S256'], certificateThumbprint(new X509Certificate(svid.certPem)));
    const orders = ex.endpoints.zones.private.gateway + '/api/orders';
    const served = await get(orders, { authorization: `Bearer ${exchanged.access_token}` }, asBff);
    assert.equal(served.status, 200, served.text);
    // the same token over another certificate of the same workload (what a thief with any BFF certificate holds)
    const other = await certificateFor(ex.stateDir, bffId);
    const asOtherBff = new Agent({ connect: { ca, cert: other.certPem, key: other.keyPem }, localAddress: '127.0.0.6' });
    try {
      const lifted = await get(orders, { authorization: `Bearer ${exchanged.access_token}` }, asOtherBff);
      assert.equal(lifted.status, 401);
      assert.match(String(lifted.headers['www-authenticate']), /^Bearer .*error="invalid_token"/);
      const asDpop = await get(orders, { authorization: `DPoP ${exchanged.access_token}` }, asBff);
      assert.equal(asDpop.status, 401, 'a certificate-bound token is presented as Bearer only');
    } finally {
      await asOtherBff.close();
    }
  } finally {
    await asBff.close();
  }
});
