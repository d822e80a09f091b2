// OpenTelemetry export (gateway.tracing.otlp): one SERVER span per request,
// sent over OTLP/HTTP to a collector (here a real HTTP server decoding the
// OTLP JSON the SDK's exporter sends). The span continues the caller's trace
// and is the parent the upstream is told about; refusals are spans with their
// code; nothing from the query or the headers is in a span; a collector that
// is down costs the requests nothing; off by default.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { startUpstream, startFixture } from './support/gateway-fixture.ts';
import { parseTopology } from '../src/topology/load.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** A collector: every span of every export, with the service name of its resource. */
async function startCollector() {
  const spans: (OtlpSpan & { service: string })[] = [];
  const bodies: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      bodies.push(text);
      assert.equal(req.url, '/v1/traces');
      assert.match(String(req.headers['content-type']), /application\/json/);
      const doc = JSON.parse(text) as { resourceSpans: { resource: { attributes: OtlpSpan['attributes'] }; scopeSpans: { spans: OtlpSpan[] }[] }[] };
      for (const rs of doc.resourceSpans) {
        const service = String(rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue);
        for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    bodies,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : (v.stringValue ?? (v.intValue === undefined ? undefined : Number(v.intValue)));
};

async function until<T>(what: () => T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = what();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out waiting for spans');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const up = await startUpstream();
const collector = await startCollector();
const topology = (tracing: string) => `
version: 1
trustDomain: trace.test
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 }, tracing: ${tracing} }
    routes:
      - { path: /api, match: prefix, methods: [GET, HEAD, POST], service: app, auth: anonymous, limits: { maxBodyBytes: 16 } }
services:
  app: { zone: edge, upstream: ${up.url} }
`;
const fx = await startFixture(topology(`{ otlp: { endpoint: '${collector.url}' } }`));
const agent = new Agent({ connect: { ca: fx.ca } });
after(async () => {
  await agent.close();
  await fx.close();
  await up.close();
  await collector.close();
});

test('a span per request continues the caller trace and is the parent the upstream is told about; nothing of the query or headers is in it', async () => {
  const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const before = up.seen.length;
  const r = await request(`${fx.gateway.url}/api/orders?card=4111111111111111&token=secret-value`, {
    dispatcher: agent,
    headers: { traceparent: incoming, authorization: 'Bearer not-a-real-token-but-secret' },
  });
  assert.equal(r.statusCode, 200);
  await r.body.dump();
  const sent = String(up.seen[before].headers.traceparent);
  const span = await until(() => collector.spans.find((s) => s.traceId === '4bf92f3577b34da6a3ce929d0e0e4736'));
  assert.equal(span.parentSpanId, '00f067aa0ba902b7', "the caller's span is the parent");
  assert.equal(sent, `00-4bf92f3577b34da6a3ce929d0e0e4736-${span.spanId}-01`, "the upstream's parent is the gateway's span");
  assert.equal(span.kind, 2, 'SERVER');
  assert.equal(span.service, 'gatehouse-gateway-edge');
  assert.equal(attr(span, 'http.request.method'), 'GET');
  assert.equal(attr(span, 'http.response.status_code'), 200);
  assert.match(span.name, /^GET /);
  assert.ok(BigInt(span.endTimeUnixNano) >= BigInt(span.startTimeUnixNano));
  const all = collector.bodies.join('\n');
  for (const secret of ['4111111111111111', 'secret-value', 'not-a-real-token', 'card=']) assert.ok(!all.includes(secret), `${secret} is not exported`);
});

test('refusals are spans with their code; a request without a traceparent starts a trace the upstream continues', async () => {
  const tooBig = await request(`${fx.gateway.url}/api/upload`, { dispatcher: agent, method: 'POST', body: 'x'.repeat(64) });
  assert.equal(tooBig.statusCode, 413);
  await tooBig.body.dump();
  const nowhere = await request(`${fx.gateway.url}/nowhere`, { dispatcher: agent });
  assert.equal(nowhere.statusCode, 404);
  await nowhere.body.dump();
  const refused = await until(() => {
    const codes = collector.spans.map((s) => attr(s, 'gatehouse.code'));
    return codes.includes('payload_too_large') && codes.includes('not_found') ? codes : undefined;
  });
  assert.ok(refused.length >= 2);
  const s413 = collector.spans.find((s) => attr(s, 'gatehouse.code') === 'payload_too_large')!;
  assert.equal(attr(s413, 'http.response.status_code'), 413);
  assert.equal(s413.parentSpanId ?? '', '', 'a new trace has no parent');
  const before = up.seen.length;
  const ok = await request(`${fx.gateway.url}/api/fresh`, { dispatcher: agent });
  await ok.body.dump();
  const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(up.seen[before].headers.traceparent));
  assert.ok(sent, 'a sampled new trace');
  const span = await until(() => collector.spans.find((s) => s.traceId === sent[1]));
  assert.equal(span.spanId, sent[2]);
});

test('over HTTP/2 too: the same span, the same parentage', async () => {
  const client = http2.connect(fx.gateway.url, { ca: fx.ca });
  try {
    const before = up.seen.length;
    const incoming = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const status = await new Promise<number>((resolve, reject) => {
      const req = client.request({ ':path': '/api/h2', traceparent: incoming });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    assert.equal(status, 200);
    const span = await until(() => collector.spans.find((s) => s.traceId === '0af7651916cd43dd8448eb211c80319c'));
    assert.equal(span.parentSpanId, 'b7ad6b7169203331');
    assert.equal(String(up.seen[before].headers.traceparent), `00-0af7651916cd43dd8448eb211c80319c-${span.spanId}-01`);
  } finally {
    client.close();
  }
});

test('a collector that is down costs the requests nothing, and the gateway still closes', async () => {
  const dead = await startCollector();
  const url = dead.url;
  await dead.close(); // nothing listens there now
  const fx2 = await startFixture(topology(`{ otlp: { endpoint: '${url}', sampleRatio: 1 } }`));
  const a2 = new Agent({ connect: { ca: fx2.ca } });
  try {
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => request(`${fx2.gateway.url}/api/x`, { dispatcher: a2 }).then(async (r) => (await r.body.dump(), r.statusCode))),
    );
    assert.deepEqual(new Set(answers), new Set([200]));
    assert.ok(performance.now() - started < 10_000);
  } finally {
    await a2.close();
    const closing = performance.now();
    await fx2.close();
    assert.ok(performance.now() - closing < 15_000, 'close is bounded by the exporter timeout');
  }
});

test('sampleRatio 0: no new trace is recorded, a sampled caller is still followed; off by default', async () => {
  const fx0 = await startFixture(topology(`{ otlp: { endpoint: '${collector.url}', sampleRatio: 0 } }`));
  const a0 = new Agent({ connect: { ca: fx0.ca } });
  try {
    const before = up.seen.length;
    const fresh = await request(`${fx0.gateway.url}/api/zero`, { dispatcher: a0 });
    await fresh.body.dump();
    const unsampled = /^00-([0-9a-f]{32})-[0-9a-f]{16}-00$/.exec(String(up.seen[before].headers.traceparent));
    assert.ok(unsampled, 'told upstream: not sampled');
    const followed = await request(`${fx0.gateway.url}/api/zero`, { dispatcher: a0, headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' } });
    await followed.body.dump();
    await until(() => collector.spans.find((s) => s.traceId === '11111111111111111111111111111111'));
    await fx0.close();
    assert.ok(!collector.spans.some((s) => s.traceId === unsampled[1]), 'the unsampled trace was not exported');
  } finally {
    await a0.close();
    await fx0.close();
  }
  const config = parseTopology(topology('{}'));
  assert.deepEqual(config.zones.edge.gateway!.tracing, {});
});

test('hostile tracing config: one error naming the line and field', () => {
  const cases: [string, RegExp][] = [
    [`{ otlp: { endpoint: 'file:///etc/passwd' } }`, /:6:\d+: zones\.edge\.gateway\.tracing\.otlp\.endpoint: an http\(s\) URL of an OTLP\/HTTP traces receiver/],
    [`{ otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces', sampleRatio: 2 } }`, /tracing\.otlp\.sampleRatio: .*(<=|at most) ?1/i],
    [`{ otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces', headers: { a: b } } }`, /tracing\.otlp\.headers: unknown key "headers"/],
    [`{ otlp: {} }`, /tracing\.otlp\.endpoint: /],
  ];
  for (const [yaml, message] of cases) assert.throws(() => parseTopology(topology(yaml)), (e: Error) => (assert.match(e.message, message), true));
});
