import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mayActAllows } from './token-exchange.ts';

test('may_act (RFC 8693 §4.4): absent says nothing; present allows only the actor it names, at the issuer it names', () => {
  const iss = 'https://private.example';
  assert.equal(mayActAllows(undefined, 'bff', iss), undefined);
  assert.equal(mayActAllows({ sub: 'bff' }, 'bff', iss), true);
  assert.equal(mayActAllows({ sub: 'bff', iss }, 'bff', iss), true);
  assert.equal(mayActAllows({ sub: 'bff', iss: 'https://other.example' }, 'bff', iss), false);
  assert.equal(mayActAllows({ sub: 'nosy' }, 'bff', iss), false);
  for (const junk of [null, 'bff', ['bff'], 42]) assert.equal(mayActAllows(junk, 'bff', iss), false);
});
