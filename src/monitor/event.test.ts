import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_TYPES } from './event.ts';
import { TYPES } from '../cli/commands/events.ts';

test('gatehouse events --type names every event type of the schema, and only those', () => {
  assert.deepEqual(TYPES.split(', '), [...EVENT_TYPES]);
});
