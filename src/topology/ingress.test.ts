// Zone ingress: each hostile or unsafe value is one error naming file, line and field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTopology, ConfigError } from './index.ts';
import { ingressCidrProblem } from './primitives.ts';

const topology = (ingress: string, gateway = '{ listen: 127.0.0.1:0 }') => `version: 1
trustDomain: shop.local
zones:
  private:
    gateway: ${gateway}
    ingress: ${ingress}
services: {}
`;

function issues(text: string): string[] {
  try {
    parseTopology(text, 'g.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message.split('\n');
  }
  return [];
}

test('a locked ingress loads: client certificates required, loopback and one private network', () => {
  const t = parseTopology(topology("{ clientCertificate: required, sources: [127.0.0.0/8, '10.20.0.0/16', '::1', 'fd00:1::/32'] }"), 'g.yaml');
  assert.deepEqual(t.zones.private.ingress, { clientCertificate: 'required', sources: ['127.0.0.0/8', '10.20.0.0/16', '::1', 'fd00:1::/32'] });
});

test('ingress sources: too wide, host bits, not an address, empty list: one error each, at the field', () => {
  const cases: [string, RegExp][] = [
    ["{ sources: ['0.0.0.0/0'] }", /g\.yaml:6:\d+: zones\.private\.ingress\.sources\[0\]: 0\.0\.0\.0\/0 is wider than \/8/],
    ["{ sources: ['10.0.0.0/7'] }", /sources\[0\]: 10\.0\.0\.0\/7 is wider than \/8/],
    ["{ sources: ['::/0'] }", /sources\[0\]: ::\/0 is wider than \/32/],
    ["{ sources: ['127.0.0.1/8'] }", /sources\[0\]: 127\.0\.0\.1\/8 has host bits set/],
    ["{ sources: ['10.0.0.0/8', 'localhost'] }", /sources\[1\]: "localhost" is not an IP address or CIDR block/],
    ["{ sources: ['10.0.0.0/33'] }", /not an IP address or CIDR block/],
    ["{ sources: ['10.0.0.0/8/8'] }", /not an IP address or CIDR block/],
    ['{ sources: [] }', /sources: sources lists at least one network/],
    ['{ clientCertificate: always }', /clientCertificate/],
    ['{ clientCertificate: required, extra: 1 }', /extra/],
  ];
  for (const [ingress, expected] of cases) {
    const lines = issues(topology(ingress));
    assert.equal(lines.length, 1, `${ingress}: ${lines.join(' | ')}`);
    assert.match(lines[0], expected, ingress);
  }
});

test('ingress without a gateway, and client certificates on a plaintext gateway, are refused', () => {
  const none = issues(topology('{ sources: [127.0.0.0/8] }').replace('    gateway: { listen: 127.0.0.1:0 }\n', ''));
  assert.match(none.join('\n'), /zones\.private\.ingress: ingress locks the zone's gateway; this zone has none/);
  const plain = issues(topology('{ clientCertificate: required }', '{ listen: 127.0.0.1:0, plaintext: true }'));
  assert.match(plain.join('\n'), /ingress\.clientCertificate: client certificates need an HTTPS gateway/);
});

test('ingressCidrProblem: boundaries of both families', () => {
  assert.equal(ingressCidrProblem('10.0.0.0/8'), undefined);
  assert.equal(ingressCidrProblem('255.255.255.255'), undefined);
  assert.equal(ingressCidrProblem('2001:db8::/32'), undefined);
  assert.equal(ingressCidrProblem('::ffff:10.0.0.0/104'), undefined);
  assert.match(ingressCidrProblem('2001:db8::1/32')!, /host bits/);
  assert.match(ingressCidrProblem('10.0.0.0/-1')!, /not an IP address/);
});
