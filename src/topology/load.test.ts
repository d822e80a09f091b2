import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseTopology, loadTopology, ConfigError, MAX_TOPOLOGY_BYTES } from './index.ts';

const ok = `version: 1
trustDomain: shop.local
zones:
  public:
    gateway:
      listen: 127.0.0.1:8443
    routes:
      - path: /api/catalog
        service: catalog
        auth: anonymous
services:
  catalog:
    zone: public
    upstream: http://127.0.0.1:7000
`;

function issues(text: string): string[] {
  try {
    parseTopology(text, 'g.yaml');
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.message.split('\n');
  }
  assert.fail('expected a ConfigError');
}

test('a valid file gets every secure default', () => {
  const t = parseTopology(ok);
  const gw = t.zones.public.gateway!;
  assert.equal(gw.tls, 'dev');
  assert.equal(gw.plaintext, false);
  assert.deepEqual(gw.trustedProxies, []);
  assert.equal(gw.admin.listen, '127.0.0.1:0');
  assert.equal(gw.headers.hsts, true);
  assert.equal(gw.headers.frameOptions, 'DENY');
  const route = t.zones.public.routes[0];
  assert.equal(route.match, 'exact');
  assert.deepEqual(route.methods, ['GET', 'HEAD']);
  assert.equal(route.allowPathParameters, false);
});

test('an unknown key names file, line, column and path, and suggests the nearest key', () => {
  const lines = issues(ok.replace('    gateway:\n', '    gatway:\n'));
  assert.deepEqual(lines, ['g.yaml:5:5: zones.public.gatway: unknown key "gatway" (did you mean "gateway"?)']);
});

test('a typo deep inside a route is placed on its own line', () => {
  const lines = issues(ok.replace('        service: catalog\n', '        service: catalog\n        mehtods: [GET]\n'));
  assert.deepEqual(lines, ['g.yaml:10:9: zones.public.routes[0].mehtods: unknown key "mehtods" (did you mean "methods"?)']);
});

test('an unknown key far from every valid one gets no suggestion', () => {
  const lines = issues(ok.replace('trustDomain: shop.local\n', 'trustDomain: shop.local\nzzzzzzzzzzzz: 1\n'));
  assert.deepEqual(lines, ['g.yaml:3:1: zzzzzzzzzzzz: unknown key "zzzzzzzzzzzz"']);
});

test('every problem is reported at once, in file order', () => {
  const lines = issues(
    ok
      .replace('shop.local', 'Shop Local')
      .replace('127.0.0.1:8443', '127.0.0.1:99999')
      .replace('path: /api/catalog', 'path: api/catalog'),
  );
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^g\.yaml:2:14: trustDomain: trust domain must be a lowercase DNS-like name$/);
  assert.match(lines[1], /^g\.yaml:6:15: zones\.public\.gateway\.listen: port 99999 is out of range/);
  assert.match(lines[2], /^g\.yaml:8:15: zones\.public\.routes\[0\]\.path: path must start with \//);
});

test('a wrong element in a list names its index', () => {
  const lines = issues(ok.replace('        service: catalog\n', '        service: catalog\n        methods: [GET, FETCH]\n'));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /^g\.yaml:10:24: zones\.public\.routes\[0\]\.methods\[1\]: "FETCH" is not one of GET, HEAD, POST, /);
});

test('a missing required field points at the object that lacks it', () => {
  const lines = issues(ok.replace('        service: catalog\n', ''));
  assert.deepEqual(lines, ['g.yaml:8:9: zones.public.routes[0].service: is required']);
});

test('cross-references: unknown service, service of another zone, route without gateway', () => {
  const text = `version: 1
trustDomain: t
zones:
  a:
    gateway: {}
    routes:
      - { path: /x, service: nope, auth: anonymous }
      - { path: /y, service: inb, auth: anonymous }
  b:
    routes:
      - { path: /z, service: inb, auth: anonymous }
services:
  inb: { zone: b, upstream: 'http://127.0.0.1:1' }
  lost: { zone: c, upstream: 'http://127.0.0.1:2' }
`;
  const lines = issues(text);
  assert.deepEqual(lines, [
    'g.yaml:7:30: zones.a.routes[0].service: unknown service "nope"',
    'g.yaml:8:30: zones.a.routes[1].service: service "inb" is in zone "b"; a gateway routes only to its own zone',
    'g.yaml:11:7: zones.b.routes: routes need a gateway in this zone',
    'g.yaml:14:17: services.lost.zone: unknown zone "c" (zones: a, b)',
  ]);
});

test('duplicate routes, clashing ports, non-canonical route paths and rewrites without prefix are refused', () => {
  const text = `version: 1
trustDomain: t
zones:
  a:
    gateway: { listen: '127.0.0.1:9000', admin: { listen: '127.0.0.1:9000' } }
    routes:
      - { path: /x, service: s, auth: anonymous }
      - { path: /x, service: s, auth: anonymous }
      - { path: /a/../b, service: s, auth: anonymous }
      - { path: /r, service: s, rewrite: { prefix: /q }, auth: anonymous }
services:
  s: { zone: a, upstream: 'http://127.0.0.1:1' }
`;
  const lines = issues(text);
  assert.equal(lines.length, 4, lines.join('\n'));
  assert.match(lines[0], /gateway\.admin\.listen: port 9000 is already used by zones\.a\.gateway\.listen/);
  assert.match(lines[1], /routes\[1\]\.path: duplicates routes\[0\] \(same hosts, match and path, and a method in common\)/);
  assert.match(lines[2], /routes\[2\]\.path: path must be canonical/);
  assert.match(lines[3], /routes\[3\]\.rewrite: rewrite needs match: 'prefix'/);
});

test('hostile YAML: syntax errors, duplicate keys, alias bombs, custom tags, non-mappings', () => {
  assert.match(issues('version: 1\n  bad: [\n')[0], /^g\.yaml:\d+:\d+: YAML structure: /);
  assert.match(issues('version: 1\nversion: 1\n')[0], /^g\.yaml:2:1: YAML structure: .*[Uu]nique|duplicate/);
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 0; i < 8; i++) bomb.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill('*' + String.fromCharCode(97 + i)).join(', ')}]`);
  assert.match(issues(bomb.join('\n') + '\n')[0], /YAML: .*alias/i);
  assert.match(issues('version: !!js/function "x"\n').join('\n'), /YAML|version/);
  assert.deepEqual(issues('- 1\n- 2\n'), ['g.yaml:1:1: the file must be a mapping with version, trustDomain and zones']);
  assert.deepEqual(issues(''), ['g.yaml:1:1: the file must be a mapping with version, trustDomain and zones']);
});

test('oversized and unreadable files are refused before parsing', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-topo-'));
  const big = path.join(dir, 'big.yaml');
  writeFileSync(big, '#'.repeat(MAX_TOPOLOGY_BYTES + 1));
  assert.throws(() => loadTopology(big), /big\.yaml:1:1: file is \d+ bytes; the limit is 1048576/);
  assert.throws(() => loadTopology(path.join(dir, 'missing.yaml')), /missing\.yaml:1:1: cannot read the file \(ENOENT\)/);
  assert.throws(() => loadTopology(dir), /not a regular file/);
});

test('listen addresses: IPv6 in brackets, hosts must be IPs or localhost', () => {
  for (const bad of ['8443', 'example.com:80', '[::1:80', '1.2.3.4:-1', '::1:80', '[1.2.3.4]:80']) {
    const lines = issues(ok.replace('127.0.0.1:8443', `'${bad}'`));
    assert.equal(lines.length, 1, bad);
    assert.match(lines[0], /gateway\.listen: /, bad);
  }
  assert.doesNotThrow(() => parseTopology(ok.replace('127.0.0.1:8443', "'[::1]:8443'")));
  assert.doesNotThrow(() => parseTopology(ok.replace('127.0.0.1:8443', 'localhost:0')));
});

test('trusted proxy CIDRs are validated', () => {
  for (const bad of ['10.0.0.0/33', 'nonsense', '10.0.0.0/8/1', '::/129', '10.0.0.0/x']) {
    const lines = issues(ok.replace('listen: 127.0.0.1:8443', `listen: 127.0.0.1:8443\n      trustedProxies: ['${bad}']`));
    assert.equal(lines.length, 1, bad);
    assert.match(lines[0], /trustedProxies\[0\]: expected an IP address or CIDR block/);
  }
});

test('the example topology is valid', () => {
  const loaded = loadTopology(path.join(import.meta.dirname, '../../examples/shop/gatehouse.yaml'));
  assert.ok(loaded.topology.zones.public.gateway);
  assert.ok(loaded.topology.zones.private.gateway);
});

test('routes may share a path when their methods do not overlap (GET implies HEAD)', () => {
  const text = (a: string, b: string) => `version: 1
trustDomain: t
zones:
  a:
    gateway: {}
    routes:
      - { path: /orders, methods: ${a}, service: s, auth: anonymous }
      - { path: /orders, methods: ${b}, service: s, auth: anonymous }
services:
  s: { zone: a, upstream: 'http://127.0.0.1:1' }
`;
  assert.doesNotThrow(() => parseTopology(text('[GET]', '[POST]')));
  assert.match(issues(text('[GET]', '[HEAD, PUT]'))[0], /routes\[1\]\.path: duplicates routes\[0\]/);
  assert.match(issues(text("'*'", '[DELETE]'))[0], /routes\[1\]\.path: duplicates routes\[0\]/);
});

test('CORS: a wildcard origin with credentials is refused', () => {
  const lines = issues(ok.replace('        service: catalog\n', "        service: catalog\n        cors: { origins: ['*'], credentials: true }\n"));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /routes\[0\]\.cors\.origins: a wildcard origin cannot be combined with credentials/);
});

test('a route without auth is refused: anonymous must be written', () => {
  const lines = issues(ok.replace('        auth: anonymous\n', ''));
  assert.deepEqual(lines, [
    "g.yaml:8:9: zones.public.routes[0].auth: is required: every route says who may call it ('anonymous' must be written)",
  ]);
});

test('a value of the wrong type is named as such, not as missing', () => {
  const lines = issues(ok.replace('listen: 127.0.0.1:8443', "listen: 127.0.0.1:8443\n      limits: { maxBodyBytes: 'lots' }"));
  assert.equal(lines.length, 1);
  assert.match(lines[0], /limits\.maxBodyBytes: expected number, received string$/);
});

test('an enum mismatch lists the allowed values and suggests the nearest', () => {
  const lines = issues(ok.replace('        service: catalog\n', '        service: catalog\n        match: prefx\n'));
  assert.deepEqual(lines, ['g.yaml:10:16: zones.public.routes[0].match: "prefx" is not one of exact, prefix (did you mean "prefix"?)']);
  const far = issues(ok.replace('        service: catalog\n', '        service: catalog\n        match: regex\n'));
  assert.deepEqual(far, ['g.yaml:10:16: zones.public.routes[0].match: "regex" is not one of exact, prefix']);
});

test("a value of a union (auth: anonymus) lists every word it takes, not 'Invalid input'", () => {
  assert.deepEqual(issues(ok.replace('auth: anonymous', 'auth: anonymus')), [
    'g.yaml:10:15: zones.public.routes[0].auth: "anonymus" is not one of anonymous, jwt, api_key, introspection, or a mapping of its options (did you mean "anonymous"?)',
  ]);
});

test('a misspelled service or zone gets a did-you-mean, and a misspelled zone no cascade', () => {
  assert.deepEqual(issues(ok.replace('        service: catalog\n', '        service: catalgo\n')), [
    'g.yaml:9:18: zones.public.routes[0].service: unknown service "catalgo" (did you mean "catalog"?)',
  ]);
  // the service's zone is misspelled: its routes are not reported again as "in zone publc"
  assert.deepEqual(issues(ok.replace('    zone: public', '    zone: publc')), [
    'g.yaml:13:11: services.catalog.zone: unknown zone "publc" (zones: public) (did you mean "public"?)',
  ]);
});

test('a slip of indentation is one message naming the line and the indentation expected, not a cascade', () => {
  const slipped = ok.replace('        service: catalog\n', '       service: catalog\n');
  const lines = issues(slipped);
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0], /^g\.yaml:9:8: YAML structure: line 9 is indented 7 spaces, the lines it belongs under use 6 or 8: check its indentation \(parser: .*\)$/);
  const item = issues(ok.replace('      - path: /api/catalog', '     - path: /api/catalog'));
  assert.equal(item.length, 1, item.join('\n'));
  assert.match(item[0], /^g\.yaml:8:6: YAML structure: line 8 is indented 5 spaces, the lines it belongs under use 4/);
  assert.match(issues(ok.replace('    gateway:', '\tgateway:'))[0], /^g\.yaml:5:1: YAML structure: line 5 is indented with a tab; YAML indents with spaces only/);
});
