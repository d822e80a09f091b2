import { test } from 'node:test';
import assert from 'node:assert/strict';
import ipRules, { type Config } from './index.ts';
import { IpRulesConfig } from './schema.ts';
import { GatehouseError } from '../../../shared/errors.ts';
import type { Exchange } from '../policy.ts';
import type { CompiledRoute } from '../../router.ts';

function exchange(clientAddress: string): Exchange {
  return {
    method: 'GET',
    path: '/',
    query: '',
    host: 'example.test',
    headers: {},
    clientAddress,
    requestId: 'r1',
    zone: 'public',
    route: { name: 'root' } as CompiledRoute,
    now: 0,
    upstreamHeaders: [],
    responseHeaders: {},
    onDone: [],
    pathParams: () => ({}),
    readBody: async () => Buffer.alloc(0),
  };
}

function unit(raw: unknown) {
  const config: Config = IpRulesConfig.parse(raw);
  const state = ipRules.provision(config);
  return (address: string) => ipRules.onRequest(exchange(address), state);
}

const admitted = (d: unknown) => d === undefined;
function refused(d: unknown) {
  assert.ok(d instanceof GatehouseError, 'a refusal');
  assert.equal(d.status, 403);
  assert.equal(d.code, 'forbidden');
  return true;
}

test('schema: defaults, strictness and CIDR validation', () => {
  assert.deepEqual(IpRulesConfig.parse({}), { deny: [], shadow: false });
  assert.deepEqual(IpRulesConfig.parse({ allow: [] }), { allow: [], deny: [], shadow: false });
  assert.throws(() => IpRulesConfig.parse({ allow: ['10.0.0.0/33'] }));
  assert.throws(() => IpRulesConfig.parse({ deny: ['not-an-ip'] }));
  assert.throws(() => IpRulesConfig.parse({ deny: ['2001:db8::/129'] }));
  assert.throws(() => IpRulesConfig.parse({ alow: ['10.0.0.0/8'] }), 'a typo is an error, never a silently disabled rule');
  assert.equal(ipRules.id, 'ip_rules');
  assert.equal(ipRules.phase, 'ip');
});

test('absent allow: everyone not denied is admitted', () => {
  const check = unit({ deny: ['203.0.113.0/24'] });
  assert.ok(admitted(check('198.51.100.7')));
  assert.ok(admitted(check('2001:db8::1')));
  assert.ok(refused(check('203.0.113.9')));
});

test('empty allow: nobody is admitted', () => {
  const check = unit({ allow: [] });
  for (const a of ['127.0.0.1', '10.1.2.3', '::1', '2001:db8::1']) assert.ok(refused(check(a)), a);
});

test('deny wins over allow', () => {
  const check = unit({ allow: ['10.0.0.0/8'], deny: ['10.6.6.0/24'] });
  assert.ok(admitted(check('10.1.2.3')));
  assert.ok(refused(check('10.6.6.6')));
  assert.ok(refused(check('192.168.1.1')), 'outside the allow list');
});

test('IPv6 blocks and single addresses', () => {
  const check = unit({ allow: ['2001:db8:1::/48', '2001:db8:ffff::5'], deny: ['2001:db8:1:bad::/64'] });
  assert.ok(admitted(check('2001:db8:1:2::99')));
  assert.ok(admitted(check('2001:DB8:FFFF::5')), 'case does not matter');
  assert.ok(refused(check('2001:db8:ffff::6')));
  assert.ok(refused(check('2001:db8:1:bad::1')));
  assert.ok(refused(check('2001:db8:2::1')));
  assert.ok(refused(check('10.0.0.1')), 'an IPv4 client is not in an IPv6-only allow list');
});

test('IPv4-mapped IPv6 is the IPv4 address, on both sides', () => {
  // a dual-stack socket reports ::ffff:a.b.c.d; an IPv4 rule applies to it
  const v4rules = unit({ allow: ['192.0.2.0/24'], deny: ['192.0.2.66'] });
  assert.ok(admitted(v4rules('::ffff:192.0.2.10')));
  assert.ok(refused(v4rules('::ffff:192.0.2.66')));
  assert.ok(refused(v4rules('::ffff:198.51.100.1')));
  // a rule written as mapped IPv6 applies to the plain IPv4 address
  const mappedRules = unit({ allow: ['::ffff:192.0.2.0/120'], deny: ['::ffff:192.0.2.66'] });
  assert.ok(admitted(mappedRules('192.0.2.10')));
  assert.ok(refused(mappedRules('192.0.2.66')));
  assert.ok(refused(mappedRules('192.0.3.1')));
});

test('an address that cannot be parsed is refused, even with no allow list', () => {
  const check = unit({ deny: ['203.0.113.0/24'] });
  for (const a of ['', 'unknown', '10.0.0.300', '1.2.3.4, 5.6.7.8', ' 10.0.0.1']) assert.ok(refused(check(a)), JSON.stringify(a));
});

test('the unit returns the denial in shadow mode too (the chain lets it pass)', () => {
  const config = IpRulesConfig.parse({ deny: ['0.0.0.0/0'], shadow: true });
  assert.equal(config.shadow, true);
  const state = ipRules.provision(config);
  assert.ok(refused(ipRules.onRequest(exchange('10.0.0.1'), state)));
});

test('a denial never names the rule that matched', () => {
  const d = unit({ deny: ['203.0.113.0/24'] })('203.0.113.1') as GatehouseError;
  assert.doesNotMatch(d.message, /203\.0\.113/);
});
