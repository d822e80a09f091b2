// SSO federation: the `internal` zone's authority delegates sign-in to the
// `corp` zone's authority — a real Gatehouse OP upstream (authorization code
// + PKCE, state, nonce; userinfo for e-mail and roles) — links the account by
// verified e-mail, maps the upstream's roles to Gatehouse roles, and takes
// the upstream's MFA (mfa: upstream). Hostile responses are refused with the
// standard codes: a mismatched or replayed state, code injection into another
// browser's sign-in, a mix-up (`iss` of another provider); and a hostile
// upstream (a small OP under the test's control) whose ID token has the wrong
// `iss`, the wrong `aud`, a replayed `nonce`, or no signature.
//
// The two authorities listen on different host names (localhost and
// 127.0.0.1): cookies are per host, not per port, as in a real browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import path from 'node:path';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { generate } from 'otplib';
import { tempDir, offsetClock, silentLogger, trustingFetch, writeTopology, REDIRECT, type TestFetch } from './support/authority-harness.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startAuthority } from '../src/authority/index.ts';
import { federationGrantFile, readFederationGrant } from '../src/authority/federation-seed.ts';
import { startFederatedPair, type FederatedPair } from './support/authority-federation.ts';
import { Browser, parseForm, type Page } from './support/authority-browser.ts';
import type { RunningAuthority } from '../src/authority/index.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';

const clock = offsetClock();
let tmp: ReturnType<typeof tempDir>;
let corp: RunningAuthority;
let internal: RunningAuthority;
let pair: FederatedPair;
let web: oidc.Configuration;
let evil: Awaited<ReturnType<typeof startEvilOp>>;

/** A hostile OP: discovery, JWKS, a token endpoint answering the ID token `mode` says, userinfo. */
async function startEvilOp(stateDir: string) {
  const pair = await (await openDevCa(stateDir)).issueServer(['127.0.0.1']);
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'evil', alg: 'ES256', use: 'sig' };
  const o = { mode: 'good', nonce: '', oldNonce: '', clientId: 'internal-sso', base: '' };
  const server = https.createServer(pair, async (req, res) => {
    const url = new URL(req.url ?? '/', o.base);
    const json = (v: unknown) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(v));
    };
    if (url.pathname === '/.well-known/openid-configuration')
      return json({
        issuer: o.base,
        authorization_endpoint: `${o.base}/auth`,
        token_endpoint: `${o.base}/token`,
        jwks_uri: `${o.base}/jwks`,
        response_types_supported: ['code'],
        id_token_signing_alg_values_supported: ['ES256'],
        authorization_response_iss_parameter_supported: true,
      });
    if (url.pathname === '/jwks') return json({ keys: [jwk] });
    if (url.pathname === '/token') {
      for await (const _ of req);
      const now = Math.floor(clock.now() / 1000);
      const claims: Record<string, unknown> = { iss: o.base, aud: o.clientId, sub: 'evil-user', iat: now, exp: now + 300, nonce: o.nonce, email: 'mallory@test.local', email_verified: true };
      if (o.mode === 'wrong-iss') claims.iss = 'https://127.0.0.1:1';
      if (o.mode === 'wrong-aud') claims.aud = 'someone-else';
      if (o.mode === 'replayed-nonce') claims.nonce = o.oldNonce;
      let idToken: string;
      if (o.mode === 'unsigned') {
        const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
        idToken = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
      } else idToken = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'evil' }).sign(privateKey);
      return json({ access_token: 'evil-at', token_type: 'Bearer', expires_in: 300, id_token: idToken });
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  o.base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { o, close: () => server.close() };
}

before(async () => {
  tmp = tempDir();
  const stateDir = path.join(tmp.dir, 'state');
  evil = await startEvilOp(stateDir);
  pair = await startFederatedPair(
    tmp.dir,
    clock,
    `        - { name: evil, issuer: '${evil.o.base}', clientId: internal-sso, clientSecretEnv: GH_TEST_FED_SECRET, mfa: upstream }
        - { name: corp-local, zone: corp, clientId: internal-sso, clientSecretEnv: GH_TEST_FED_SECRET, link: email, mfa: local }\n`,
  );
  ({ corp, internal, web } = pair);
});

after(async () => {
  await pair?.close();
  evil?.close();
  tmp?.remove();
});

interface Start {
  browser: Browser;
  login: Page;
  verifier: string;
  state: string;
}

/** The internal zone's sign-in page, in a fresh browser. */
async function startInternal(): Promise<Start> {
  const browser = new Browser(pair.fetch);
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(web, { redirect_uri: REDIRECT, scope: 'openid admin:read', code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', state });
  const login = await browser.follow(url.toString(), internal.issuer);
  assert.equal(login.status, 200);
  return { browser, login, verifier, state };
}

/** The callback, then the hop page's own navigation (a meta refresh) to the interaction, as a browser does. */
async function callbackIn(browser: Browser, callback: string): Promise<Page> {
  const hop = await browser.follow(callback, internal.issuer);
  if (hop.status !== 200) return hop;
  const next = /<meta http-equiv="refresh" content="0;url=([^"]+)">/.exec(hop.html);
  assert.ok(next, 'the callback answers a page that moves on by itself');
  assert.match(hop.headers.get('content-security-policy')!, /form-action 'none'/);
  return browser.follow(new URL(next[1].replace(/&amp;/g, '&'), internal.issuer).toString(), internal.issuer);
}

/** Presses the upstream's button: the URL of its authorization endpoint. */
async function federate(s: Start, upstream: string): Promise<URL> {
  const form = parseForm(s.login.html, '/federate');
  const res = await s.browser.request(new URL(form.action, internal.issuer).toString(), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: internal.issuer },
    body: new URLSearchParams({ ...form.hidden, upstream }).toString(),
  });
  assert.equal(res.status, 303, await res.text());
  return new URL(res.headers.get('location')!);
}

/** Signs in at corp (password + TOTP) in the browser `corpBrowser`: the internal callback URL. */
async function signInAtCorp(authUrl: URL, corpBrowser = new Browser(pair.fetch), step = 0, user = corp.devCredentials!.users[0]): Promise<string> {
  const page = await corpBrowser.follow(authUrl.toString(), corp.issuer);
  assert.equal(page.status, 200, page.html.slice(0, 300));
  const otp = await corpBrowser.submit(page, '/login', { username: user.username, password: user.password }, corp.issuer);
  clock.advance(step * 30_000);
  const back = await corpBrowser.submit(otp, '/otp', { otp: await generate({ secret: user.totp_secret, epoch: Math.floor(clock.now() / 1000) }) }, corp.issuer);
  assert.equal(back.status, 0, back.html.slice(0, 300));
  assert.ok(back.url.startsWith(`${internal.issuer}/federation/callback?`), back.url);
  return back.url;
}

test('the sign-in page offers the upstream; signing in there links the account by verified e-mail, maps roles and carries the upstream MFA', async () => {
  const s = await startInternal();
  assert.match(s.login.html, /<button type="submit" class="secondary">Sign in with Corp SSO<\/button>/);
  assert.match(s.login.headers.get('content-security-policy')!, new RegExp(`form-action 'self' http://127\\.0\\.0\\.1:8765 ${corp.issuer.replace(/[.]/g, '\\.')}`));
  const authUrl = await federate(s, 'corp');
  assert.equal(authUrl.origin, corp.issuer);
  for (const p of ['state', 'nonce', 'code_challenge']) assert.ok((authUrl.searchParams.get(p) ?? '').length >= 43, `${p} is 256 bits`);
  assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
  const callback = await signInAtCorp(authUrl);
  const done = await callbackIn(s.browser, callback);
  assert.equal(done.status, 0, done.html.replace(/[\s\S]*<main>/, "").slice(0, 400));
  const tokens = await oidc.authorizationCodeGrant(web, new URL(done.url), { pkceCodeVerifier: s.verifier, expectedState: s.state, idTokenExpected: true });
  const at = decodeJwt(tokens.access_token);
  assert.deepEqual(at.roles, ['admin'], 'corp-admins → admin; staff is not mapped');
  assert.deepEqual(at.amr, ['fed', 'mfa']);
  assert.equal(at.acr, 'urn:gatehouse:acr:mfa');
  // linked by the verified e-mail to the internal zone's own alice (dev seed: alice@test.local)
  const local = (await internal.admin.users.byUsername('alice'))!;
  assert.equal(at.sub, local.id);

  // the callback again (a replayed response): its state was consumed
  const again = await s.browser.request(callback);
  assert.equal(again.status, 400);
});

test('bad input: unknown state, code injection into another sign-in, a mix-up iss', async () => {
  const unknown = await new Browser(pair.fetch).request(`${internal.issuer}/federation/callback?code=x&state=${'A'.repeat(43)}&iss=${encodeURIComponent(corp.issuer)}`, { headers: { accept: 'application/json' } });
  assert.equal(unknown.status, 400);
  assert.equal(((await unknown.json()) as any).code, 'bad_request');

  // the attacker signs in at corp for their own sign-in, then plants the callback in the victim's browser
  const attacker = await startInternal();
  const attackerCallback = await signInAtCorp(await federate(attacker, 'corp'), undefined, 1);
  const victim = await startInternal();
  const planted = await callbackIn(victim.browser, attackerCallback);
  assert.equal(planted.status, 400, 'forwarded to the attacker’s interaction, which is not the victim’s');
  // or straight at the victim's own interaction: the state is bound to the attacker's
  const victimUid = /\/interaction\/([\w-]+)\/login/.exec(victim.login.html)![1];
  const q = new URL(attackerCallback).search;
  const injected = await victim.browser.request(`${internal.issuer}/interaction/${victimUid}/federated${q}`, { headers: { accept: 'application/json' } });
  assert.equal(injected.status, 401);
  assert.equal(((await injected.json()) as any).code, 'unauthorized');

  // mix-up: a response claiming to come from another provider than the one asked
  const s = await startInternal();
  const authUrl = await federate(s, 'corp');
  const callback = new URL(await signInAtCorp(authUrl, undefined, 1));
  callback.searchParams.set('iss', evil.o.base);
  const mixed = await callbackIn(s.browser, callback.toString());
  assert.equal(mixed.status, 401);
  assert.match(mixed.html, /could not be verified/);
  // the audit trail is an append stream: the line lands shortly after the answer
  let audited = false;
  for (let i = 0; i < 50 && !audited; i++) {
    audited = internalAudit().some((e) => e.event === 'federation.failure' && /mix-up/.test(String(e.reason)));
    if (!audited) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(audited, 'the mix-up is in the audit trail');
});

test('mfa: local — after the upstream, the user\'s own second factor here', async () => {
  const s = await startInternal();
  const callback = await signInAtCorp(await federate(s, 'corp-local'), undefined, 3);
  const otp = await callbackIn(s.browser, callback);
  assert.equal(otp.status, 200);
  assert.match(otp.html, /name="otp"/, 'the local second-factor page');
  const local = internal.devCredentials!.users[0];
  const done = await s.browser.submit(otp, '/otp', { otp: await generate({ secret: local.totp_secret, epoch: Math.floor(clock.now() / 1000) }) }, internal.issuer);
  assert.equal(done.status, 0, done.html.slice(0, 300));
  const tokens = await oidc.authorizationCodeGrant(web, new URL(done.url), { pkceCodeVerifier: s.verifier, expectedState: s.state, idTokenExpected: true });
  const at = decodeJwt(tokens.access_token);
  assert.equal(at.acr, 'urn:gatehouse:acr:mfa');
  assert.equal(at.sub, (await internal.admin.users.byUsername('alice'))!.id);
  // a wrong local code is refused like any other
  const s2 = await startInternal();
  const otp2 = await callbackIn(s2.browser, await signInAtCorp(await federate(s2, 'corp-local'), undefined, 1));
  const wrong = await s2.browser.submit(otp2, '/otp', { otp: '000000' }, internal.issuer);
  assert.equal(wrong.status, 401);
});

test('an upstream account outside the allowed domains is not admitted, and no local account is made for it', async () => {
  const bob = await corp.admin.users.add({ username: 'bob', claims: { email: 'bob@elsewhere.example' } });
  const s = await startInternal();
  const callback = await signInAtCorp(await federate(s, 'corp'), undefined, 2, { username: 'bob', password: bob.password, totp_secret: bob.totp_secret! });
  const r = await callbackIn(s.browser, callback);
  assert.equal(r.status, 403);
  assert.match(r.html, /not admitted here/);
  assert.equal(await internal.admin.users.byUsername('bob@corp'), undefined);
});

test('a hostile upstream: an ID token with the wrong iss, the wrong aud, a replayed nonce, or none signature is refused', async () => {
  for (const mode of ['wrong-iss', 'wrong-aud', 'replayed-nonce', 'unsigned', 'good']) {
    const s = await startInternal();
    const authUrl = await federate(s, 'evil');
    assert.equal(authUrl.origin, evil.o.base);
    evil.o.oldNonce = evil.o.nonce || 'a-nonce-of-an-earlier-sign-in-0000000000000';
    evil.o.nonce = authUrl.searchParams.get('nonce')!;
    evil.o.mode = mode;
    const callback = `${internal.issuer}/federation/callback?code=c&state=${authUrl.searchParams.get('state')}&iss=${encodeURIComponent(evil.o.base)}`;
    const r = await callbackIn(s.browser, callback);
    if (mode === 'good') {
      // a valid token, but the zone requires MFA and this upstream did not say MFA: the sign-in page, refused
      assert.equal(r.status, 403, `${mode}: ${r.html.slice(0, 200)}`);
      continue;
    }
    assert.equal(r.status, 401, `${mode}: ${r.html.slice(0, 200)}`);
    assert.match(r.html, /could not be verified/, mode);
  }
  let failures = internalAudit().filter((e) => e.event === 'federation.failure' && e.upstream === 'evil');
  for (let i = 0; i < 50 && failures.length < 4; i++) {
    await new Promise((r) => setTimeout(r, 50)); // the audit trail is an append stream
    failures = internalAudit().filter((e) => e.event === 'federation.failure' && e.upstream === 'evil');
  }
  assert.ok(failures.length >= 4, JSON.stringify(failures));
  // refused by openid-client's ID token checks (iss, aud and nonce: a claim value; alg none: the response)
  for (const e of failures) assert.match(String(e.reason), /^code or ID token refused: (unexpected JWT claim value|invalid response)/);
});

/**
 * Internal's sign-in page in a fresh browser, its corp button (checked to lead
 * to `upstreamIssuer` with internal's callback), and the page the upstream
 * answers there: its sign-in form when it knows the client and redirect URI.
 */
async function upstreamPageOf(fetch: TestFetch, downstream: RunningAuthority, upstreamIssuer: string): Promise<Page> {
  const browser = new Browser(fetch);
  const w = downstream.devCredentials!.clients.find((c) => c.client_id === 'internal-web')!;
  const cfg = await oidc.discovery(new URL(downstream.issuer), w.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(w.client_secret!), { [oidc.customFetch]: fetch as any });
  const login = await browser.follow(oidc.buildAuthorizationUrl(cfg, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256' }).toString(), downstream.issuer);
  const form = parseForm(login.html, '/federate');
  const res = await browser.request(new URL(form.action, downstream.issuer).toString(), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: downstream.issuer },
    body: new URLSearchParams({ ...form.hidden, upstream: 'corp' }).toString(),
  });
  assert.equal(res.status, 303);
  const authUrl = new URL(res.headers.get('location')!);
  assert.equal(authUrl.origin, upstreamIssuer);
  assert.equal(authUrl.searchParams.get('client_id'), 'internal-seeded');
  assert.equal(authUrl.searchParams.get('redirect_uri'), `${downstream.issuer}/federation/callback`);
  return new Browser(fetch).follow(authUrl.toString(), upstreamIssuer);
}

/** corp, and internal signing in through it with the client corp registers for it (internal-seeded, no secret variable set). */
function seededTopology(dir: string, corpListen: string, internalListen: string): string {
  return writeTopology(dir, {
    corp: `authority: { listen: '${corpListen}' }`,
    internal: `authority:\n  listen: ${internalListen}\n  federation:\n    - { name: corp, zone: corp, clientId: internal-seeded, clientSecretEnv: GH_TEST_FED_UNSET, link: email, mfa: upstream }`,
  });
}

function internalAudit(): Record<string, unknown>[] {
  return readFileSync(path.join(tmp.dir, 'state', 'authority', 'internal', 'audit.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('a zone upstream on this machine registers the sign-in client of a zone that federates with it and hands it the secret', async () => {
  const dir = tempDir();
  const free = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
  const file = seededTopology(dir.dir, 'localhost:0', `127.0.0.1:${free}`);
  const stateDir = path.join(dir.dir, 'state');
  const topology = loadTopology(file);
  const up = await startAuthority({ topology, zone: 'corp', stateDir, dev: true, clock, logger: silentLogger() });
  const down = await startAuthority({ topology, zone: 'internal', stateDir, dev: true, clock, logger: silentLogger() });
  let restarted: RunningAuthority | undefined;
  let tf: ReturnType<typeof trustingFetch> | undefined;
  try {
    const seeded = (await up.admin.clients.list()).find((c) => c.client_id === 'internal-seeded')!;
    assert.deepEqual(seeded.redirect_uris, [`https://127.0.0.1:${free}/federation/callback`]);
    assert.equal(seeded.first_party, true);
    const grant = readFederationGrant(stateDir, 'internal', 'corp')!;
    assert.equal(grant.client_id, 'internal-seeded');
    assert.equal(statSync(federationGrantFile(stateDir, 'internal', 'corp')).mode & 0o777, 0o600);
    // a restart keeps the client and its secret
    await up.close();
    restarted = await startAuthority({ topology, zone: 'corp', stateDir, dev: true, clock, logger: silentLogger() });
    assert.equal(readFederationGrant(stateDir, 'internal', 'corp')!.client_secret, grant.client_secret);
    assert.equal(readFederationGrant(stateDir, 'internal', 'corp')!.issuer, restarted.issuer);
    // the downstream signs in with the granted secret (no variable set)
    assert.equal(process.env.GH_TEST_FED_UNSET, undefined);
    tf = trustingFetch(down.caFile!);
    const upstreamLogin = await upstreamPageOf(tf.fetch, down, restarted.issuer);
    assert.equal(upstreamLogin.status, 200, 'the upstream knows the client and its redirect URI');
  } finally {
    await down.close();
    await up.close();
    await restarted?.close();
    await tf?.close();
    dir.remove();
  }
});

test('the upstream registers the redirect URI of the downstream at the address it runs at (ephemeral ports), and follows it when it moves; the secret stays', async () => {
  const dir = tempDir();
  // the configured ports are not where they run: `gatehouse up --ephemeral-ports` overrides every listen with port 0
  const file = seededTopology(dir.dir, 'localhost:8744', '127.0.0.1:8644');
  const stateDir = path.join(dir.dir, 'state');
  const topology = loadTopology(file);
  const up = await startAuthority({ topology, zone: 'corp', stateDir, dev: true, clock, logger: silentLogger(), listen: 'localhost:0' });
  let down = await startAuthority({ topology, zone: 'internal', stateDir, dev: true, clock, logger: silentLogger(), listen: '127.0.0.1:0' });
  const tf = trustingFetch(down.caFile!);
  const redirectAtUpstream = async () => (await up.admin.clients.list()).find((c) => c.client_id === 'internal-seeded')?.redirect_uris;
  const follows = async (issuer: string) => {
    const want = [`${issuer}/federation/callback`];
    for (let i = 0; i < 100 && JSON.stringify(await redirectAtUpstream()) !== JSON.stringify(want); i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await redirectAtUpstream(), want);
  };
  try {
    assert.notEqual(down.issuer, 'https://127.0.0.1:8644');
    await follows(down.issuer);
    const grant = readFederationGrant(stateDir, 'internal', 'corp')!;
    const upstreamLogin = await upstreamPageOf(tf.fetch, down, up.issuer);
    assert.equal(upstreamLogin.status, 200, `the upstream takes the redirect URI of where the downstream runs: ${upstreamLogin.html.slice(0, 300)}`);
    assert.match(upstreamLogin.html, /name="password"/);
    // the downstream restarts on another port: the upstream follows, with the same client and secret
    const before = down.issuer;
    await down.close();
    down = await startAuthority({ topology, zone: 'internal', stateDir, dev: true, clock, logger: silentLogger(), listen: '127.0.0.1:0' });
    assert.notEqual(down.issuer, before);
    await follows(down.issuer);
    assert.equal(readFederationGrant(stateDir, 'internal', 'corp')!.client_secret, grant.client_secret, 'the secret stays');
    assert.equal((await upstreamPageOf(tf.fetch, down, up.issuer)).status, 200);
  } finally {
    await down.close();
    await up.close();
    await tf.close();
    dir.remove();
  }
});
