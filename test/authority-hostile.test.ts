// Hostile input against the zone authority. Each case gets a precise OAuth
// error (or problem+json off the OAuth endpoints) and changes nothing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair, exportJWK, SignJWT, type JWK, type CryptoKey } from 'jose';
import * as oidc from 'openid-client';
import { randomUUID } from 'node:crypto';
import { startHarness, type Harness, REDIRECT } from './support/authority-harness.ts';
import { authorize, signIn, codeTokens } from './support/authority-flows.ts';
import { Browser } from './support/authority-browser.ts';

let h: Harness;
let web: oidc.Configuration;
let service: oidc.Configuration;
let webId: string;
let webSecret: string;
let serviceId: string;
let serviceSecret: string;

before(async () => {
  h = await startHarness();
  const creds = h.auth.devCredentials!;
  const s = creds.clients.find((c) => c.grant_types.includes('client_credentials'))!;
  const w = creds.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  [serviceId, serviceSecret, webId, webSecret] = [s.client_id, s.client_secret!, w.client_id, w.client_secret!];
  service = await h.discover(serviceId, oidc.ClientSecretBasic(serviceSecret));
  web = await h.discover(webId, oidc.ClientSecretBasic(webSecret), { redirect_uris: [REDIRECT] });
});
after(() => h.close());

const basic = (id: string, secret: string) =>
  'Basic ' + Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');

async function post(path: string, body: string | URLSearchParams, headers: Record<string, string> = {}) {
  const res = await h.fetch(`${h.auth.issuer}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers },
    body: body.toString(),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

async function newUser(name = `u${randomUUID().slice(0, 8)}`) {
  const u = await h.auth.admin.users.add({ username: name });
  return { username: u.username, password: u.password, totp_secret: u.totp_secret!, id: u.id };
}

async function authUrl(params: Record<string, string>) {
  const url = new URL(`${h.auth.issuer}/auth`);
  const base = {
    client_id: webId,
    response_type: 'code',
    scope: 'openid',
    redirect_uri: REDIRECT,
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
    state: 'st',
  };
  for (const [k, v] of Object.entries({ ...base, ...params })) if (v !== '') url.searchParams.set(k, v);
  return url.toString();
}

test('redirect URI variants are refused at the authorization endpoint and never redirected to', async () => {
  const variants = [
    'http://127.0.0.1:8765/callback/',
    'http://127.0.0.1:8765/Callback',
    'HTTP://127.0.0.1:8765/CALLBACK',
    'http://127.0.0.1:8765/callback?x=1',
    'http://127.0.0.1:8765/callback/..%2F..%2Fevil',
    'http://127.0.0.1:8765/callback%2F..%2Fevil',
    'http://evil@127.0.0.1:8765/callback',
    'https://127.0.0.1:8765/callback',
    'http://127.0.0.1:8766/callback',
    'http://127.0.0.1:8765/callback#frag',
    'javascript:alert(1)//127.0.0.1:8765/callback',
  ];
  for (const redirect_uri of variants) {
    // the authorization endpoint answers a browser: an HTML error page, never a redirect
    const res = await h.fetch(await authUrl({ redirect_uri }), { redirect: 'manual' });
    const body = await res.text();
    assert.equal(res.status, 400, redirect_uri);
    assert.equal(res.headers.get('location'), null, `${redirect_uri} is never redirected to`);
    assert.match(body, /role="alert">invalid_(redirect_uri|request): /, redirect_uri);
    assert.doesNotMatch(body, /<script/);
  }
});

test('PKCE: missing challenge, plain method and bad verifiers are refused', async () => {
  for (const [params, expected] of [
    [{ code_challenge: '', code_challenge_method: '' }, 'invalid_request'],
    [{ code_challenge_method: 'plain', code_challenge: 'a'.repeat(43) }, 'invalid_request'],
    [{ code_challenge_method: 'S512' }, 'invalid_request'],
  ] as const) {
    const res = await h.fetch(await authUrl(params), { redirect: 'manual' });
    assert.equal(res.status, 303);
    const location = new URL(res.headers.get('location')!);
    assert.equal(location.origin + location.pathname, REDIRECT);
    assert.equal(location.searchParams.get('error'), expected, JSON.stringify(params));
    assert.equal(location.searchParams.get('iss'), h.auth.issuer);
  }

  const user = await newUser();
  const login = await signIn(h, web, user);
  const code = login.callback.searchParams.get('code')!;
  for (const verifier of ['', 'short', oidc.randomPKCECodeVerifier(), 'x'.repeat(129), '%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%']) {
    const r = await post('/token', new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }), {
      authorization: basic(webId, webSecret),
    });
    assert.equal(r.status, 400, verifier);
    assert.match(r.json.error, /^invalid_(grant|request)$/, verifier);
  }
  // nothing changed: the right verifier still redeems the code
  const tokens = await codeTokens(web, login);
  assert.ok(tokens.access_token);
});

test('code replay: the second use fails and the first tokens are revoked', async () => {
  const user = await newUser();
  const login = await signIn(h, web, user);
  const first = await codeTokens(web, login);
  await assert.rejects(codeTokens(web, login), (e: any) => e.error === 'invalid_grant');
  await assert.rejects(oidc.refreshTokenGrant(web, first.refresh_token!), (e: any) => e.error === 'invalid_grant');
  assert.equal((await oidc.tokenIntrospection(web, first.access_token)).active, false);
});

test('a code redeemed by another client fails and stays usable by its own client', async () => {
  const other = await h.auth.admin.clients.add({
    clientId: `other-${randomUUID().slice(0, 6)}`,
    grantTypes: ['authorization_code'],
    redirectUris: [REDIRECT],
    scope: 'openid orders:read',
    authMethod: 'client_secret_basic',
  });
  const user = await newUser();
  const login = await signIn(h, web, user);
  const r = await post(
    '/token',
    new URLSearchParams({ grant_type: 'authorization_code', code: login.callback.searchParams.get('code')!, redirect_uri: REDIRECT, code_verifier: login.verifier }),
    { authorization: basic(other.client_id, other.client_secret!) },
  );
  assert.equal(r.status, 400);
  assert.equal(r.json.error, 'invalid_grant');
  assert.ok((await codeTokens(web, login)).access_token);
});

test('refresh: two concurrent submits of one token never yield two live grants; scope cannot widen', async () => {
  const user = await newUser();
  const tokens = await codeTokens(web, await signIn(h, web, user));
  await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!, { scope: 'orders:read orders:write' }), (e: any) => e.error === 'invalid_scope');
  const results = await Promise.allSettled([oidc.refreshTokenGrant(web, tokens.refresh_token!), oidc.refreshTokenGrant(web, tokens.refresh_token!)]);
  const won = results.filter((r) => r.status === 'fulfilled');
  assert.ok(won.length <= 1, 'at most one submit wins');
  assert.ok(results.some((r) => r.status === 'rejected' && (r.reason as any).error === 'invalid_grant'));
  for (const w of won as PromiseFulfilledResult<oidc.TokenEndpointResponse>[]) {
    // reuse was detected: the whole grant is gone, including what the winner got
    await assert.rejects(oidc.refreshTokenGrant(web, w.value.refresh_token!), (e: any) => e.error === 'invalid_grant');
    assert.equal((await oidc.tokenIntrospection(web, w.value.access_token)).active, false);
  }
});

test('token exchange refuses audience widening, foreign issuers and junk subject tokens', async () => {
  const cc = await oidc.clientCredentialsGrant(service, { scope: 'orders:read' });
  const exchange = (params: Record<string, string>) =>
    post('/token', new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', ...params }), {
      authorization: basic(serviceId, serviceSecret),
    });
  let r = await exchange({ subject_token: cc.access_token, audience: 'https://elsewhere.example' });
  assert.equal(r.json.error, 'invalid_target');
  r = await exchange({ subject_token: cc.access_token, scope: 'orders:write' });
  assert.equal(r.json.error, 'invalid_scope');
  r = await exchange({ subject_token: 'eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.' });
  assert.equal(r.json.error, 'invalid_grant');
  // a token signed by someone else, claiming to be this issuer
  const { privateKey } = await generateKeyPair('EdDSA');
  const forged = await new SignJWT({ client_id: serviceId, scope: 'orders:read', jti: randomUUID() })
    .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt' })
    .setIssuer(h.auth.issuer)
    .setSubject('mallory')
    .setAudience(h.auth.audience)
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(privateKey);
  r = await exchange({ subject_token: forged });
  assert.equal(r.json.error, 'invalid_grant');
  r = await exchange({ subject_token: cc.access_token, actor_token: cc.access_token, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' });
  assert.equal(r.json.error, 'invalid_request');
  r = await exchange({ subject_token: cc.access_token, requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' });
  assert.equal(r.json.error, 'invalid_request');
  r = await exchange({ subject_token: 'x'.repeat(20_000) });
  assert.equal(r.status, 400);
});

test('private_key_jwt: valid works; wrong aud, reused jti, alg none and another key are refused', async () => {
  const own = await generateKeyPair('ES256', { extractable: true });
  const foreign = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(own.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } as JWK;
  const clientId = `pkj-${randomUUID().slice(0, 6)}`;
  await h.auth.admin.clients.add({
    clientId,
    grantTypes: ['client_credentials'],
    scope: 'orders:read',
    authMethod: 'private_key_jwt',
    jwks: { keys: [jwk] },
  });
  const config = await h.discover(clientId, oidc.PrivateKeyJwt({ key: own.privateKey, kid: 'k1' } as any));
  const ok = await oidc.clientCredentialsGrant(config, { scope: 'orders:read' });
  assert.ok(ok.access_token);

  const assertion = (key: CryptoKey, claims: Record<string, unknown> = {}, alg = 'ES256') =>
    new SignJWT({ jti: randomUUID(), ...claims })
      .setProtectedHeader({ alg, kid: 'k1' })
      .setIssuer(clientId)
      .setSubject(clientId)
      .setAudience((claims.aud as string) ?? h.auth.issuer)
      .setIssuedAt()
      .setExpirationTime('1m')
      .sign(key);
  const tokenWith = (jwt: string) =>
    post('/token', new URLSearchParams({
      grant_type: 'client_credentials',
      scope: 'orders:read',
      client_id: clientId,
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: jwt,
    }));

  const good = await assertion(own.privateKey);
  assert.equal((await tokenWith(good)).status, 200);
  const replay = await tokenWith(good);
  assert.equal(replay.json.error, 'invalid_client', 'reused jti');
  assert.equal((await tokenWith(await assertion(own.privateKey, { aud: 'https://other.example/token' }))).json.error, 'invalid_client');
  assert.equal((await tokenWith(await assertion(foreign.privateKey))).json.error, 'invalid_client');
  const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify({ iss: clientId, sub: clientId, aud: h.auth.issuer, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url');
  assert.equal((await tokenWith(`${header}.${payload}.`)).json.error, 'invalid_client');
  // a malformed assertion is a malformed request
  assert.match((await tokenWith('not.a.jwt')).json.error, /^invalid_(request|client)$/);
});

test('client_secret_basic: wrong, missing and other clients’ secrets are invalid_client', async () => {
  for (const auth of [basic(serviceId, 'x'.repeat(43)), basic(serviceId, webSecret), basic('nobody', serviceSecret), 'Basic !!!', 'Bearer abc']) {
    const r = await post('/token', 'grant_type=client_credentials&scope=orders:read', { authorization: auth });
    assert.ok(r.status === 400 || r.status === 401, auth);
    assert.match(r.json.error, /^invalid_(client|request)$/, auth);
  }
  const post2 = await post('/token', `grant_type=client_credentials&client_id=${serviceId}&client_secret=${serviceSecret}`);
  assert.equal(post2.json.error, 'invalid_client', 'client_secret_post is off');
});

test('grants that are off: password, implicit, device, unknown', async () => {
  for (const grant of ['password', 'implicit', 'urn:ietf:params:oauth:grant-type:device_code', 'urn:x:made-up']) {
    const r = await post('/token', new URLSearchParams({ grant_type: grant, username: 'a', password: 'b' }), { authorization: basic(serviceId, serviceSecret) });
    assert.equal(r.json.error, 'unsupported_grant_type', grant);
  }
  for (const rt of ['token', 'id_token', 'code id_token', 'code token']) {
    const res = await h.fetch(await authUrl({ response_type: rt, nonce: 'n' }), { redirect: 'manual' });
    const location = res.headers.get('location');
    const error = location ? new URL(location.replace('#', '?')).searchParams.get('error') : /role="alert">([a-z_]+):/.exec(await res.text())?.[1];
    assert.match(String(error), /^(unsupported_response_type|invalid_request|unauthorized_client)$/, rt);
  }
});

test('malformed and oversized parameters', async () => {
  const auth = { authorization: basic(serviceId, serviceSecret) };
  assert.equal((await post('/token', '', auth)).json.error, 'invalid_request');
  assert.equal((await post('/token', 'grant_type=client_credentials&grant_type=client_credentials', auth)).json.error, 'invalid_request');
  assert.equal((await post('/token', 'grant_type=client_credentials&scope=orders%00read', auth)).json.error, 'invalid_scope');
  const huge = await post('/token', `grant_type=client_credentials&scope=${'a'.repeat(200_000)}`, auth);
  assert.ok(huge.status === 413 || huge.status === 400, String(huge.status));
  const json = await post('/token', '{"grant_type":"client_credentials"}', { ...auth, 'content-type': 'application/json' });
  assert.equal(json.json.error, 'invalid_request');
  assert.equal((await post('/token/introspection', '', auth)).json.error, 'invalid_request');
  assert.equal((await post('/token/revocation', '', auth)).json.error, 'invalid_request');
  const bigToken = await post('/token/introspection', `token=${'a'.repeat(100_000)}`, auth);
  assert.ok(bigToken.status === 200 ? bigToken.json.active === false : bigToken.status === 413 || bigToken.status === 400);
  const longState = await h.fetch(await authUrl({ state: 's'.repeat(40_000) }), { redirect: 'manual' });
  assert.ok([400, 414, 431].includes(longState.status), String(longState.status));
  // off the OAuth endpoints: problem+json with a request id, no internals
  const missing = await h.fetch(`${h.auth.issuer}/nope`, { headers: { accept: 'application/json' } });
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('content-type'), 'application/problem+json');
  const problem = (await missing.json()) as any;
  assert.equal(problem.request_id, missing.headers.get('x-request-id'));
  for (const body of [JSON.stringify(problem), huge.text, json.text]) assert.doesNotMatch(body, /node_modules|\.js:\d|at [A-Za-z]+ \(|koa|oidc-provider/i);
});

test('interaction endpoints: CSRF, content type, size, unknown interaction', async () => {
  const { page, browser } = await authorize(h, web);
  const form = /action="(\/interaction\/[^"]+\/login)"/.exec(page.html)![1];
  const url = `${h.auth.issuer}${form}`;
  const send = (body: string, headers: Record<string, string> = {}) =>
    browser.request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', ...headers }, body });
  let r = await send('username=alice&password=x');
  assert.equal(r.status, 403);
  assert.equal(r.headers.get('content-type'), 'application/problem+json');
  r = await send('username=alice&password=x&csrf=forged');
  assert.equal(r.status, 403);
  const csrf = /name="csrf" value="([^"]+)"/.exec(page.html)![1];
  r = await send(`csrf=${csrf}&username=a&password=b`, { origin: 'https://evil.example' });
  assert.equal(r.status, 403, 'cross-origin post');
  r = await send(`csrf=${csrf}&username=a&password=b`, { 'content-type': 'text/plain' });
  assert.equal(r.status, 415);
  r = await send(`csrf=${csrf}&username=a&password=${'p'.repeat(20_000)}`);
  assert.equal(r.status, 413);
  r = await send(`csrf=${csrf}&username=a&username=b&password=c`);
  assert.equal(r.status, 400);
  const stranger = new Browser(h.fetch);
  const s = await stranger.request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body: `csrf=${csrf}&username=a&password=b` });
  assert.equal(s.status, 400, 'an interaction is bound to the browser that started it');
  const body = await s.text();
  assert.doesNotMatch(body, /stack|node_modules|SessionNotFound/);
});

test('sign-in pages: strict CSP, no script, labelled fields, no caching', async () => {
  const { page, browser } = await authorize(h, web);
  const csp = page.headers.get('content-security-policy')!;
  assert.match(csp, /default-src 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|script-src/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(page.headers.get('cache-control'), 'no-store');
  // no-referrer would make browsers send `Origin: null` with the form POSTs, which the CSRF check refuses
  assert.equal(page.headers.get('referrer-policy'), 'same-origin');
  assert.match(page.html, /<meta name="referrer" content="same-origin">/);
  assert.doesNotMatch(page.html, /<script|\son[a-z]+=|style="/i);
  assert.match(page.html, /<label for="username">/);
  assert.match(page.html, /<label for="password">/);
  assert.match(page.html, /name="username"[^>]*autocomplete="username"/);
  const user = await newUser();
  const otp = await browser.submit(page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  assert.match(otp.html, /<label for="otp">/);
  assert.match(otp.html, /name="otp"[^>]*autocomplete="one-time-code"/);
  assert.doesNotMatch(otp.html, /<script/i);
});

test('OTP: a code works once per step; stale codes are refused', async () => {
  const user = await newUser();
  const first = await authorize(h, web);
  const otpPage = await first.browser.submit(first.page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  const code = await h.totp(user.totp_secret);
  const done = await first.browser.submit(otpPage, '/otp', { otp: code }, h.auth.issuer);
  assert.equal(done.status, 0, 'first use signs in');

  const second = await authorize(h, web);
  const otp2 = await second.browser.submit(second.page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  const replay = await second.browser.submit(otp2, '/otp', { otp: code }, h.auth.issuer);
  assert.equal(replay.status, 401, 'replayed code');
  assert.match(replay.html, /not valid/);

  h.clock.advance(31_000); // the next step (and past the 1 s retry delay)
  const { generate } = await import('otplib');
  const stale = await generate({ secret: user.totp_secret, epoch: Math.floor(h.clock.now() / 1000) - 90 });
  const otp3 = await second.browser.submit(replay, '/otp', { otp: stale }, h.auth.issuer);
  assert.equal(otp3.status, 401, 'a code three steps old');
  h.clock.advance(3_000);
  const fresh = await second.browser.submit(otp3, '/otp', { otp: await h.totp(user.totp_secret) }, h.auth.issuer);
  assert.equal(fresh.status, 0, 'a fresh code still works');
  assert.ok(h.audit.some((e) => e.event === 'mfa.failure' && e.reason === 'code already used'));
});

test('OTP guessing locks that source out, not the password step, not other sources', async () => {
  const user = await newUser();
  const { page, browser } = await authorize(h, web);
  let otp = await browser.submit(page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  for (let i = 0; i < 5; i++) {
    otp = await browser.submit(otp, '/otp', { otp: '000000' === (await h.totp(user.totp_secret)) ? '111111' : '000000' }, h.auth.issuer);
    assert.equal(otp.status, 401, `guess ${i + 1}`);
    // a guess right after a failure is refused without being checked (growing delay)
    const tooFast = await browser.submit(otp, '/otp', { otp: '123456' }, h.auth.issuer);
    assert.equal(tooFast.status, 429);
    h.clock.advance(31_000);
  }
  const locked = await browser.submit(otp, '/otp', { otp: await h.totp(user.totp_secret) }, h.auth.issuer);
  assert.equal(locked.status, 429, 'even the right code is refused while locked');
  assert.ok(locked.headers.get('retry-after'));
  assert.ok(h.audit.some((e) => e.event === 'lockout' && e.sub === user.id && e.budget === 'otp'));

  // the password step is not locked by OTP guesses
  const again = await authorize(h, web);
  const otpAgain = await again.browser.submit(again.page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  assert.equal(otpAgain.status, 200);
  assert.match(otpAgain.html, /name="otp"/);

  // another source (127.0.0.2) can still finish signing in
  const { Agent, fetch: uf } = await import('undici');
  const { readFileSync } = await import('node:fs');
  const tls = await import('node:tls');
  const ca = readFileSync(h.auth.caFile!, 'utf8');
  const agent = new Agent({
    connect: (opts: any, cb: any) => {
      const socket = tls.connect({ host: opts.hostname, port: Number(opts.port), ca, localAddress: '127.0.0.2', ALPNProtocols: ['http/1.1'] } as import('node:tls').ConnectionOptions);
      socket.once('secureConnect', () => cb(null, socket));
      socket.once('error', (e: Error) => cb(e, null));
    },
  });
  try {
    const other = new Browser(((i: any, init: any) => uf(i, { ...init, dispatcher: agent })) as any);
    const o = await authorize(h, web, {}, other);
    const o2 = await other.submit(o.page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
    assert.equal(o2.status, 200, o2.html);
    h.clock.advance(31_000);
    const o3 = await other.submit(o2, '/otp', { otp: await h.totp(user.totp_secret) }, h.auth.issuer);
    assert.equal(o3.status, 0, 'signed in from another source');
    assert.ok(h.audit.some((e) => e.event === 'login.success' && e.sub === user.id && e.source === '127.0.0.2'));
  } finally {
    await agent.close();
  }
});

test('password guessing: same answer for unknown users, growing delay, then lockout', async () => {
  const user = await newUser();
  const attempt = async (username: string, password: string) => {
    const { page, browser } = await authorize(h, web);
    const t0 = performance.now();
    const r = await browser.submit(page, '/login', { username, password }, h.auth.issuer);
    return { ...r, ms: performance.now() - t0, body: r.html.replace(/value="[^"]*"/g, '') };
  };
  const known = await attempt(user.username, 'wrong-password-123');
  const unknown = await attempt(`ghost-${randomUUID().slice(0, 6)}`, 'wrong-password-123');
  assert.equal(known.status, 401);
  assert.equal(unknown.status, 401);
  const msg = (s: string) => /role="alert"[^>]*>([^<]*)</.exec(s)?.[1];
  assert.equal(msg(known.body), msg(unknown.body));
  assert.ok(unknown.ms > known.ms * 0.4, `unknown users cost a hash too (${unknown.ms.toFixed(0)} vs ${known.ms.toFixed(0)} ms)`);

  const tooFast = await attempt(user.username, user.password);
  assert.equal(tooFast.status, 429, 'the right password is not even checked inside the delay');
  for (let i = 0; i < 4; i++) {
    h.clock.advance(31_000);
    await attempt(user.username, `nope-${i}-xxxxxxxx`);
  }
  h.clock.advance(31_000);
  const locked = await attempt(user.username, user.password);
  assert.equal(locked.status, 429);
  assert.ok(h.audit.some((e) => e.event === 'lockout' && e.username === user.username));
  h.clock.advance(16 * 60_000);
  const after = await attempt(user.username, user.password);
  assert.equal(after.status, 200, 'the lockout ends');
  assert.match(after.html, /name="otp"/);
});

test('locked users cannot sign in or refresh', async () => {
  const user = await newUser();
  const tokens = await codeTokens(web, await signIn(h, web, user));
  await h.auth.admin.users.setLocked(user.username, true);
  await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant');
  const { page, browser } = await authorize(h, web);
  const r = await browser.submit(page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  assert.equal(r.status, 401);
});
