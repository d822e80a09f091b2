import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { frozenClock } from '../../../shared/clock.ts';
import type { Identity } from '../policy.ts';
import { openIdentitySigner } from './identity-token.ts';

const AUDIENCE = 'spiffe://t/service/orders';
const clock = frozenClock(Date.UTC(2026, 10, 28));
const NOW_S = Math.floor(clock.now() / 1000);

async function signer() {
  return openIdentitySigner({ stateDir: mkdtempSync(path.join(tmpdir(), 'gh-idt-')), zone: 'edge', trustDomain: 't', ttlSeconds: 60, clock });
}

function user(o: Partial<Identity>): Identity {
  return { kind: 'user', sub: 'alice', scopes: new Set(['x:read']), roles: new Set(), amr: [], jti: 'J', exp: NOW_S + 3600, ...o };
}

const claimsOf = async (token: string | Promise<string>) => decodeJwt(await token);

test('two trusted issuers naming the same subject and jti: each caller gets a token saying its own scopes and issuer', async () => {
  const s = await signer();
  const fromA = await claimsOf(s.sign(user({ issuer: 'https://a.example', scopes: new Set(['x:read', 'admin']), token: 'token-from-a' }), AUDIENCE));
  const fromB = await claimsOf(s.sign(user({ issuer: 'https://b.example', token: 'token-from-b' }), AUDIENCE));
  assert.equal(fromA.scope, 'x:read admin');
  assert.equal(fromB.scope, 'x:read');
  assert.equal(fromB.orig_iss, 'https://b.example');
  assert.notEqual(fromB.jti, fromA.jti);
});

test('an API key whose prefix and consumer repeat a token\'s jti and subject does not get that token\'s identity', async () => {
  const s = await signer();
  const token = await claimsOf(s.sign(user({ issuer: 'https://a.example', scopes: new Set(['admin']), token: 't' }), AUDIENCE));
  const key = await claimsOf(s.sign({ kind: 'consumer', sub: 'alice', consumer: 'alice', scopes: new Set(['x:read']), roles: new Set(), amr: [], jti: 'J' }, AUDIENCE));
  assert.equal(token.kind, 'user');
  assert.equal(key.kind, 'consumer');
  assert.equal(key.scope, 'x:read');
  assert.equal(key.orig_iss, undefined);
});

test('a caller whose credential expires sooner never gets a token minted for one that expires later', async () => {
  const s = await signer();
  const late = await claimsOf(s.sign(user({ issuer: 'https://a.example', exp: NOW_S + 3600 }), AUDIENCE));
  const soon = await claimsOf(s.sign(user({ issuer: 'https://a.example', exp: NOW_S + 10 }), AUDIENCE));
  assert.equal(late.exp, NOW_S + 60);
  assert.equal(soon.exp, NOW_S + 10);
});

test('callers the token would say the same of share it until half its lifetime; another audience gets its own', async () => {
  const s = await signer();
  const first = await s.sign(user({ issuer: 'https://a.example' }), AUDIENCE);
  const again = s.sign(user({ issuer: 'https://a.example' }), AUDIENCE);
  assert.equal(again, first, 'the same claims: the minted token, synchronously');
  assert.notEqual(await s.sign(user({ issuer: 'https://a.example' }), 'spiffe://t/service/billing'), first);
  clock.advance(31_000);
  assert.notEqual(await s.sign(user({ issuer: 'https://a.example' }), AUDIENCE), first, 'past half its lifetime: a new one');
});
