// Every oidc-provider model is persisted: a restart (SQLite) or a second
// instance (PostgreSQL) loses no session, grant or refresh token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { startHarness, tempDir, postgresForTests, REDIRECT, DEFAULT_AUTHORITY, type Harness } from './support/authority-harness.ts';
import { signIn, codeTokens, authorize } from './support/authority-flows.ts';
import { Browser } from './support/authority-browser.ts';

async function webConfig(h: Harness) {
  const w = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  return h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
}

test('SQLite: a restart keeps keys, sessions, refresh tokens and dev credentials', async () => {
  const tmp = tempDir();
  try {
    const a = await startHarness({ dir: tmp.dir, keepDir: true });
    const webA = await webConfig(a);
    const user = a.auth.devCredentials!.users[0];
    const login = await signIn(a, webA, user);
    const tokens = await codeTokens(webA, login);
    const jwksA = await (await a.fetch(a.auth.jwksUri)).json();
    const credsA = a.auth.devCredentials;
    assert.equal(a.auth.storage, 'sqlite');
    await a.close();

    const b = await startHarness({ dir: tmp.dir, keepDir: true });
    try {
      assert.deepEqual(b.auth.devCredentials, credsA, 'the same dev credentials after a restart');
      const jwksB = (await (await b.fetch(b.auth.jwksUri)).json()) as any;
      assert.deepEqual(jwksB.keys.map((k: any) => k.kid), (jwksA as any).keys.map((k: any) => k.kid), 'the same signing key');
      await jwtVerify(tokens.access_token, createLocalJWKSet(jwksB), { typ: 'at+jwt' });
      const webB = await webConfig(b);
      const refreshed = await oidc.refreshTokenGrant(webB, tokens.refresh_token!);
      assert.ok(refreshed.access_token, 'the refresh token survived the restart');
      // the browser session survived too: no login form, straight back with a code
      const browser = new Browser(b.fetch);
      for (const [k, v] of login.browser.cookies) browser.cookies.set(k, v);
      const again = await authorize(b, webB, { prompt: 'none' }, browser);
      assert.equal(again.page.status, 0, 'redirected to the client without a login page');
      assert.ok(new URL(again.page.url).searchParams.get('code'));
    } finally {
      await b.close();
    }
  } finally {
    tmp.remove();
  }
});

test('PostgreSQL: two instances share sessions, grants, refresh tokens and keys', async (t) => {
  const pg = await postgresForTests();
  if ('skip' in pg) {
    t.skip(pg.skip);
    return;
  }
  const tmp = tempDir();
  const yaml = `${DEFAULT_AUTHORITY}storage: ${JSON.stringify(pg.url)}\n`;
  let a: Harness | undefined;
  let b: Harness | undefined;
  try {
    a = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: yaml });
    b = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: yaml });
    assert.equal(a.auth.storage, 'postgres');
    assert.deepEqual(b.auth.devCredentials, a.auth.devCredentials, 'seeded once, shared');
    const webA = await webConfig(a);
    const webB = await webConfig(b);
    const user = a.auth.devCredentials!.users[0];

    // the sign-in starts at A and the password + code are posted to B
    const started = await authorize(a, webA);
    const onB = started.page.url.replace(a.auth.issuer, b.auth.issuer);
    const browser = started.browser;
    const loginPage = await browser.follow(onB, b.auth.issuer);
    assert.equal(loginPage.status, 200, 'B knows the interaction A created');
    const otp = await browser.submit(loginPage, '/login', { username: user.username, password: user.password }, b.auth.issuer);
    assert.match(otp.html, /name="otp"/);

    const tokens = await codeTokens(webA, await signIn(a, webA, (await a.auth.admin.users.add({ username: 'pgu' }).then((u) => ({ username: u.username, password: u.password, totp_secret: u.totp_secret! })))));
    const refreshed = await oidc.refreshTokenGrant(webB, tokens.refresh_token!);
    assert.ok(refreshed.refresh_token, 'B refreshes what A issued');
    await assert.rejects(oidc.refreshTokenGrant(webA, tokens.refresh_token!), (e: any) => e.error === 'invalid_grant', 'A sees it consumed');
    assert.equal((await oidc.tokenIntrospection(webB, refreshed.access_token)).active, false, 'and the reuse revoked the grant for B too');

    const jwksA = (await (await a.fetch(a.auth.jwksUri)).json()) as any;
    const jwksB = (await (await b.fetch(b.auth.jwksUri)).json()) as any;
    assert.deepEqual(jwksA.keys.map((k: any) => k.kid), jwksB.keys.map((k: any) => k.kid));
  } finally {
    await a?.close();
    await b?.close();
    tmp.remove();
    await pg.drop();
  }
});
