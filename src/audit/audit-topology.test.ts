import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadTopology, ConfigError, type LoadedTopology } from '../topology/index.ts';
import { auditTopology, auditConfigError } from './audit-topology.ts';
import { RULES } from './rules.ts';

// one topology that breaks most rules, each on a line of its own (marked)
const BAD = `version: 1
trustDomain: bad.test
zones:
  edge:
    gateway:
      listen: 127.0.0.1:8443
      plaintext: true # GH002
      trustedProxies: [10.0.0.1/8] # GH107
    authentication:
      revocationFeed: { clientId: gw, clientSecretEnv: FEED, whenStale: accept } # GH013
    routes:
      - path: /free
        service: free
        methods: [GET, POST] # GH008
        auth: anonymous # GH001
      - path: /w
        service: app
        methods: [PUT] # GH007 GH104
        auth: { accept: [jwt, api_key], prefer: jwt, shadow: true, apiKeyQuery: key } # GH012 GH014
  core:
    gateway: { listen: 127.0.0.1:9443 } # GH011
    authority: { listen: 127.0.0.1:9444, scopes: [a] }
    routes:
      - { path: /db, service: db, auth: jwt }
services:
  free:
    zone: edge
    upstream: http://10.0.0.5:80 # GH003
  app:
    zone: edge
    run: missing.ts # GH106
    sidecar: true
    upstream: https://10.0.0.6:443 # GH105
    allow:
      - { caller: gateway, methods: [GET], paths: [{ path: /w }] }
    egress:
      - db # GH103
      - 0.0.0.0:443 # GH010
      - gateway:core
      - other # GH108
  db:
    zone: core
    run: db.ts
    allow:
      - { caller: gateway, paths: [{ path: /db }] }
      - { caller: app, paths: [{ path: / }] } # GH103
  other:
    zone: edge
    upstream: https://10.0.0.7:443 # GH004
`;

function withTopology<T>(text: string, fn: (loaded: LoadedTopology, file: string) => T): T {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-'));
  try {
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(file, text);
    writeFileSync(path.join(dir, 'db.ts'), 'export async function start() {}\n');
    return fn(loadTopology(file), file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** rule id → the lines marked with it. */
function marked(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  text.split('\n').forEach((line, i) => {
    for (const id of line.match(/GH\d{3}/g) ?? []) out.set(id, [...(out.get(id) ?? []), i + 1]);
  });
  return out;
}

test('each rule finds what it is for, at the line of the field', () => {
  const report = withTopology(BAD, (loaded, file) => auditTopology(loaded, file));
  const found = new Map<string, number[]>();
  for (const f of report.findings) found.set(f.ruleId, [...(found.get(f.ruleId) ?? []), f.line]);
  const expected = marked(BAD);
  // GH006: edge has no authority (reported at the zone's first field)
  expected.set('GH006', [5]);
  // GH005: the gateway routes to free, which allows nobody (reported at the service's first field)
  expected.set('GH005', [27]);
  assert.deepEqual(new Map([...found].sort()), new Map([...expected].sort()));
  for (const f of report.findings) {
    assert.ok(f.fix.length > 0 && f.message.length > 0 && f.path.length > 0, f.ruleId);
    assert.equal(f.severity, RULES.find((r) => r.id === f.ruleId)!.severity);
  }
  assert.deepEqual(report.summary, {
    error: report.findings.filter((f) => f.severity === 'error').length,
    warning: report.findings.filter((f) => f.severity === 'warning').length,
    note: 0,
  });
});

test('access tokens longer than 15 minutes are an error (the schema caps them too)', () => {
  const report = withTopology(BAD, (loaded, file) => {
    loaded.topology.zones.core.authority!.accessTokenTtl = 3600;
    return auditTopology(loaded, file);
  });
  const f = report.findings.find((x) => x.ruleId === 'GH009');
  assert.equal(f?.severity, 'error');
  assert.match(f!.message, /3600 s/);
});

test('a locked private zone, rate-limited anonymous reads and MFA on writes pass', () => {
  const good = `version: 1
trustDomain: good.test
zones:
  edge:
    gateway: { listen: 127.0.0.1:8443 }
    authority: { listen: 127.0.0.1:8444, scopes: [w] }
    routes:
      - { path: /r, service: app, auth: anonymous, policies: { rate_limit: { limit: 10, windowSeconds: 60 } } }
      - { path: /w, service: app, methods: [POST], auth: { accept: [jwt], scopes: [w], mfa: required } }
  core:
    gateway: { listen: 127.0.0.1:9443 }
    authority: { listen: 127.0.0.1:9444, scopes: [w] }
    ingress: { clientCertificate: required }
    routes:
      - { path: /db, service: db, methods: [POST], auth: jwt }
services:
  app:
    zone: edge
    run: db.ts
    allow: [{ caller: gateway, methods: [GET, HEAD, POST], paths: [{ path: /r }, { path: /w }] }]
    egress: ['gateway:core']
  db:
    zone: core
    run: db.ts
    allow: [{ caller: gateway, methods: [POST], paths: [{ path: /db }] }]
`;
  const report = withTopology(good, (loaded, file) => auditTopology(loaded, file));
  assert.deepEqual(report.findings, []);
});

test('a protected route under an anonymous prefix route is found, unless methods or hosts keep them apart', () => {
  const limited = 'policies: { rate_limit: { limit: 10, windowSeconds: 60 } }';
  const text = ['version: 1', 'trustDomain: t.test', 'zones:', '  edge:', '    gateway: { listen: 127.0.0.1:8443 }', '    authority: { listen: 127.0.0.1:8444, scopes: [w] }', '    routes:', ''].join('\n') +
    `      - { name: site, path: /, match: prefix, service: app, auth: anonymous, ${limited} }
      - { name: admin, path: /admin, service: app, auth: jwt }
      - { name: orders, path: /api/orders, match: prefix, service: app, auth: jwt }
      - { name: order, path: '/api/orders/{id}', service: app, auth: jwt }
      - { name: upload, path: /upload, methods: [POST], service: app, auth: { accept: [jwt], mfa: required } }
      - { name: docs, path: /docs, match: prefix, hosts: [docs.example], service: app, auth: anonymous, ${limited} }
      - { name: internal, path: /docs/internal, hosts: [api.example], service: app, auth: jwt }
services:
  app:
    zone: edge
    run: db.ts
    allow: [{ caller: gateway, methods: [GET, HEAD, POST], paths: [{ path: /, match: prefix }] }]
`;
  const report = withTopology(text, (loaded, file) => auditTopology(loaded, file));
  const found = report.findings.filter((f) => f.ruleId === 'GH015');
  // upload: POST only, the anonymous route GET/HEAD only. internal: under site (any host), never under docs (another host)
  assert.deepEqual(found.map((f) => [f.path, f.line]), [['zones.edge.routes[1].path', 9], ['zones.edge.routes[2].path', 10], ['zones.edge.routes[3].path', 11], ['zones.edge.routes[6].path', 14]]);
  assert.match(found[3].message, /anonymous prefix route site$/);
  assert.match(found[0].message, /\/admin\/ and \/admin in other letters match the anonymous prefix route site/);
  assert.doesNotMatch(found[1].message, /\/api\/orders\/ and/, 'a prefix route takes its trailing slash itself');
});

test('rule ids and names are unique', () => {
  assert.equal(new Set(RULES.map((r) => r.id)).size, RULES.length);
  assert.equal(new Set(RULES.map((r) => r.name)).size, RULES.length);
});

test('a topology that does not load: each loader error is a finding at its line (unknown callers and egress targets under their own rules)', () => {
  const text = `version: 1
trustDomain: broken.test
zones:
  edge:
    gateway: { listen: 127.0.0.1:0 }
    routes: [{ path: /x, service: nothere, auth: anonymous }]
services:
  app:
    zone: edge
    upstream: https://10.0.0.6:443
    allow:
      - { caller: ghost, methods: [GET], paths: [{ path: / }] }
    egress: [nobody, 'gateway:nowhere']
`;
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-audit-'));
  try {
    const file = path.join(dir, 'gatehouse.yaml');
    writeFileSync(file, text);
    let report: ReturnType<typeof auditConfigError> | undefined;
    try {
      loadTopology(file);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      report = auditConfigError(error, file);
    }
    assert.ok(report, 'the topology does not load');
    assert.deepEqual(
      report.findings.map((f) => [f.ruleId, f.line, f.path]).sort(),
      [
        ['GH100', 6, 'zones.edge.routes[0].service'],
        ['GH101', 13, 'services.app.egress[0]'],
        ['GH101', 13, 'services.app.egress[1]'],
        ['GH102', 12, 'services.app.allow[0].caller'],
      ],
    );
    assert.deepEqual(report.summary, { error: 4, warning: 0, note: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
