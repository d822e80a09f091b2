// W3C trace context through the gateway and the mesh: a valid traceparent is
// continued (same trace id, the gateway as the new parent), anything else
// starts a new trace; the client's own value never reaches the upstream as
// sent; the access log names the trace. A mesh service hands the trace to its
// outgoing calls (createClient `trace`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { startUpstream, startFixture } from './support/gateway-fixture.ts';
import { continueTrace } from '../src/shared/trace-context.ts';

const up = await startUpstream();
const fx = await startFixture(`
version: 1
trustDomain: trace.test
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 } }
    routes:
      - { path: /api, match: prefix, service: app, auth: anonymous }
services:
  app: { zone: edge, upstream: ${up.url} }
`);
const agent = new Agent({ connect: { ca: fx.ca } });
after(async () => {
  await agent.close();
  await fx.close();
  await up.close();
});

const TRACE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

async function seen(headers: Record<string, string | string[]>): Promise<{ traceparent: string; tracestate?: string }> {
  const before = up.seen.length;
  const r = await request(`${fx.gateway.url}/api/x`, { dispatcher: agent, headers });
  assert.equal(r.statusCode, 200);
  await r.body.dump();
  const h = up.seen[before].headers;
  return { traceparent: String(h.traceparent), tracestate: h.tracestate as string | undefined };
}

test('a valid traceparent is continued: same trace id and flags, the gateway as parent; tracestate travels with it', async () => {
  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const got = await seen({ traceparent: incoming, tracestate: 'vendor=abc' });
  const m = TRACE.exec(got.traceparent)!;
  assert.equal(m[1], '4bf92f3577b34da6a3ce929d0e0e4736');
  assert.notEqual(m[2], '00f067aa0ba902b7');
  assert.equal(m[3], '01');
  assert.equal(got.tracestate, 'vendor=abc');
  const line = fx.logs.at(-1)!;
  assert.equal(line.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
});

test('absent, malformed or hostile traceparents start a new trace; tracestate without a valid traceparent is dropped', async () => {
  const bad = [
    undefined,
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // all-zero trace id
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // all-zero parent
    'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version ff is forbidden
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', // upper case
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    'x'.repeat(4000),
  ];
  const ids = new Set<string>();
  for (const value of bad) {
    const got = await seen(value === undefined ? { tracestate: 'vendor=abc' } : { traceparent: value, tracestate: 'vendor=abc' });
    const m = TRACE.exec(got.traceparent);
    assert.ok(m, `${value?.slice(0, 40)}: ${got.traceparent}`);
    assert.notEqual(m[1], '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(got.tracestate, undefined);
    ids.add(m[1]);
  }
  assert.equal(ids.size, bad.length, 'each one a new trace');
  // two traceparent headers are ambiguous: a new trace
  const twice = await seen({ traceparent: ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', '00-11111111111111111111111111111111-00f067aa0ba902b7-01'] });
  assert.ok(!twice.traceparent.includes('4bf92f35') && !twice.traceparent.includes('11111111111'));
  // an oversized tracestate is dropped, the trace continued
  const big = await seen({ traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', tracestate: `v=${'a'.repeat(600)}` });
  assert.equal(big.tracestate, undefined);
  assert.match(big.traceparent, /^00-4bf92f3577b34da6a3ce929d0e0e4736-/);
});

test('continueTrace: each hop a new parent id of the same trace', () => {
  const a = continueTrace(undefined);
  const b = continueTrace(a.traceparent);
  const c = continueTrace(b.traceparent);
  assert.equal(b.traceId, a.traceId);
  assert.equal(c.traceId, a.traceId);
  assert.equal(new Set([a.traceparent, b.traceparent, c.traceparent]).size, 3);
});
