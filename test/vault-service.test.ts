// The vault service over mTLS: each caller is its verified SPIFFE ID, the
// topology's grants decide (deny by default), every request is audited with
// no secret in it; hostile, malformed, oversized and concurrent requests; the
// SDK (encryptFields/decryptFields, tokenize/detokenize) against it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { initCa, issueWorkloadIdentity, serviceSpiffeId, gatewaySpiffeId, revokeCertificate, type WorkloadIdentity } from '../src/pki/index.ts';
import { startVaultServer, createVaultClient, VaultRequestError, type VaultServer } from '../src/vault/index.ts';
import { tempDir, captureLogger, rogueCa, forge, uri } from './support/pki-fixtures.ts';
import { loadTopology } from '../src/topology/load.ts';

const TD = 'vault.test';
const YAML = `
version: 1
trustDomain: ${TD}
zones:
  private:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 } }
services:
  orders: { zone: private, upstream: http://127.0.0.1:1 }
  reports: { zone: private, upstream: http://127.0.0.1:1 }
  payments: { zone: private, upstream: http://127.0.0.1:1 }
vault:
  listen: 127.0.0.1:0
  keys:
    orders-pii:
      encrypt: [orders]
      decrypt: [orders]
      rewrap: [orders, reports]
      datakey: [orders]
    orders-card:
      tokens: card
      tokenize: [orders]
      detokenize: [payments]
    orders-email:
      deterministic: true
      tokenize: [orders, reports]
      detokenize: []
`;
const CARD = '4111111111111111';

let dir: { dir: string; cleanup(): void };
let server: VaultServer;
let edgeCa: string;
const ids: Record<string, WorkloadIdentity> = {};
const log = captureLogger('vault');

before(async () => {
  dir = tempDir('gh-vault-svc-');
  const config = path.join(dir.dir, 'gatehouse.yaml');
  writeFileSync(config, YAML);
  const { topology } = loadTopology(config);
  await initCa({ stateDir: dir.dir, topology, passphrase: 'correct horse battery staple' });
  for (const s of ['orders', 'reports', 'payments']) ids[s] = await issueWorkloadIdentity(dir.dir, serviceSpiffeId(TD, 'private', s), { topology });
  ids.gateway = await issueWorkloadIdentity(dir.dir, gatewaySpiffeId(TD, 'private'), { topology });
  server = await startVaultServer({ config, stateDir: dir.dir, logger: log.logger, env: {} });
  // the vault serves spiffe://<td>/vault from the trust domain's CA (no dev CA)
  edgeCa = readFileSync(path.join(dir.dir, 'pki', 'bundle.pem'), 'utf8');
});

after(async () => {
  await server?.close();
  dir?.cleanup();
});

const client = (who: string) => createVaultClient({ url: server.url, identity: ids[who] });

/** A raw request with `who`'s certificate (or none / another's). */
function raw(
  who: { certPem: string; keyPem: string } | undefined,
  p: string,
  body: string | Buffer,
  o: { method?: string; type?: string } = {},
): Promise<{ status: number; json: any; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(p, server.url),
      {
        method: o.method ?? 'POST',
        ca: edgeCa,
        ...(who ? { cert: who.certPem, key: who.keyPem } : {}),
        headers: { 'content-type': o.type ?? 'application/json' },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json: any;
          try {
            json = JSON.parse(text);
          } catch {}
          resolve({ status: res.statusCode!, json, text });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('the vault is spiffe://<td>/vault: its certificate chains to the trust bundle; the SDK refuses any other server, even a workload of the trust domain', async () => {
  const peer = await new Promise<X509Certificate>((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: Number(new URL(server.url).port), ca: edgeCa, cert: ids.orders.certPem, key: ids.orders.keyPem, servername: 'localhost' }, () => {
      resolve(new X509Certificate(socket.getPeerCertificate(false).raw));
      socket.end();
    });
    socket.on('error', reject);
  });
  assert.ok(peer.subjectAltName?.split(', ').includes(`URI:spiffe://${TD}/vault`), peer.subjectAltName);
  assert.ok(peer.verify(new X509Certificate(readFileSync(path.join(dir.dir, 'pki', 'issuers', '_control.pem'))).publicKey), 'issued by the control issuer');
  assert.ok(new Date(peer.validTo).getTime() - Date.now() <= 86400_000 + 60_000, 'short-lived');

  // an impostor: a real workload certificate of the trust domain (payments), serving the vault's API
  const impostor = https.createServer({ cert: ids.payments.certPem, key: ids.payments.keyPem, ca: edgeCa, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ciphertext":"gh:v1:x"}');
  });
  const seen: string[] = [];
  await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', () => r()));
  try {
    const url = `https://127.0.0.1:${(impostor.address() as { port: number }).port}`;
    const c = createVaultClient({ url, identity: ids.orders, ca: edgeCa });
    await assert.rejects(c.encrypt('orders-pii', 'Baker Street 221b', 'orders/1/address'), (e: unknown) => {
      assert.ok(e instanceof VaultRequestError, String(e));
      assert.equal(e.code, 'certificate_rejected');
      assert.match(e.message, new RegExp(`not spiffe://${TD}/vault .*svc/payments`));
      assert.doesNotMatch(e.message, /Baker/);
      return true;
    });
    c.close();
    assert.deepEqual(seen, [], 'no request reached the impostor');
  } finally {
    await new Promise<void>((r) => impostor.close(() => r()));
  }
});

test('SDK: encryptFields/decryptFields round trip, context per record and field; tokenize/detokenize by grant', async () => {
  const orders = client('orders');
  const row = await orders.encryptFields({ id: 'o-1', address: 'Rue de la Paix 1, Paris', note: null }, { key: 'orders-pii', fields: ['address', 'note'], context: 'orders/o-1' });
  assert.match(row.address, /^gh:v1:/);
  assert.equal(row.note, null);
  assert.equal((await orders.decryptFields(row, { key: 'orders-pii', fields: ['address', 'note'], context: 'orders/o-1' })).address, 'Rue de la Paix 1, Paris');
  // moved to another record: refused
  await assert.rejects(orders.decryptFields(row, { key: 'orders-pii', fields: ['address'], context: 'orders/o-2' }), (e: unknown) => e instanceof VaultRequestError && e.code === 'vault_decrypt_failed');
  const token = await orders.tokenize('orders-card', CARD);
  assert.equal(token.length, 16);
  assert.equal(token.slice(-4), '1111');
  // orders may tokenize, not detokenize; payments may detokenize
  await assert.rejects(orders.detokenize('orders-card', token), (e: unknown) => e instanceof VaultRequestError && e.code === 'vault_not_allowed');
  assert.equal(await client('payments').detokenize('orders-card', token), CARD);
  const dk = await orders.datakey('orders-pii', 'file/1');
  assert.equal(dk.plaintext.length, 32);
  assert.match(await client('reports').rewrap('orders-pii', row.address as string, 'orders/o-1/address'), /^gh:v1:/);
  orders.close();
});

test('deny by default: another service, a gateway, an unknown key or operation, an empty grant list', async () => {
  const cases: [string, string, string][] = [
    ['reports', 'encrypt', 'orders-pii'],
    ['payments', 'decrypt', 'orders-pii'],
    ['gateway', 'encrypt', 'orders-pii'],
    ['orders', 'encrypt', 'no-such-key'],
    ['orders', 'tokenize', 'orders-pii'],
    ['orders', 'detokenize', 'orders-email'],
    ['reports', 'detokenize', 'orders-email'],
  ];
  for (const [who, op, key] of cases) {
    const r = await raw(ids[who], `/v1/${op}/${key}`, JSON.stringify({ plaintext: '', context: 'c', value: 'x', token: 'tok_AAAAAAAAAAAAAAAAAAAAAA' }));
    assert.equal(r.status, 403, `${who} ${op} ${key}`);
    assert.equal(r.json.code, 'vault_not_allowed');
    assert.ok(r.json.request_id);
  }
  assert.equal((await raw(ids.orders, '/v1/sign/orders-pii', '{}')).status, 404);
  assert.equal((await raw(ids.orders, '/v1/encrypt/orders-pii', '', { method: 'GET' })).status, 405);
});

test('TLS: no client certificate, or one of another CA, gets no session; a revoked certificate is refused', async () => {
  await assert.rejects(raw(undefined, '/v1/encrypt/orders-pii', '{}'));
  const rogue = await rogueCa('private', TD);
  const forged = await forge({ issuer: rogue.issuer, sans: [uri(serviceSpiffeId(TD, 'private', 'orders'))] });
  await assert.rejects(raw(forged, '/v1/encrypt/orders-pii', '{}'));
  const { topology } = loadTopology(path.join(dir.dir, 'gatehouse.yaml'));
  const doomed = await issueWorkloadIdentity(dir.dir, serviceSpiffeId(TD, 'private', 'orders'), { topology });
  revokeCertificate({ stateDir: dir.dir, serial: doomed.serial });
  await new Promise((r) => setTimeout(r, 1200));
  const r = await raw(doomed, '/v1/encrypt/orders-pii', JSON.stringify({ plaintext: '', context: 'c' }));
  assert.equal(r.status, 403);
  assert.equal(r.json.code, 'certificate_rejected');
});

test('bad input: malformed JSON, wrong types, unknown fields, bad base64, oversized body and batch, wrong media type', async () => {
  const o = ids.orders;
  const post = (body: string | Buffer, type?: string) => raw(o, '/v1/encrypt/orders-pii', body, { type });
  const expect = async (p: Promise<{ status: number; json: any }>, status: number, code: string) => {
    const r = await p;
    assert.equal(r.status, status, JSON.stringify(r.json));
    assert.equal(r.json.code, code);
  };
  await expect(post('{'), 400, 'bad_request');
  await expect(post('null'), 400, 'bad_request');
  await expect(post('[]'), 400, 'bad_request');
  await expect(post('"x"'), 400, 'bad_request');
  await expect(post(JSON.stringify({ plaintext: 5, context: 'c' })), 400, 'bad_request');
  await expect(post(JSON.stringify({ plaintext: 'aGk=', context: 'c', extra: 1 })), 400, 'bad_request');
  await expect(post(JSON.stringify({ plaintext: '***', context: 'c' })), 400, 'bad_request');
  await expect(post(JSON.stringify({ plaintext: 'aGk=' })), 400, 'bad_request');
  await expect(post(JSON.stringify({ plaintext: 'aGk=', context: '' })), 400, 'vault_context_invalid');
  await expect(post(JSON.stringify({ plaintext: 'aGk=', context: 'c'.repeat(2000) })), 400, 'vault_context_invalid');
  await expect(post(JSON.stringify({ plaintext: 'aGk=', context: 'c' }), 'text/plain'), 415, 'unsupported_media_type');
  await expect(post(Buffer.alloc(3 * 1024 * 1024, 0x20)), 413, 'payload_too_large');
  await expect(post(JSON.stringify({ batch: [] })), 400, 'bad_request');
  await expect(post(JSON.stringify({ batch: Array(1001).fill({ plaintext: '', context: 'c' }) })), 400, 'bad_request');
  await expect(post(JSON.stringify({ batch: [], other: 1 })), 400, 'bad_request');
  await expect(post('{"__proto__":{"a":1},"plaintext":"aGk=","context":"c"}'), 400, 'bad_request');
  const d = (body: object) => raw(o, '/v1/decrypt/orders-pii', JSON.stringify(body));
  await expect(d({ ciphertext: 'gh:v1:AAAA', context: 'c' }), 400, 'vault_ciphertext_malformed');
  await expect(d({ ciphertext: 'not a ciphertext', context: 'c' }), 400, 'vault_ciphertext_malformed');
  // a batch answers per field, in order
  const ok = await raw(o, '/v1/decrypt/orders-pii', JSON.stringify({ batch: [{ ciphertext: 'gh:v1:AAAA', context: 'c' }, { ciphertext: 5, context: 'c' }] }));
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.json.batch.map((b: any) => b.error.code), ['vault_ciphertext_malformed', 'bad_request']);
  // a token of another key, an unknown token
  const t = await client('orders').tokenize('orders-email', 'ann@example.com');
  await expect(raw(ids.payments, '/v1/detokenize/orders-card', JSON.stringify({ token: t })), 400, 'vault_token_wrong_key');
  await expect(raw(ids.payments, '/v1/detokenize/orders-card', JSON.stringify({ token: '0000000000000000' })), 404, 'vault_token_not_found');
  await expect(raw(o, '/v1/tokenize/orders-card', JSON.stringify({ value: '4111111111111112' })), 400, 'vault_value_invalid');
});

test('batch of 100 and 200 concurrent requests: all answered, in order', async () => {
  const orders = client('orders');
  const items = Array.from({ length: 100 }, (_, i) => ({ plaintext: `value ${i}`, context: `row/${i}` }));
  const cts = await orders.encryptBatch('orders-pii', items);
  const back = await orders.decryptBatch('orders-pii', cts.map((ciphertext, i) => ({ ciphertext, context: `row/${i}` })));
  assert.deepEqual(back.map((b) => b.toString()), items.map((i) => i.plaintext));
  const all = await Promise.all(Array.from({ length: 200 }, (_, i) => orders.encrypt('orders-pii', `v${i}`, `c${i}`).then((c) => orders.decrypt('orders-pii', c, `c${i}`))));
  assert.deepEqual(all.map((b) => b.toString()), Array.from({ length: 200 }, (_, i) => `v${i}`));
  // rotation while requests run: none fails
  const during = Promise.all(Array.from({ length: 100 }, (_, i) => orders.encrypt('orders-pii', `r${i}`, 'c').then((c) => orders.decrypt('orders-pii', c, 'c'))));
  await server.vault.rotateKey('orders-pii');
  await server.vault.rotateKey('orders-pii');
  assert.equal((await during).length, 100);
  orders.close();
});

test('audit: every request and refusal is a line with caller, operation, key and code — never a value, token or context', async () => {
  const audit = readFileSync(path.join(dir.dir, 'vault', 'audit.log'), 'utf8');
  const lines = audit.trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.some((l) => l.outcome === 'refused' && l.code === 'vault_not_allowed' && l.caller.endsWith('/svc/reports')));
  assert.ok(lines.some((l) => l.outcome === 'ok' && l.op === 'encrypt' && l.items === 100));
  assert.ok(lines.some((l) => l.op === 'tls' && l.outcome === 'refused' && l.caller === 'unverified'), 'a TLS refusal is audited');
  for (const secret of [CARD, 'Rue de la Paix', 'ann@example.com', 'orders/o-1', 'row/1']) {
    assert.ok(!audit.includes(secret), `${secret} in the audit log`);
    assert.ok(!log.text().includes(secret), `${secret} in the vault log`);
  }
});
