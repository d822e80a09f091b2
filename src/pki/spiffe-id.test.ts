import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSpiffeId, serviceSpiffeId, gatewaySpiffeId, callerName } from './spiffe-id.ts';

const TD = 'shop.local';

test('parses the identities Gatehouse issues', () => {
  const svc = parseSpiffeId('spiffe://shop.local/zone/private/svc/orders', TD);
  assert.deepEqual(svc, { kind: 'service', trustDomain: TD, zone: 'private', service: 'orders', uri: 'spiffe://shop.local/zone/private/svc/orders' });
  assert.equal(callerName(svc!), 'orders');
  const gw = parseSpiffeId(gatewaySpiffeId(TD, 'public'), TD);
  assert.equal(gw?.kind, 'gateway');
  assert.equal(callerName(gw!), 'gateway');
  assert.equal(parseSpiffeId('spiffe://shop.local/ca', TD)?.kind, 'ca');
  assert.equal(serviceSpiffeId(TD, 'private', 'orders'), 'spiffe://shop.local/zone/private/svc/orders');
});

test('refuses look-alike and non-canonical IDs', () => {
  const bad = [
    'spiffe://shop.local/zone/private/svc/orders/',
    'spiffe://shop.local/zone/private/svc/Orders',
    'SPIFFE://shop.local/zone/private/svc/orders',
    'spiffe://SHOP.local/zone/private/svc/orders',
    'spiffe://shop.local/zone/private/svc/%6frders',
    'spiffe://shop.local/zone/private/svc/orders%2F',
    'spiffe://shop.local/zone/private/svc/./orders',
    'spiffe://shop.local/zone/private/svc/x/../orders',
    'spiffe://shop.local/zone/private/./svc/orders',
    'spiffe://shop.local//zone/private/svc/orders',
    'spiffe://shop.local:443/zone/private/svc/orders',
    'spiffe://user@shop.local/zone/private/svc/orders',
    'spiffe://shop.local/zone/private/svc/orders?x=1',
    'spiffe://shop.local/zone/private/svc/orders#a',
    'spiffe://shop.local.evil/zone/private/svc/orders',
    'spiffe://evil.shop.local/zone/private/svc/orders',
    'spiffe://other.local/zone/private/svc/orders',
    'spiffe://shop.local/zone/private/svc/orders\u0000',
    'spiffe://shop.local/zone/private/svc/orders ',
    'spiffe://shop.local/zone/private/svc/',
    'spiffe://shop.local/zone/private/gateway/',
    'spiffe://shop.local/zone/private/svc/orders/extra',
    'spiffe://shop.local/svc/orders',
    'https://shop.local/zone/private/svc/orders',
    'spiffe://shop.local/ca/',
  ];
  for (const id of bad) assert.equal(parseSpiffeId(id, TD), null, id);
});

test('a look-alike name is a different service, never the real one', () => {
  const evil = parseSpiffeId('spiffe://shop.local/zone/private/svc/orders-evil', TD);
  assert.equal(evil?.kind === 'service' && evil.service, 'orders-evil');
});
