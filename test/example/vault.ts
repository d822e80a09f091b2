// The example under `gatehouse up` with its vault: a signed-in user places an
// order with a delivery address and a card through the BFF; orders answers
// with the address and the card's token, and its database file holds neither
// in clear (grepped, WAL included). The vault refuses a service the topology
// does not name. Every log `up` wrote holds no card, address, password, TOTP
// secret, client secret or access token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { request, fetch as undiciFetch, Agent } from 'undici';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import { sharedExample, certificateFor, exampleCli } from '../support/example-up.ts';
import { signIn, codeTokens } from '../support/authority-flows.ts';
import type { Harness, TestFetch } from '../support/authority-harness.ts';
import { serviceSpiffeId } from '../../src/pki/index.ts';
import { isCardToken } from '../../src/vault/index.ts';

const CARD = '5555555555554444';
const ADDRESS = 'Flat 3, 221B Baker Street, London NW1 6XE';
const ex = await sharedExample('127.0.1.4');
let userToken = '';

test('endpoints.json names the vault; a signed-in user orders with an address and a card; orders answers the address and a token', async () => {
  assert.match(ex.endpoints.vault!, /^https:\/\/127\.0\.0\.1:\d+$/);
  const zone = ex.credentials.zones.public;
  const web = zone.clients.find((c) => c.grant_types.includes('authorization_code'))!;
  const issuer = ex.endpoints.zones.public.authority!;
  const edgeFetch = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: ex.edge })) as unknown as TestFetch;
  const config = await oidc.discovery(new URL(issuer), web.client_id, { redirect_uris: web.redirect_uris }, oidc.ClientSecretBasic(web.client_secret!), {
    [oidc.customFetch]: edgeFetch as any,
  });
  const h = { auth: { issuer }, fetch: edgeFetch, totp: async (secret: string) => generate({ secret }) } as unknown as Harness;
  // a customer of her own (`gatehouse users add`): alice signs in in the mTLS part, and one TOTP step serves one sign-in
  const carol = exampleCli(ex.stateDir, ['users', 'add', 'carol', '--zone', 'public']) as { username: string; password: string; totp_secret: string };
  userToken = (await codeTokens(config, await signIn(h, config, carol, { scope: 'openid orders:read orders:write' }))).access_token;
  const shop = ex.endpoints.zones.public.gateway + '/api/shop/orders';
  const headers = { authorization: `Bearer ${userToken}`, 'content-type': 'application/json' };
  const placed = await request(shop, { dispatcher: ex.edge, method: 'POST', headers, body: JSON.stringify({ items: [{ sku: 'tea-001', quantity: 1 }], address: ADDRESS, card: CARD }) });
  const order = (await placed.body.json()) as { id: string; address?: string; card?: string };
  assert.equal(placed.statusCode, 201, JSON.stringify(order));
  assert.equal(order.address, ADDRESS);
  assert.ok(order.card && isCardToken(order.card) && order.card.endsWith('4444') && order.card !== CARD, order.card);
  // a card number the vault refuses (Luhn) stores nothing
  const bad = await request(shop, { dispatcher: ex.edge, method: 'POST', headers, body: JSON.stringify({ items: [{ sku: 'tea-001', quantity: 1 }], card: '5555555555554445' }) });
  assert.equal(bad.statusCode, 422);
  await bad.body.dump();
  const listed = await request(shop, { dispatcher: ex.edge, headers: { authorization: headers.authorization } });
  const { orders } = (await listed.body.json()) as { orders: { id: string; address?: string; card?: string }[] };
  const mine = orders.find((o) => o.id === order.id)!;
  assert.equal(mine.address, ADDRESS);
  assert.equal(mine.card, order.card);
});

test('the orders database holds no plaintext personal data (grep of the file and its WAL)', () => {
  const dir = path.join(ex.stateDir, 'data', 'orders');
  const files = readdirSync(dir).filter((f) => f.startsWith('orders.sqlite'));
  assert.ok(files.length > 0);
  const bytes = Buffer.concat(files.map((f) => readFileSync(path.join(dir, f))));
  assert.ok(bytes.includes('gh:v1:'), 'the address is there, encrypted');
  for (const clear of [ADDRESS, 'Baker Street', CARD, '5555 5555']) assert.equal(bytes.includes(clear), false, `${clear} in the orders database`);
});

test('the vault refuses a service the topology does not name for a key (BFF asks to encrypt), over mTLS', async () => {
  const bff = await certificateFor(ex.stateDir, serviceSpiffeId('shop.local', 'public', 'bff'));
  // the vault's certificate (spiffe://shop.local/vault) chains to the trust domain's root, not the edge CA
  const agent = new Agent({ connect: { ca: readFileSync(path.join(ex.stateDir, 'pki', 'bundle.pem'), 'utf8'), cert: bff.certPem, key: bff.keyPem } });
  try {
    const r = await request(`${ex.endpoints.vault}/v1/encrypt/orders-pii`, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ plaintext: '', context: 'x' }) });
    assert.equal(r.statusCode, 403);
    assert.equal(((await r.body.json()) as { code: string }).code, 'vault_not_allowed');
  } finally {
    await agent.close();
  }
});

test('kill -9 of the vault under gatehouse up: it comes back on its port and orders with an address work again', async () => {
  const readyz = async () => {
    const r = await request(`${ex.endpoints.up!.admin}/readyz`);
    return ((await r.body.json()) as { components: { name: string; pid?: number; healthy: boolean }[] }).components.find((c) => c.name === 'vault')!;
  };
  const before = await readyz();
  assert.ok(before.healthy && before.pid);
  process.kill(before.pid, 'SIGKILL');
  const deadline = Date.now() + 30_000;
  let after = await readyz();
  while (!(after.healthy && after.pid !== before.pid) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    after = await readyz();
  }
  assert.ok(after.healthy && after.pid !== before.pid, 'the vault is back');
  const shop = ex.endpoints.zones.public.gateway + '/api/shop/orders';
  const headers = { authorization: `Bearer ${userToken}`, 'content-type': 'application/json' };
  let status = 0;
  for (let i = 0; i < 20 && status !== 201; i++) {
    const r = await request(shop, { dispatcher: ex.edge, method: 'POST', headers, body: JSON.stringify({ items: [{ sku: 'tea-001', quantity: 1 }], address: ADDRESS }) });
    status = r.statusCode;
    await r.body.dump();
    if (status !== 201) await new Promise((res) => setTimeout(res, 250));
  }
  assert.equal(status, 201);
});

test('no log of the run holds a card, the address, a password, a TOTP or client secret or the access token', () => {
  const logs = path.join(ex.stateDir, 'logs');
  const audit = path.join(ex.stateDir, 'vault', 'audit.log');
  const files = [...readdirSync(logs).map((f) => path.join(logs, f)), ...(existsSync(audit) ? [audit] : [])];
  const text = files.map((f) => readFileSync(f, 'utf8')).join('\n') + ex.output();
  const secrets = [CARD, ADDRESS, 'Baker Street', userToken];
  for (const z of Object.values(ex.credentials.zones)) {
    for (const u of z.users) secrets.push(u.password, u.totp_secret);
    for (const c of z.clients) if (c.client_secret) secrets.push(c.client_secret);
  }
  for (const s of secrets) assert.equal(text.includes(s), false, `a secret (${s.slice(0, 4)}…) is in the logs`);
  assert.ok(readFileSync(audit, 'utf8').includes('"outcome":"refused","code":"vault_not_allowed"'));
});
