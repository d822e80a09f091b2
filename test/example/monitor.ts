// Done when (issue 16): the example under `gatehouse up` detects and
// quarantines a scripted scanner and a scripted credential-stuffing run end
// to end — the scanner's 404s at the public gateway and the stuffer's wrong
// client secrets at the public authority reach the control plane as events,
// the scan and stuffing detectors quarantine each source, and the public
// gateway refuses it while every other address is served. The copy of the
// example names a console sign-in zone: endpoints.json lists the console,
// whose pages need a sign-in, and the authority registered its client; an
// operator signs in to it in Chromium and sees every enforcement point.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { generate } from 'otplib';
import path from 'node:path';
import { request, Agent } from 'undici';
import { sharedExample, operatedExample } from '../support/example-up.ts';
import { readConsoleGrant } from '../../src/monitor/console-grant.ts';
import { until } from '../support/closers.ts';
import { Chromium, requireChromium } from '../support/authority-chromium.ts';
import { serverSpkiHash } from '../support/authority-spki.ts';

const shots = process.env.CONSOLE_SCREENSHOTS;

const main = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const ex = await sharedExample('127.0.1.7', ['--config', operatedExample()]);
const agents: Agent[] = [];
after(async () => {
  for (const a of agents) await a.close();
});
const gateway = ex.endpoints.zones.public.gateway!;
const authority = ex.endpoints.zones.public.authority!;

/** An agent whose connections come from `address` (127.0.0.0/8 is all this machine), trusting the dev CA. */
function from(address: string): Agent {
  const a = new Agent({ connect: { ca: readFileSync(ex.endpoints.caBundle, 'utf8') }, localAddress: address });
  agents.push(a);
  return a;
}
const catalog = async (a: Agent) => {
  const r = await request(`${gateway}/api/catalog`, { dispatcher: a });
  await r.body.dump();
  return r.statusCode;
};
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [main, ...args, '--state-dir', ex.stateDir], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>[];
};

test('a scripted scanner at the public gateway is quarantined there; everyone else is served', async (t) => {
  const scanner = from('127.0.0.21');
  assert.equal(await catalog(scanner), 200);
  for (const p of ['/.env', '/wp-login.php', '/admin/config', '/.git/config', '/phpmyadmin/']) {
    const r = await request(`${gateway}${p}`, { dispatcher: scanner });
    await r.body.dump();
    assert.equal(r.statusCode, 404, p);
  }
  const t0 = performance.now();
  await until('the scanner refused', () => catalog(scanner), (s) => s === 403, 10_000);
  t.diagnostic(`scanner refused at the public gateway ${(performance.now() - t0).toFixed(0)} ms after its fifth 404`);
  assert.equal(await catalog(from('127.0.0.1')), 200, 'another address is served');
  const q = cli('quarantine', 'list', '--json').find((x) => x.value === '127.0.0.21');
  assert.equal(q?.origin, 'detector:scan');
});

test('a scripted credential-stuffing run at the public authority is quarantined at the gateway', async (t) => {
  const stuffer = from('127.0.0.22');
  const client = ex.credentials.zones.public.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  assert.equal(await catalog(stuffer), 200);
  for (let i = 0; i < 10; i++) {
    const r = await request(`${authority}/token`, {
      method: 'POST',
      dispatcher: stuffer,
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${client.client_id}:guess-${i}`).toString('base64')}` },
      body: 'grant_type=client_credentials',
    });
    await r.body.dump();
    assert.ok(r.statusCode === 401 || r.statusCode === 429 || r.statusCode === 400, `guess ${i}: ${r.statusCode}`);
  }
  const t0 = performance.now();
  await until('the stuffer refused at the gateway', () => catalog(stuffer), (s) => s === 403, 10_000);
  t.diagnostic(`stuffer refused at the public gateway ${(performance.now() - t0).toFixed(0)} ms after its tenth wrong secret`);
  assert.equal(await catalog(from('127.0.0.1')), 200);
  const q = cli('quarantine', 'list', '--json').find((x) => x.value === '127.0.0.22');
  assert.equal(q?.origin, 'detector:stuffing');
  const failures = cli('events', '--since', '10m', '--type', 'auth_failure', '--json').filter((e) => e.source === '127.0.0.22');
  assert.ok(failures.length >= 10, `${failures.length} auth_failure events`);
  assert.equal(failures[0].pep, `spiffe://${ex.endpoints.trustDomain}/zone/public/authority`);
});

test('the console of the example: listed in endpoints.json, every page behind the sign-in, its client registered at the public authority', async () => {
  const consoleUrl = ex.endpoints.console!;
  assert.match(consoleUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  const r = await request(`${consoleUrl}/events`);
  assert.equal(r.statusCode, 303);
  assert.equal(r.headers.location, '/signin');
  await r.body.dump();
  const grant = await until('the console client', () => readConsoleGrant(ex.stateDir), (g) => g?.redirect_uri === `${consoleUrl}/callback`);
  assert.equal(grant?.issuer, authority);
  const login = await request(`${consoleUrl}/login`);
  assert.equal(login.statusCode, 303);
  assert.ok(String(login.headers.location).startsWith(`${authority}/auth?`), String(login.headers.location));
  await login.body.dump();
});

test('an operator of the example signs in to its console in Chromium and sees every page (screenshots to $CONSOLE_SCREENSHOTS)', async (t) => {
  if (!requireChromium(t)) return;
  const consoleUrl = ex.endpoints.console!;
  const chromium = await Chromium.launch([
    `--ignore-certificate-errors-spki-list=${await serverSpkiHash(authority)}`,
    '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ]);
  try {
    const tab = await chromium.newTab();
    await tab.page.setViewportSize({ width: 1280, height: 800 });
    await tab.goto(`${consoleUrl}/login`, (u) => u.startsWith(authority));
    const alice = ex.credentials.zones.public.users.find((u) => u.username === 'alice')!;
    await tab.signInWithKeyboard(authority, alice, async () => generate({ secret: alice.totp_secret, epoch: Math.floor(Date.now() / 1000) }), (u) => u === `${consoleUrl}/`);
    const peps = await tab.evaluate<number>('document.querySelectorAll("section[aria-labelledby=h-peps] tbody tr").length');
    assert.ok(peps >= 5, `${peps} enforcement points listed`);
    for (const p of ['/', '/topology', '/events', '/quarantines', '/audit']) {
      await tab.goto(`${consoleUrl}${p}`, (u) => u === `${consoleUrl}${p}`);
      if (shots) writeFileSync(path.join(shots, `example-console${p === '/' ? '-overview' : p.replace('/', '-')}.png`), await tab.screenshot());
    }
    assert.ok((await tab.evaluate<number>('document.querySelectorAll("table tbody tr").length')) > 0);
    assert.deepEqual(tab.complaints.filter((c) => !c.url?.startsWith(authority)), []);
  } finally {
    await chromium.close();
  }
});
