import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rawTarget } from './respond.ts';

test('a refused raw target is logged without secret query values, and bounded', () => {
  assert.equal(rawTarget('/api/%2e%2e/x?token=abc123&page=2'), '/api/%2e%2e/x?token=[REDACTED]&page=2');
  assert.equal(rawTarget('//evil?access_token=s3cr3t'), '//evil?access_token=[REDACTED]');
  assert.equal(rawTarget('/no-query'), '/no-query');
  assert.doesNotMatch(rawTarget('/a?password=hunter2'), /hunter2/);
  assert.equal(rawTarget('/' + 'x'.repeat(2000)).length, 513);
});
