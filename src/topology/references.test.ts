// Edges and egress name what exists: a typo would silently drop an edge (deny
// by default), so it is an error with the field and a did-you-mean.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTopology, ConfigError } from './index.ts';

const topology = (allowCaller: string, egress: string) => `version: 1
trustDomain: shop.local
zones:
  public: { gateway: { listen: 127.0.0.1:0 } }
  private: {}
services:
  orders: { zone: public, upstream: 'http://127.0.0.1:1', allow: [{ caller: ${allowCaller}, methods: [GET], paths: [{ path: /x }] }], egress: ${egress} }
  billing: { zone: public, upstream: 'http://127.0.0.1:1' }
`;

function problems(text: string): string[] {
  try {
    parseTopology(text, 't.yaml');
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.issues.map((i) => `${i.path}: ${i.message}`);
  }
}

test('known callers and egress entries (services, gateway:<zone>, host:port) load', () => {
  assert.deepEqual(problems(topology('gateway', "[billing, 'gateway:public', 'api.example.com:443']")), []);
  assert.deepEqual(problems(topology('billing', '[]')), []);
});

test('an unknown caller, egress service or gateway zone is an error naming the field, with a did-you-mean', () => {
  assert.deepEqual(problems(topology('biling', '[]')), ['services.orders.allow[0].caller: unknown caller "biling" (did you mean "billing"?)']);
  assert.deepEqual(problems(topology('gateway', '[bilings]')), ['services.orders.egress[0]: unknown service "bilings" (did you mean "billing"?)']);
  // a zone without a gateway cannot be called through one
  assert.deepEqual(problems(topology('gateway', "['gateway:private']")), ['services.orders.egress[0]: unknown gateway zone "private"']);
  assert.deepEqual(problems(topology('gateway', "['gateway:nowhere-at-all']")), ['services.orders.egress[0]: unknown gateway zone "nowhere-at-all"']);
});
