// Parallel guessing against a real authority: every budgeted path charges the
// attempt before the slow check, so a burst of guesses sent at once from one
// address is evaluated at most up to the budget, and a right guess among them
// is refused once the budget is spent. 401/400 = evaluated and wrong;
// 429 = refused before any check. Also on PostgreSQL, across two instances.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import * as oidc from 'openid-client';
import { startHarness, postgresForTests, tempDir, trustingFetch, writeTopology, silentLogger, offsetClock, REDIRECT, type Harness } from './support/authority-harness.ts';
import { authorize } from './support/authority-flows.ts';
import { Browser, parseForm, type Page } from './support/authority-browser.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startAuthority, type RunningAuthority } from '../src/authority/index.ts';

const GUESSES = 150;

const webOf = (h: Pick<Harness, 'auth' | 'discover'>) => {
  const w = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  return h.discover(w.client_id, oidc.ClientSecretBasic(w.client_secret!), { redirect_uris: [REDIRECT] });
};

/** `n` sign-in pages, each in its own browser (its own interaction), prepared ahead of the burst. */
async function loginPages(h: Pick<Harness, 'auth' | 'fetch'> & { discover: Harness['discover'] }, n: number) {
  const web = await webOf(h);
  const out: { page: Page; browser: Browser }[] = [];
  for (let i = 0; i < n; i += 15) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(15, n - i) }, async () => {
        const { page, browser } = await authorize(h as Harness, web);
        assert.equal(page.status, 200);
        return { page, browser };
      }),
    );
    out.push(...batch);
  }
  return out;
}

/**
 * The burst happens at one instant of the authority's clock (frozen), so a
 * growing delay that a guess waits for cannot elapse while a slow machine is
 * still answering the others. Fires every submit but the last at once; the last (the right guess) goes as
 * soon as one of them was refused unchecked (429: the budget is spent), or
 * when all have answered if none was. Statuses in order.
 */
async function burst(pages: { page: Page; browser: Browser }[], fields: (i: number) => Record<string, string>, action: string, origin: string) {
  const prepared = pages.map(({ page, browser }, i) => {
    const form = parseForm(page.html, action);
    return { browser, url: new URL(form.action, page.url).toString(), body: new URLSearchParams({ ...form.hidden, ...fields(i) }).toString() };
  });
  const fire = (p: (typeof prepared)[number]) =>
    p.browser
      .request(p.url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin }, body: p.body })
      .then(async (r) => (await r.arrayBuffer(), r.status));
  return thenLast(prepared.slice(0, -1).map(fire), () => fire(prepared[prepared.length - 1]));
}

/** Waits for the first 429 among `first` (or for all of them), then starts `last`; every status, `last`'s at the end. */
async function thenLast(first: Promise<number>[], last: () => Promise<number>): Promise<number[]> {
  await new Promise<void>((resolve) => {
    for (const p of first) p.then((s) => s === 429 && resolve(), () => {});
    Promise.allSettled(first).then(() => resolve());
  });
  return Promise.all([...first, last()]);
}

/** Opens `n` keep-alive connections first, so a burst after it reaches the server at once (not one TLS handshake at a time). */
async function warm(fetch: Harness['fetch'], issuer: string, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, () => fetch(`${issuer}/healthz`).then((r) => r.arrayBuffer())));
}

const count = (statuses: number[], ...codes: number[]) => statuses.filter((s) => codes.includes(s)).length;

test('150 parallel password guesses at one account: at most the budget is checked, the right one among them does not sign in', async () => {
  const h = await startHarness();
  try {
    const user = await h.auth.admin.users.add({ username: 'pat' });
    const pages = await loginPages(h, GUESSES);
    await warm(h.fetch, h.auth.issuer, GUESSES);
    const t0 = performance.now();
    h.clock.freeze();
    const statuses = await burst(pages, (i) => ({ username: 'pat', password: i === GUESSES - 1 ? user.password : `wrong-${i}-password` }), '/login', h.auth.issuer);
    h.clock.thaw();
    const ms = performance.now() - t0;
    const evaluated = count(statuses, 401, 303, 200);
    console.log(`# one account: ${evaluated} of ${GUESSES} guesses checked, ${count(statuses, 429)} refused unchecked, ${ms.toFixed(0)} ms`);
    assert.ok(evaluated <= 5, `at most the password budget (5) is checked, not ${evaluated}`);
    assert.equal(evaluated + count(statuses, 429), GUESSES, `only 401, 429 or a sign-in: ${[...new Set(statuses)]}`);
    assert.equal(statuses[GUESSES - 1], 429, 'the right password among the guesses does not sign in');
    assert.ok(!h.audit.some((e) => e.event === 'mfa.challenge' && e.sub === user.id));
  } finally {
    await h.close();
  }
});

test('150 parallel password guesses across accounts from one address: the source budget holds, a right one past it is refused', async () => {
  const h = await startHarness({ authorityYaml: 'scopes: [orders:read]\nthrottle:\n  source: { maxFailures: 20, lockoutSeconds: 900 }\n' });
  try {
    const user = await h.auth.admin.users.add({ username: 'quinn' });
    const pages = await loginPages(h, GUESSES);
    await warm(h.fetch, h.auth.issuer, GUESSES);
    h.clock.freeze();
    const statuses = await burst(
      pages,
      (i) => (i === GUESSES - 1 ? { username: 'quinn', password: user.password } : { username: `victim-${i}`, password: `wrong-${i}-password` }),
      '/login',
      h.auth.issuer,
    );
    h.clock.thaw();
    const evaluated = count(statuses, 401, 200);
    console.log(`# across accounts: ${evaluated} of ${GUESSES} guesses checked, ${count(statuses, 429)} refused unchecked`);
    assert.ok(evaluated <= 20, `at most the source budget (20) is checked, not ${evaluated}`);
    assert.equal(statuses[GUESSES - 1], 429, 'the right password of another account is refused once the source is locked');
    assert.ok(h.audit.some((e) => e.event === 'lockout' && e.budget === 'src'));
  } finally {
    await h.close();
  }
});

/**
 * A harness on SQLite or on PostgreSQL (a schema of its own, dropped at close);
 * undefined (the test skipped, the reason printed) when PostgreSQL is not
 * reachable, unless CI=true (then postgresForTests throws).
 */
async function harnessOn(storage: 'SQLite' | 'PostgreSQL', t: { skip(reason: string): void }): Promise<Harness | undefined> {
  if (storage === 'SQLite') return startHarness();
  const pg = await postgresForTests();
  if ('skip' in pg) {
    console.log(`# skipped: ${pg.skip}`);
    t.skip(pg.skip);
    return undefined;
  }
  const h = await startHarness({ authorityYaml: `scopes: [orders:read]\nstorage: ${JSON.stringify(pg.url)}\n` });
  const close = h.close;
  h.close = async () => {
    await close();
    await pg.drop();
  };
  return h;
}

async function secondStep(h: Harness) {
  const user = await h.auth.admin.users.add({ username: `otto-${Math.random().toString(36).slice(2, 8)}` });
  const web = await webOf(h);
  const { page, browser } = await authorize(h, web);
  const otp = await browser.submit(page, '/login', { username: user.username, password: user.password }, h.auth.issuer);
  assert.equal(otp.status, 200);
  return { user, otp, browser };
}

for (const storage of ['SQLite', 'PostgreSQL'] as const) {
test(`${storage}: 150 parallel one-time codes in one sign-in: at most the budget is checked, the right code among them does not sign in`, async (t) => {
  const h = await harnessOn(storage, t);
  if (!h) return;
  try {
    const { user, otp, browser } = await secondStep(h);
    h.clock.freeze();
    const right = await h.totp(user.totp_secret!);
    const wrong = (i: number) => String((Number(right) + 1 + i) % 1_000_000).padStart(6, '0');
    const pages = Array.from({ length: GUESSES }, () => ({ page: otp, browser }));
    await warm(h.fetch, h.auth.issuer, GUESSES);
    const statuses = await burst(pages, (i) => ({ otp: i === GUESSES - 1 ? right : wrong(i) }), '/otp', h.auth.issuer);
    h.clock.thaw();
    const evaluated = count(statuses, 401, 303);
    console.log(`# ${storage}, one-time codes: ${evaluated} of ${GUESSES} checked`);
    assert.ok(evaluated <= 5, `at most the code budget (5) is checked, not ${evaluated}`);
    assert.equal(statuses[GUESSES - 1], 429, 'the right code among the guesses does not sign in');
    assert.ok(!h.audit.some((e) => e.event === 'mfa.success' && e.sub === user.id));
  } finally {
    await h.close();
  }
});

test(`${storage}: 60 parallel passkey answers: at most the passkey budget (20) is checked`, async (t) => {
  const h = await harnessOn(storage, t);
  if (!h) return;
  try {
    const { otp, browser } = await secondStep(h);
    const form = parseForm(otp.html, '/otp');
    const url = new URL(form.action.replace(/\/otp$/, '/webauthn'), otp.url).toString();
    const body = new URLSearchParams({ csrf: form.hidden.csrf, response: '{}' }).toString();
    await warm(h.fetch, h.auth.issuer, 60);
    const statuses = await Promise.all(
      Array.from({ length: 60 }, () =>
        browser
          .request(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: h.auth.issuer }, body })
          .then(async (r) => (await r.arrayBuffer(), r.status)),
      ),
    );
    const evaluated = count(statuses, 400, 401);
    console.log(`# ${storage}, passkey answers: ${evaluated} of 60 checked`);
    assert.ok(evaluated <= 20, `at most 20 checked, not ${evaluated}`);
    assert.equal(evaluated + count(statuses, 429), 60);
  } finally {
    await h.close();
  }
});
}

test('150 parallel client secrets at the token endpoint: at most the client budget is checked, the right secret among them is refused', async () => {
  const h = await startHarness();
  try {
    const s = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials'))!;
    const basic = (secret: string) => 'Basic ' + Buffer.from(`${encodeURIComponent(s.client_id)}:${encodeURIComponent(secret)}`).toString('base64');
    const tokenRequest = (secret: string) =>
      h
        .fetch(h.auth.tokenEndpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(secret) },
          body: 'grant_type=client_credentials&scope=orders:read',
        })
        .then(async (r) => (await r.arrayBuffer(), r.status));
    await warm(h.fetch, h.auth.issuer, GUESSES);
    const wrong = Array.from({ length: GUESSES - 1 }, (_, i) => tokenRequest(`${s.client_secret!.slice(0, -6)}bad${String(i).padStart(3, '0')}`));
    const statuses = await thenLast(wrong, () => tokenRequest(s.client_secret!));
    const evaluated = count(statuses, 401);
    console.log(`# client secrets: ${evaluated} of ${GUESSES - 1} wrong secrets checked, last answered ${statuses[GUESSES - 1]}`);
    assert.ok(evaluated <= 10, `at most the client budget (10) is checked, not ${evaluated}`);
    assert.equal(statuses[GUESSES - 1], 429, 'the right secret is refused while the client is locked from this address');
    assert.ok(h.audit.some((e) => e.event === 'lockout' && e.client_id === s.client_id));
  } finally {
    await h.close();
  }
});

test('PostgreSQL: 150 parallel guesses split across two instances sharing the database: the budget is shared', async (t) => {
  const pg = await postgresForTests();
  if ('skip' in pg) {
    console.log(`# skipped: ${pg.skip}`);
    t.skip(pg.skip);
    return;
  }
  const tmp = tempDir();
  const file = writeTopology(tmp.dir, { public: `authority:\n  scopes: [orders:read]\n  storage: ${JSON.stringify(pg.url)}\n` });
  const topology = loadTopology(file);
  const clock = offsetClock();
  const common = { topology, zone: 'public', stateDir: path.join(tmp.dir, 'state'), dev: true, logger: silentLogger(), clock };
  const instances: RunningAuthority[] = [];
  const fetches: { close(): Promise<void> }[] = [];
  try {
    instances.push(await startAuthority(common));
    instances.push(await startAuthority(common));
    assert.equal(instances[1].storage, 'postgres');
    const user = await instances[0].admin.users.add({ username: 'pia' });
    const harnesses = instances.map((auth) => {
      const tf = trustingFetch(auth.caFile!);
      fetches.push(tf);
      return {
        auth,
        fetch: tf.fetch,
        discover: ((id: string, a: oidc.ClientAuth, md: Partial<oidc.ClientMetadata>) =>
          oidc.discovery(new URL(auth.issuer), id, md, a, { [oidc.customFetch]: tf.fetch as any })) as Harness['discover'],
      };
    });
    const half = GUESSES / 2;
    const [a, b] = await Promise.all(harnesses.map((x) => loginPages(x, half)));
    await Promise.all(harnesses.map((x) => warm(x.fetch, x.auth.issuer, half)));
    // one account: A gets the first half, B the second (the right password is B's last)
    clock.freeze();
    const [sa, sb] = await Promise.all([
      burst(a, (i) => ({ username: 'pia', password: `wrong-a-${i}` }), '/login', instances[0].issuer),
      burst(b, (i) => ({ username: 'pia', password: i === half - 1 ? user.password : `wrong-b-${i}` }), '/login', instances[1].issuer),
    ]);
    clock.thaw();
    const statuses = [...sa, ...sb];
    const evaluated = count(statuses, 401, 200, 303);
    console.log(`# PostgreSQL, two instances: ${evaluated} of ${GUESSES} checked (A ${count(sa, 401)}, B ${count(sb, 401, 200, 303)})`);
    assert.ok(evaluated <= 5, `at most the password budget (5) across both instances, not ${evaluated}`);
    assert.equal(sb[half - 1], 429, 'the right password does not sign in on the other instance either');
  } finally {
    for (const i of instances) await i.close();
    for (const f of fetches) await f.close();
    await pg.drop();
    tmp.remove();
  }
});
