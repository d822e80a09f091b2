import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalTarget } from './hygiene.ts';
import { GatehouseError } from '../shared/errors.ts';

const path = (t: string) => canonicalTarget(t).path;
function refused(target: string, pattern: RegExp): void {
  assert.throws(
    () => canonicalTarget(target),
    (e: unknown) => e instanceof GatehouseError && e.status === 400 && e.closeConnection && pattern.test(e.message),
    target,
  );
}

test('already-canonical paths pass unchanged, with the query kept raw', () => {
  assert.deepEqual(canonicalTarget('/api/catalog'), { path: '/api/catalog', query: '', hasParameters: false });
  assert.deepEqual(canonicalTarget('/api/catalog?page=2&q=a%20b'), { path: '/api/catalog', query: 'page=2&q=a%20b', hasParameters: false });
  assert.equal(path('/'), '/');
  assert.equal(path('/a/b/'), '/a/b/');
});

test('dot segments and duplicate slashes are normalised once', () => {
  assert.equal(path('/api/./catalog'), '/api/catalog');
  assert.equal(path('/api/x/../catalog'), '/api/catalog');
  assert.equal(path('/api//catalog'), '/api/catalog');
  assert.equal(path('/api/catalog/.'), '/api/catalog/');
  assert.equal(path('/api/x/..'), '/api/');
  assert.equal(path('/api/.well-known/x'), '/api/.well-known/x');
  assert.equal(path('/a/..b/c'), '/a/..b/c');
});

test('percent-encoded unreserved characters are decoded; the rest stays encoded in upper case', () => {
  assert.equal(path('/api/p%75blic'), '/api/public');
  assert.equal(path('/a%20b'), '/a%20b');
  assert.equal(path('/caf%c3%a9'), '/caf%C3%A9');
  assert.equal(path('/x%2a'), '/x%2A');
});

test('ambiguous encodings are refused', () => {
  refused('/api%2Fadmin', /encoded slash/);
  refused('/api%2fadmin', /encoded slash/);
  refused('/api%5Cadmin', /encoded backslash/);
  refused('/api/%2e%2e/admin', /encoded dot/);
  refused('/api/%2E/admin', /encoded dot/);
  refused('/a%00b', /NUL/);
  refused('/a%252Fb', /double percent-encoding/);
  refused('/a%25', /double percent-encoding/);
  refused('/a%zz', /invalid percent-encoding/);
  refused('/a%4', /invalid percent-encoding/);
  refused('/a%', /invalid percent-encoding/);
  refused('/a%C0%AF', /not valid UTF-8/);
  refused('/a%FF', /not valid UTF-8/);
  refused('/a%E2%82', /not valid UTF-8/);
  refused('/a%0A', /control character/);
  refused('/a%7F', /control character/);
  refused('/a%3Bb', /encoded semicolon/);
});

test('raw characters that need encoding, backslashes and fragments are refused', () => {
  refused('/a\\b', /backslash/);
  refused('/a b', /must be percent-encoded/);
  refused('/a\tb', /must be percent-encoded/);
  refused('/a\x01b', /must be percent-encoded/);
  refused('/caf\u00e9', /must be percent-encoded/);
  refused('/a#frag', /fragment/);
  refused('/a?x=1#frag', /fragment/);
  refused('/a?x=1 2', /query holds characters/);
  refused('/a?x=%zz', /invalid percent-encoding in the query/);
  refused('/a"b', /must be percent-encoded/);
});

test('traversal above the root and servlet-style dot segments are refused', () => {
  refused('/..', /above the root/);
  refused('/a/../..', /above the root/);
  refused('/a/../../etc/passwd', /above the root/);
  refused('/api/public/..;/admin', /dot segment with parameters/);
  refused('/api/.;x/admin', /dot segment with parameters/);
});

test('path parameters are flagged for the route to decide', () => {
  assert.deepEqual(canonicalTarget('/a;jsessionid=1/b'), { path: '/a;jsessionid=1/b', query: '', hasParameters: true });
});

test('only origin-form targets are accepted', () => {
  refused('http://example.com/api', /origin-form/);
  refused('example.com:443', /origin-form/);
  refused('*', /asterisk-form/);
  refused('', /origin-form/);
  refused('//evil.example/x', /starts with \/\//);
});
