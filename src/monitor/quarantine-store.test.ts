import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GatehouseError } from '../shared/errors.ts';
import type { Topology } from '../topology/schema.ts';
import { checkQuarantine } from './quarantine-store.ts';

const topology = { services: { orders: {} } } as unknown as Topology;
const service = (value: string) => ({ scope: 'service' as const, value, forMs: 60_000, reason: 'test' });

test('a service quarantine names a service of the topology: never a name every object has (__proto__, constructor, toString)', () => {
  checkQuarantine(service('orders'), topology);
  for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'nope'])
    assert.throws(
      () => checkQuarantine(service(name), topology),
      (e: unknown) => e instanceof GatehouseError && e.status === 422 && e.message.includes(`no service "${name}"`),
      name,
    );
});
