// The web console end to end: a control plane serving it, the zone authority
// registering its sign-in client, an operator signing in with the keyboard in
// Chromium (password + TOTP), every page rendered under the strict CSP with no
// complaint, labels and contrast checked, a detector's quarantine released in
// one keystroke; hostile requests on every endpoint (unauthenticated, wrong
// Host, CSRF without or with a foreign Origin or a wrong token, another media
// type, oversized, malformed, twenty concurrent releases of one decision), and
// an operator removed from the topology losing the console at once.
// Screenshots of each page go to $CONSOLE_SCREENSHOTS when it is set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { generate } from 'otplib';
import { initCa, serviceSpiffeId, gatewaySpiffeId } from '../src/pki/index.ts';
import { startControlServer } from '../src/control/index.ts';
import { startAuthority } from '../src/authority/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { readConsoleGrant } from '../src/monitor/console-grant.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { sendEvents } from './support/monitor-events.ts';
import { closeAfterAll, until } from './support/closers.ts';
import { Chromium, requireChromium, type Tab } from './support/authority-chromium.ts';
import { serverSpkiHash } from './support/authority-spki.ts';

const TD = 'console.test';
const quiet = createLogger({ name: 'test', level: 'silent' });
const closer = closeAfterAll();
const shots = process.env.CONSOLE_SCREENSHOTS;

const dir = tempDir('gh-console-');
const file = path.join(dir, 'gatehouse.yaml');
const topology = (operators: string[]) => `
version: 1
trustDomain: ${TD}
zones:
  public:
    gateway: { listen: 127.0.0.1:0, tls: dev }
    authority: { listen: 127.0.0.1:0, scopes: [orders:read] }
    routes:
      - { name: shop, path: /shop, service: shop, auth: anonymous }
  private:
    gateway: { listen: 127.0.0.1:0, tls: dev }
    routes:
      - { name: orders, path: /orders, service: orders, auth: anonymous }
services:
  shop: { zone: public, upstream: "http://127.0.0.1:9", egress: [gateway:private] }
  orders: { zone: private, upstream: "http://127.0.0.1:9", egress: [stock] }
  stock:
    zone: private
    upstream: "http://127.0.0.1:9"
    allow: [{ caller: orders, paths: [{ path: /stock, match: prefix }] }]
monitor:
  detectors:
    scan: { threshold: 3, windowSeconds: 30, quarantineFor: 10m }
  console: { zone: public, operators: [${operators.join(', ')}] }
`;
writeFileSync(file, topology(['alice']));
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
closer(() => control.close());
const consoleUrl = control.consoleUrl!;
const auth = await startAuthority({ topology: loadTopology(file), zone: 'public', stateDir: dir, dev: true, logger: quiet });
closer(() => auth.close());
const alice = auth.devCredentials!.users.find((u) => u.username === 'alice')!;
await until('the console client is granted', () => readConsoleGrant(dir), (g) => g?.redirect_uri === `${consoleUrl}/callback`);

const send = async (spiffeId: string, events: Record<string, unknown>[]) => assert.equal(await sendEvents(dir, control.url, spiffeId, events), 202);

// what the pages show: refusals at the public gateway (a scanner, quarantined by the scan detector), a denied edge
await send(gatewaySpiffeId(TD, 'public'), [
  ...['/.env', '/wp-login.php', '/admin'].map((p) => ({ type: 'request_refused', code: 'not_found', status: 404, source: '203.0.113.7', method: 'GET', path: p })),
  { type: 'request_refused', code: 'unauthorized', status: 401, source: '198.51.100.4', route: 'shop', method: 'GET', path: '/shop/cart' },
]);
await send(serviceSpiffeId(TD, 'private', 'stock'), [{ type: 'edge_denied', code: 'no_edge', peer: serviceSpiffeId(TD, 'public', 'shop'), method: 'GET', path: '/stock/1' }]);
await until('the scan detector quarantined the scanner', async () => (await request(`${control.adminUrl}/quarantines`)).body.json(), (l) => (l as { value: string }[]).some((q) => q.value === '203.0.113.7'));

const PAGES = ['/', '/topology', '/events', '/quarantines', '/audit'];
const get = (p: string, headers: Record<string, string> = {}) => request(`${consoleUrl}${p}`, { headers: { host: new URL(consoleUrl).host, ...headers } });

test('deny by default: every page needs a session, the API and forms answer 401, another Host name is refused', async () => {
  for (const p of PAGES) {
    const r = await get(p);
    assert.equal(r.statusCode, 303, p);
    assert.equal(r.headers.location, '/signin');
    assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
    await r.body.dump();
  }
  const api = await get('/api/rates');
  assert.equal(api.statusCode, 401);
  assert.match(String(api.headers['content-type']), /application\/problem\+json/);
  await api.body.dump();
  const post = await request(`${consoleUrl}/quarantines/release`, { method: 'POST', body: 'scope=source&value=203.0.113.7', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: consoleUrl } });
  assert.equal(post.statusCode, 401);
  await post.body.dump();
  const forged = await get('/signin', { cookie: `gh_console=${'A'.repeat(43)}` });
  assert.equal(forged.statusCode, 200, 'a made-up session is no session');
  assert.doesNotMatch(await forged.body.text(), /Sign out/);
  // DNS rebinding: a page served as evil.example that resolves here
  const rebind = await request(`${consoleUrl}/signin`, { headers: { host: 'evil.example' } });
  assert.equal(rebind.statusCode, 400);
  await rebind.body.dump();
  // the admin API answers no browser
  const fromPage = await request(`${control.adminUrl}/quarantines`, { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'text/plain' }, body: '{"scope":"client","value":"x","for":"1h","reason":"csrf"}' });
  assert.equal(fromPage.statusCode, 403);
  await fromPage.body.dump();
  const textPlain = await request(`${control.adminUrl}/quarantines`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{"scope":"client","value":"x","for":"1h","reason":"csrf"}' });
  assert.equal(textPlain.statusCode, 415);
  await textPlain.body.dump();
});

/** Axe-style checks: every field labelled, every button named, text contrast at least 4.5:1. */
async function accessible(tab: Tab, where: string): Promise<void> {
  const unlabelled = await tab.evaluate<string[]>(`[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter((e) => !(e.id && document.querySelector('label[for="' + e.id + '"]')) && !e.getAttribute('aria-label')).map((e) => e.outerHTML)`);
  assert.deepEqual(unlabelled, [], `${where}: unlabelled fields`);
  const unnamed = await tab.evaluate<string[]>(`[...document.querySelectorAll('button, a')].filter((e) => !(e.getAttribute('aria-label') || e.textContent.trim())).map((e) => e.outerHTML)`);
  assert.deepEqual(unnamed, [], `${where}: unnamed controls`);
  const low = await tab.evaluate<string[]>(`(() => {
    const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => { const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
    const bg = (e) => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3); } return [255, 255, 255]; };
    const out = [];
    for (const e of document.querySelectorAll('body *')) {
      if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
      if (e.closest('svg')) continue;
      const r = e.getBoundingClientRect(); if (r.width === 0 || r.height === 0) continue;
      const a = lum(rgb(getComputedStyle(e).color)), b = lum(bg(e));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < 4.5) out.push(e.tagName + ' ' + e.textContent.trim().slice(0, 30) + ' ' + ratio.toFixed(2));
    }
    return out;
  })()`);
  assert.deepEqual(low, [], `${where}: text below 4.5:1`);
}

test('an operator signs in with the keyboard (password + TOTP), sees every page under the CSP, releases a quarantine in one keystroke; hostile forms are refused', async (t) => {
  if (!requireChromium(t)) return;
  const chromium = await Chromium.launch([
    `--ignore-certificate-errors-spki-list=${await serverSpkiHash(auth.issuer)}`,
    '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ]);
  closer(() => chromium.close());
  const tab = await chromium.newTab();
  await tab.goto(`${consoleUrl}/`, (u) => u.endsWith('/signin'));
  // keyboard only: the skip link, then "Sign in"
  await tab.press('Tab');
  await tab.press('Tab');
  assert.equal(await tab.evaluate('document.activeElement.textContent'), 'Sign in');
  await tab.navigation(() => tab.press('Enter'), (u) => u.startsWith(auth.issuer));
  const landed = await tab.signInWithKeyboard(auth.issuer, alice, async () => generate({ secret: alice.totp_secret, epoch: Math.floor(Date.now() / 1000) }), (u) => u === `${consoleUrl}/`);
  assert.equal(landed, `${consoleUrl}/`);
  assert.equal(await tab.evaluate('document.querySelector("h1").textContent'), 'Overview');
  const cookies = await tab.context.cookies(consoleUrl);
  const session = cookies.find((c) => c.name === 'gh_console')!;
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  const grant = readConsoleGrant(dir)!;

  for (const p of PAGES) {
    await tab.goto(`${consoleUrl}${p}`, (u) => u === `${consoleUrl}${p}`);
    const html = await tab.evaluate<string>('document.documentElement.outerHTML');
    assert.ok(!html.includes(grant.client_secret) && !html.includes(session.value), `${p}: no secret in the page`);
    await accessible(tab, p);
    if (shots) {
      mkdirSync(shots, { recursive: true });
      writeFileSync(path.join(shots, `console${p === '/' ? '-overview' : p.replace('/', '-')}.png`), await tab.screenshot());
    }
  }
  // live: the overview's rates follow new refusals without a reload (its script, same origin, under the CSP)
  await tab.goto(`${consoleUrl}/`, (u) => u === `${consoleUrl}/`);
  // the refusals of the last ten minutes (a sum: the newest row may roll over to a new minute meanwhile)
  const refusedNow = () => tab.evaluate<number>('[...document.querySelectorAll("#rates tbody tr td:nth-child(3)")].reduce((n, td) => n + Number(td.textContent), 0)');
  const before = await refusedNow();
  await send(gatewaySpiffeId(TD, 'public'), [{ type: 'request_refused', code: 'forbidden', status: 403, source: '198.51.100.5', route: 'shop', method: 'GET', path: '/shop/x' }]);
  await tab.until(async () => (await refusedNow()) === before + 1, 'the rates table refreshed', 12_000);
  await tab.goto(`${consoleUrl}/topology`, (u) => u.endsWith('/topology'));
  assert.equal(await tab.evaluate('document.querySelectorAll("svg path.denied").length'), 1, 'the denied edge shop → stock in red');
  assert.ok((await tab.evaluate<number>('document.querySelectorAll("svg path.allowed").length')) >= 4);
  await tab.goto(`${consoleUrl}/events?type=request_refused&since=1h&source=203.0.113.7`, (u) => u.includes('/events'));
  assert.equal(await tab.evaluate('document.querySelectorAll("table.events tbody tr").length'), 3);
  const bad = await get('/events?type=everything', { cookie: `gh_console=${session.value}` });
  assert.equal(bad.statusCode, 422);
  await bad.body.dump();
  // a notice is one the console wrote, never a property every object has
  for (const notice of ['constructor', '__proto__', 'toString', 'nope']) {
    const page = await get(`/quarantines?notice=${notice}`, { cookie: `gh_console=${session.value}` });
    assert.equal(page.statusCode, 200);
    assert.doesNotMatch(await page.body.text(), /class="notice"/, notice);
  }

  // hostile forms with the operator's own session cookie
  await tab.goto(`${consoleUrl}/quarantines`, (u) => u.endsWith('/quarantines'));
  const csrf = await tab.evaluate<string>('document.querySelector("input[name=csrf]").value');
  const cookie = `gh_console=${session.value}`;
  const release = (body: string, headers: Record<string, string> = {}) =>
    request(`${consoleUrl}/quarantines/release`, { method: 'POST', body, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', origin: consoleUrl, ...headers } });
  const form = (extra = '') => `csrf=${encodeURIComponent(csrf)}&scope=source&value=203.0.113.7${extra}`;
  for (const [what, r, status] of [
    ['no Origin, no Sec-Fetch-Site', await request(`${consoleUrl}/quarantines/release`, { method: 'POST', body: form(), headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' } }), 403],
    ['a foreign Origin', await release(form(), { origin: 'https://evil.example' }), 403],
    ['cross-site fetch metadata', await request(`${consoleUrl}/quarantines/release`, { method: 'POST', body: form(), headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' } }), 403],
    ['no token', await release('scope=source&value=203.0.113.7'), 403],
    ['a wrong token', await release(`csrf=${'x'.repeat(43)}&scope=source&value=203.0.113.7`), 403],
    ['two tokens', await release(`${form()}&csrf=${encodeURIComponent(csrf)}`), 403],
    ['text/plain', await release(form(), { 'content-type': 'text/plain' }), 415],
    ['oversized', await release(form(`&pad=${'x'.repeat(5000)}`)), 413],
    ['an unknown scope', await release(`csrf=${encodeURIComponent(csrf)}&scope=everything&value=x`), 422],
    ['GET', await get('/quarantines/release', { cookie }), 405],
  ] as const) {
    assert.equal(r.statusCode, status, what);
    assert.match(String(r.headers['content-type']), /application\/problem\+json/, what);
    await r.body.dump();
  }
  assert.ok((((await (await request(`${control.adminUrl}/quarantines`)).body.json()) as { value: string }[]).some((q) => q.value === '203.0.113.7')), 'still quarantined');

  // one click (Enter on the focused button): released, the detector taught
  await tab.focus('button[aria-label="Release as a false positive source 203.0.113.7"]');
  await tab.navigation(() => tab.press('Enter'), (u) => u.includes('notice='));
  assert.match(await tab.evaluate<string>('document.querySelector(".notice").textContent'), /false positive/);
  assert.deepEqual(await (await request(`${control.adminUrl}/quarantines`)).body.json(), []);

  // twenty concurrent releases of one decision: one releases it, the others find it gone
  const add = await request(`${control.adminUrl}/quarantines`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ scope: 'client', value: 'racer', for: '1h', reason: 'race' }) });
  assert.equal(add.statusCode, 201);
  await add.body.dump();
  const answers = await Promise.all(Array.from({ length: 20 }, () => release(`csrf=${encodeURIComponent(csrf)}&scope=client&value=racer`).then(async (r) => (await r.body.dump(), `${r.statusCode} ${r.headers.location}`))));
  assert.equal(answers.filter((a) => a === '303 /quarantines?notice=released').length, 1, answers.join(', '));
  assert.equal(answers.filter((a) => a === '303 /quarantines?notice=absent').length, 19);
  const removed = (await (await request(`${control.adminUrl}/events?type=quarantine&since=10m`)).body.json()) as { code: string; detail?: string }[];
  assert.equal(removed.filter((e) => e.code === 'removed' && e.detail?.startsWith('client racer')).length, 1);

  // (the authority's pages have no favicon: not the console's)
  assert.deepEqual(tab.complaints.filter((c) => !c.url?.startsWith(auth.issuer)), [], 'no CSP violation, exception or console error');

  // an operator taken out of the topology loses the console at once
  writeFileSync(file, topology([]));
  await until('the console follows the topology', () => get('/', { cookie }).then(async (r) => (await r.body.dump(), r.statusCode)), (s) => s === 303);
  // and nobody can start a sign-in (deny by default: no operators)
  const start = await get('/login');
  assert.equal(start.statusCode, 403);
  await start.body.dump();
  writeFileSync(file, topology(['alice']));
  await until('the console follows the topology', () => get('/login').then(async (r) => (await r.body.dump(), r.statusCode)), (s) => s === 303);
  assert.equal((await get('/', { cookie }).then(async (r) => (await r.body.dump(), r.statusCode))), 303, 'a session ended is not brought back');

  // signed in again (the authority's own session: no second password), then signed out with the keyboard
  await tab.goto(`${consoleUrl}/signin`, (u) => u.endsWith('/signin'));
  await tab.focus('a.button');
  await tab.navigation(() => tab.press('Enter'), (u) => u === `${consoleUrl}/`);
  const again = (await tab.context.cookies(consoleUrl)).find((c) => c.name === 'gh_console')!;
  assert.notEqual(again.value, session.value, 'a new session id at each sign-in');
  await tab.focus('form.logout button');
  await tab.navigation(() => tab.press('Enter'), (u) => u.endsWith('/signin'));
  assert.equal((await tab.context.cookies(consoleUrl)).find((c) => c.name === 'gh_console'), undefined);
  assert.equal((await get('/', { cookie: `gh_console=${again.value}` }).then(async (r) => (await r.body.dump(), r.statusCode))), 303, 'signed out on the server too');
});
