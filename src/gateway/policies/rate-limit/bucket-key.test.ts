import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressKey, compileBucketKey } from './bucket-key.ts';
import type { Exchange, Identity } from '../policy.ts';
import type { CompiledRoute } from '../../router.ts';

function exchange(clientAddress: string, identity?: Partial<Identity>, route = 'orders'): Exchange {
  return {
    method: 'GET',
    path: '/',
    query: '',
    host: 'h',
    headers: {},
    clientAddress,
    requestId: 'r',
    zone: 'z',
    route: { name: route } as CompiledRoute,
    now: 0,
    identity: identity && { scopes: new Set(), roles: new Set(), amr: [], kind: 'user', sub: 's', ...identity },
    upstreamHeaders: [],
    responseHeaders: {},
    onDone: [],
    pathParams: () => ({}),
    readBody: async () => Buffer.alloc(0),
  };
}

test('addressKey: IPv4 as is, IPv4-mapped as IPv4, IPv6 canonical and cut to the prefix', () => {
  assert.equal(addressKey('192.0.2.1', 64), '192.0.2.1');
  assert.equal(addressKey('::ffff:192.0.2.1', 64), '192.0.2.1');
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6', 64), '2001:db8:1:2:0:0:0:0/64');
  assert.equal(addressKey('2001:0DB8:0001:0002::9', 64), '2001:db8:1:2:0:0:0:0/64', 'spelling does not matter');
  assert.equal(addressKey('2001:db8:1:2:3:4:5:6', 128), '2001:db8:1:2:3:4:5:6');
  assert.equal(addressKey('2001:db8::1', 128), addressKey('2001:0db8:0:0:0:0:0:0001', 128));
  assert.equal(addressKey('2001:db8:1:ff00::', 56), '2001:db8:1:ff00:0:0:0:0/56');
  assert.equal(addressKey('2001:db8:1:ffff::', 56), '2001:db8:1:ff00:0:0:0:0/56');
  assert.equal(addressKey('2001:db8:1:ffff::', 52), '2001:db8:1:f000:0:0:0:0/52');
  assert.equal(addressKey('::1', 128), '0:0:0:0:0:0:0:1');
  assert.equal(addressKey('::', 64), '0:0:0:0:0:0:0:0/64');
  assert.equal(addressKey('fe80::1%eth0', 128), 'fe80:0:0:0:0:0:0:1', 'zone id dropped');
  assert.equal(addressKey('64:ff9b::192.0.2.33', 128), '64:ff9b:0:0:0:0:c000:221', 'embedded IPv4 tail');
  assert.equal(addressKey('1:2:3:4:5:6:1.2.3.4', 128), '1:2:3:4:5:6:102:304');
  assert.equal(addressKey('', 64), '?');
  assert.equal(addressKey('not an address', 64), '?');
});

test('identity parts read the identity, and a missing one refuses (deny) or falls back (address)', () => {
  const deny = { ipv6PrefixBits: 64, missingIdentity: 'deny' as const };
  const consumer = compileBucketKey(['consumer'], deny);
  assert.equal(consumer(exchange('10.0.0.1', { kind: 'consumer', sub: 'acme' })), 'acme');
  assert.equal(consumer(exchange('10.0.0.1', { kind: 'user', sub: 'u1', consumer: 'acme' })), 'acme');
  assert.equal(consumer(exchange('10.0.0.1', { kind: 'user', sub: 'u1' })), undefined);
  assert.equal(consumer(exchange('10.0.0.1')), undefined, 'no identity: authentication has not run or found none');
  const user = compileBucketKey(['user'], deny);
  assert.equal(user(exchange('10.0.0.1', { kind: 'user', sub: 'u1', issuer: 'https://idp' })), 'https://idp u1');
  assert.equal(user(exchange('10.0.0.1', { kind: 'client', sub: 'svc' })), undefined, 'a client token has no user');
  const clientKey = compileBucketKey(['client'], deny);
  assert.equal(clientKey(exchange('10.0.0.1', { kind: 'client', sub: 'svc' })), 'svc');
  assert.equal(clientKey(exchange('10.0.0.1', { kind: 'user', sub: 'u', clientId: 'web', issuer: 'i' })), 'i web');
  const subject = compileBucketKey(['subject'], deny);
  assert.notEqual(
    subject(exchange('10.0.0.1', { kind: 'user', sub: 'x' })),
    subject(exchange('10.0.0.1', { kind: 'client', sub: 'x' })),
    'a user and a client of the same name are different subjects',
  );
  const fallback = compileBucketKey(['user'], { ipv6PrefixBits: 64, missingIdentity: 'address' });
  assert.equal(fallback(exchange('10.0.0.1')), 'address 10.0.0.1');
  assert.notEqual(fallback(exchange('10.0.0.1')), fallback(exchange('10.0.0.1', { kind: 'user', sub: '10.0.0.1' })));
});

test('tuples are unambiguous whatever the values hold', () => {
  const key = compileBucketKey(['consumer', 'user'], { ipv6PrefixBits: 64, missingIdentity: 'deny' });
  const a = key(exchange('10.0.0.1', { kind: 'user', consumer: 'a|b', sub: 'c' }));
  const b = key(exchange('10.0.0.1', { kind: 'user', consumer: 'a', sub: 'b|c' }));
  const c = key(exchange('10.0.0.1', { kind: 'user', consumer: 'a1:', sub: 'c' }));
  assert.ok(a && b && c);
  assert.equal(new Set([a, b, c]).size, 3);
  assert.equal(key(exchange('10.0.0.1', { kind: 'client', consumer: 'a', sub: 'svc' })), undefined, 'one part missing');
  const addressRoute = compileBucketKey(['address', 'route'], { ipv6PrefixBits: 64, missingIdentity: 'deny' });
  assert.notEqual(addressRoute(exchange('10.0.0.1', undefined, 'a')), addressRoute(exchange('10.0.0.1', undefined, 'b')));
  assert.equal(addressRoute(exchange('2001:db8::1')), addressRoute(exchange('2001:db8::2')), 'one /64');
});
