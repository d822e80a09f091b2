// Zone policy defaults and route overrides at the gateway: IP rules and rate
// limits, under spoofed forwarding headers, with RateLimit headers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent, request } from 'undici';
import { startUpstream, startFixture, type Upstream, type Fixture } from './support/gateway-fixture.ts';

let up: Upstream;
let fx: Fixture;
let agent: Agent;

before(async () => {
  up = await startUpstream();
  fx = await startFixture(`version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    policies:
      rate_limit: { limit: 3, windowSeconds: 60, key: [address, route] }
    routes:
      - { name: limited, path: /limited, service: s, auth: anonymous }
      - { name: unlimited, path: /unlimited, service: s, auth: anonymous, policies: { rate_limit: false } }
      - { name: denied, path: /denied, service: s, auth: anonymous, policies: { ip_rules: { deny: ['127.0.0.0/8'] } } }
      - { name: allow-other, path: /allow-other, service: s, auth: anonymous, policies: { ip_rules: { allow: ['10.0.0.0/8', '::ffff:192.168.0.0/112'] } } }
      - { name: shadowed, path: /shadowed, service: s, auth: anonymous, policies: { ip_rules: { deny: ['127.0.0.1'], shadow: true }, rate_limit: false } }
services:
  s: { zone: edge, upstream: '${up.url}' }
`);
  agent = new Agent({ connect: { ca: fx.ca } });
});
after(async () => {
  await agent.close();
  await fx.close();
  await up.close();
});

const get = (p: string, headers: Record<string, string> = {}) => request(fx.gateway.url + p, { dispatcher: agent, headers });

test('the zone rate limit applies per address and route, with RateLimit headers and a 429 problem with Retry-After', async () => {
  const before = up.seen.length;
  for (let i = 0; i < 3; i++) {
    // a client cannot dodge the limit by claiming another address
    const r = await get('/limited', { 'x-forwarded-for': `10.0.0.${i}`, forwarded: `for=10.0.0.${i}`, 'x-real-ip': `10.0.0.${i}` });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['ratelimit-policy']), /q=3;w=60/);
    assert.match(String(r.headers['ratelimit']), /r=\d+;t=\d+/);
    await r.body.dump();
  }
  const refused = await get('/limited', { 'x-forwarded-for': '10.9.9.9' });
  assert.equal(refused.statusCode, 429);
  assert.ok(Number(refused.headers['retry-after']) >= 1);
  assert.equal(refused.headers['content-type'], 'application/problem+json');
  assert.match(String(refused.headers['ratelimit']), /r=0/);
  await refused.body.dump();
  assert.equal(up.seen.length, before + 3);
  for (let i = 0; i < 5; i++) {
    const r = await get('/unlimited');
    assert.equal(r.statusCode, 200, 'rate_limit: false turns the zone default off');
    assert.equal(r.headers['ratelimit-policy'], undefined);
    await r.body.dump();
  }
});

test('IP rules: deny wins, an allow list admits only its blocks, shadow mode only counts', async () => {
  const denied = await get('/denied');
  assert.equal(denied.statusCode, 403);
  assert.equal(((await denied.body.json()) as { code: string }).code, 'forbidden');
  const other = await get('/allow-other', { 'x-forwarded-for': '10.1.2.3' });
  assert.equal(other.statusCode, 403, 'a spoofed X-Forwarded-For from an untrusted peer changes nothing');
  await other.body.dump();
  const shadow = await get('/shadowed');
  assert.equal(shadow.statusCode, 200);
  await shadow.body.dump();
  const metrics = await (await fetch(fx.gateway.adminUrl + '/metrics')).text();
  assert.match(metrics, /gatehouse_gateway_refused_total\{reason="shadow_forbidden",zone="edge"\} 1/);
});

test('Cedar policies on a route: permit by scope and address, forbid wins, deny by default', async () => {
  const upstream = await startUpstream();
  const cedarFx = await startFixture(`version: 1
trustDomain: t
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    routes:
      - name: open
        path: /open
        service: s
        auth: anonymous
        cedar:
          policies: |
            permit(principal, action == Gatehouse::Action::"GET", resource) when { context.ip.isInRange(ip("127.0.0.0/8")) };
            forbid(principal, action, resource) when { context.path == "/open" && context.method == "GET" && context.hour > 24 };
      - name: closed
        path: /closed
        service: s
        auth: anonymous
        cedar: { policies: 'permit(principal, action, resource) when { context.ip.isInRange(ip("10.0.0.0/8")) };' }
      - name: never
        path: /never
        service: s
        auth: anonymous
        cedar:
          policies: |
            permit(principal, action, resource);
            forbid(principal is Gatehouse::Anonymous, action, resource);
services:
  s: { zone: edge, upstream: '${upstream.url}' }
`);
  const a = new Agent({ connect: { ca: cedarFx.ca } });
  try {
    const at = (p: string) => request(cedarFx.gateway.url + p, { dispatcher: a });
    const open = await at('/open');
    assert.equal(open.statusCode, 200);
    await open.body.dump();
    for (const p of ['/closed', '/never']) {
      const r = await at(p);
      assert.equal(r.statusCode, 403, p);
      const body = (await r.body.json()) as { detail: string };
      assert.equal(body.detail, 'denied by policy');
    }
    assert.equal(upstream.seen.length, 1);
  } finally {
    await a.close();
    await cedarFx.close();
    await upstream.close();
  }
});
