// DPoP nonces (authority.dpop.requireNonce, RFC 9449 §8) across replicas of
// a zone's authority: the instances share their database (PostgreSQL), and
// with it the nonce secret (the key store's `dpop-nonce` secret), so a nonce
// one instance handed out is good at the other — a client behind a load
// balancer is not answered use_dpop_nonce round after round. Needs a real
// PostgreSQL (skipped with the reason without one, except under CI=true).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { startHarness, tempDir, postgresForTests, DEFAULT_AUTHORITY, type Harness } from './support/authority-harness.ts';
import { dpopKey, dpopProof, type DpopKey } from './support/dpop.ts';

/** A client-credentials request of the dev service client at `h`, with a DPoP proof (and `nonce`). */
async function tokenRequest(h: Harness, key: DpopKey, nonce?: string) {
  const svc = h.auth.devCredentials!.clients.find((c) => c.grant_types.includes('client_credentials') && c.client_secret)!;
  const res = await h.fetch(h.auth.tokenEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: 'Basic ' + Buffer.from(`${svc.client_id}:${svc.client_secret}`).toString('base64'),
      dpop: await dpopProof(key, { htm: 'POST', htu: h.auth.tokenEndpoint, nonce }),
    },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read' }).toString(),
  });
  return { status: res.status, nonce: res.headers.get('dpop-nonce') ?? undefined, body: (await res.json()) as Record<string, unknown> };
}

test('two authority instances on one database: a DPoP nonce from one is good at the other', async (t) => {
  const pg = await postgresForTests();
  if ('skip' in pg) {
    t.skip(pg.skip);
    return;
  }
  const tmp = tempDir();
  const yaml = `${DEFAULT_AUTHORITY}storage: ${JSON.stringify(pg.url)}\ndpop: { requireNonce: true }\n`;
  let a: Harness | undefined;
  let b: Harness | undefined;
  try {
    a = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: yaml });
    b = await startHarness({ dir: tmp.dir, keepDir: true, authorityYaml: yaml });
    const key = await dpopKey();
    const first = await tokenRequest(a, key);
    assert.equal(first.status, 400);
    assert.equal(first.body.error, 'use_dpop_nonce');
    assert.ok(first.nonce, 'a DPoP-Nonce to use');
    const atB = await tokenRequest(b, key, first.nonce);
    assert.equal(atB.status, 200, JSON.stringify(atB.body));
    assert.equal(atB.body.token_type, 'DPoP');
    assert.equal((decodeJwt(String(atB.body.access_token)).cnf as { jkt: string }).jkt, key.jkt);
    assert.equal((await tokenRequest(a, key, first.nonce)).status, 200, 'and at the instance that issued it');
    const forged = await tokenRequest(b, key, 'not-a-nonce-of-this-zone');
    assert.equal(forged.status, 400);
    assert.equal(forged.body.error, 'use_dpop_nonce');
  } finally {
    await b?.close();
    await a?.close();
    await pg.drop();
    tmp.remove();
  }
});
