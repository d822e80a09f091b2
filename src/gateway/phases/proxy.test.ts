import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quoted } from './proxy.ts';

test('Forwarded values are RFC 7239 quoted-strings: quotes and backslashes escaped, controls dropped', () => {
  assert.equal(quoted('shop.example:8443'), '"shop.example:8443"');
  assert.equal(quoted('[::1]:8443'), '"[::1]:8443"');
  assert.equal(quoted('x";for=6.6.6.6;by="y'), '"x\\";for=6.6.6.6;by=\\"y"');
  assert.equal(quoted('a\\b'), '"a\\\\b"');
  assert.equal(quoted('a\r\nb\u0000c\u007f'), '"abc"');
  assert.equal(quoted(''), '""');
});
