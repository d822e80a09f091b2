import { test } from 'node:test';
import assert from 'node:assert/strict';
import { continueTrace } from './trace-context.ts';

test('a new trace and a continued one: the trace id kept, this hop the parent; a malformed traceparent starts over', () => {
  const fresh = continueTrace(undefined, 'vendor=x');
  assert.match(fresh.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'a new trace is not sampled');
  assert.equal(fresh.tracestate, undefined, 'tracestate travels only beside a valid traceparent');
  const inbound = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
  const next = continueTrace(inbound, 'vendor=x');
  assert.equal(next.traceId, 'a'.repeat(32));
  assert.notEqual(next.traceparent.split('-')[2], 'b'.repeat(16));
  assert.equal(next.tracestate, 'vendor=x');
  assert.notEqual(continueTrace(`00-${'0'.repeat(32)}-${'b'.repeat(16)}-01`, undefined).traceId, '0'.repeat(32));
});
