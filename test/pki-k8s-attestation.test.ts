// Kubernetes projected service-account token attestation at the CA server:
// tokens signed by a test "cluster issuer" key (jose), each replica and a
// restarted pod bootstrapping with its own token, the token read from the file
// the kubelet writes; the hostile cases (wrong audience, expired, not yet
// valid, another issuer's key, another iss, a service account the config does
// not map, a namespace mismatch, a token for another workload, alg none, HS256
// with the public key, an oversized token, a token without pod binding, a
// long-lived one, a legacy Secret token) each refused with its code and reason,
// logged without the token, and issuing nothing. The config loader names file,
// line and field.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT, UnsecuredJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { makeCaDir, captureLogger, TD } from './support/pki-fixtures.ts';
import {
  startCaServer,
  bootstrapIdentity,
  createK8sAttestor,
  loadK8sAttestationConfig,
  CaRequestError,
  caSpiffeId,
  type CaServer,
} from '../src/pki/index.ts';
import { newKeyAndCsr } from '../src/pki/lib/workload-key.ts';
import { ConfigError } from '../src/topology/index.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';

const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const AUDIENCE = caSpiffeId(TD);
let env: Awaited<ReturnType<typeof makeCaDir>>;
let server: CaServer;
let cluster: { privateKey: CryptoKey; publicKey: CryptoKey };
let other: { privateKey: CryptoKey };
const logs = captureLogger('ca');

const CONFIG = (jwks: string) => `# written by gatehouse export k8s
issuer: ${ISSUER}
audience: ${AUDIENCE}
keys: { jwksFile: ${jwks} }
maxTokenLifetimeSeconds: 3600
serviceAccounts:
  - { namespace: gh-private, serviceAccount: gateway, workload: "gateway:private" }
  - { namespace: gh-private, serviceAccount: orders, workload: orders }
  - { namespace: gh-public, serviceAccount: checkout, workload: checkout }
`;

before(async () => {
  env = await makeCaDir();
  cluster = await generateKeyPair('RS256', { extractable: true });
  other = await generateKeyPair('RS256');
  writeFileSync(path.join(env.stateDir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(cluster.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] }));
  const file = path.join(env.stateDir, 'k8s-attestation.yaml');
  writeFileSync(file, CONFIG('jwks.json'));
  const k8sAttestor = await createK8sAttestor(loadK8sAttestationConfig(file, env.topology));
  server = await startCaServer({ topology: env.topology, stateDir: env.stateDir, logger: logs.logger, k8sAttestor });
});
after(async () => {
  await server.close();
  env.cleanup();
});

interface Pod {
  namespace: string;
  serviceAccount: string;
  name?: string;
}

/** What the kubelet writes into a `serviceAccountToken` projected volume (claims as Kubernetes 1.30 sets them). */
function kubelet(pod: Pod, o: { key?: CryptoKey; aud?: string; iss?: string; lifetime?: number; iatShift?: number; claims?: JWTPayload; alg?: string; kid?: string; sub?: string } = {}) {
  const now = Math.floor(Date.now() / 1000) + (o.iatShift ?? 0);
  const payload: JWTPayload = {
    'kubernetes.io': {
      namespace: pod.namespace,
      pod: { name: pod.name ?? `${pod.serviceAccount}-7d9f-${randomUUID().slice(0, 5)}`, uid: randomUUID() },
      serviceaccount: { name: pod.serviceAccount, uid: randomUUID() },
      node: { name: 'node-1', uid: randomUUID() },
    },
    ...o.claims,
  };
  return new SignJWT(payload)
    .setProtectedHeader({ alg: o.alg ?? 'RS256', kid: o.kid ?? 'k1' })
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE)
    .setSubject(o.sub ?? `system:serviceaccount:${pod.namespace}:${pod.serviceAccount}`)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + (o.lifetime ?? 600))
    .setJti(randomUUID())
    .sign(o.key ?? cluster.privateKey);
}

const GATEWAY: Pod = { namespace: 'gh-private', serviceAccount: 'gateway' };

/** A bootstrap whose answer is a problem: its code and detail. */
async function refused(token: string, service: string, name: string): Promise<{ code: string; status: number; detail: string }> {
  const { csrPem } = await newKeyAndCsr();
  return new Promise((resolve, reject) => {
    const req = https.request(new URL('/v1/bootstrap', server.url), {
      method: 'POST',
      ca: server.bundlePem,
      agent: false,
      checkServerIdentity: () => undefined,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        assert.equal(res.headers['content-type'], 'application/problem+json', `${name}: issued ${text.slice(0, 60)}`);
        const b = JSON.parse(text);
        resolve({ code: b.code, status: res.statusCode!, detail: b.detail });
      });
    });
    req.on('error', reject);
    req.end(JSON.stringify({ service, csr: csrPem }));
  });
}

/** Certificates the CA issued to workloads (its counter). */
const issued = async () => ((await server.registry.getSingleMetric('gatehouse_pki_certificates_issued_total')!.get()).values.reduce((n, v) => n + v.value, 0));

test('each replica and a restarted pod bootstrap with their own projected token, read from the kubelet\'s file', async () => {
  const before = await issued();
  const ids = [];
  for (const name of ['gateway-7d9f-a', 'gateway-7d9f-b']) {
    const file = path.join(env.stateDir, `token-${name}`);
    writeFileSync(file, (await kubelet({ ...GATEWAY, name })) + '\n');
    ids.push(await bootstrapIdentity({ caUrl: server.url, joinToken: `file:${file}`, service: 'gateway:private', trustDomain: TD, bundlePem: server.bundlePem }));
  }
  // the restarted replica: its emptyDir is gone, the kubelet wrote a new token for the new pod
  const file = path.join(env.stateDir, 'token-gateway-7d9f-b');
  writeFileSync(file, await kubelet({ ...GATEWAY, name: 'gateway-7d9f-c' }));
  ids.push(await bootstrapIdentity({ caUrl: server.url, joinToken: `file:${file}`, service: 'gateway:private', trustDomain: TD, bundlePem: server.bundlePem }));
  // the same token once more (a container restart within one pod): still valid until its exp
  ids.push(await bootstrapIdentity({ caUrl: server.url, joinToken: `file:${file}`, service: 'gateway:private', trustDomain: TD, bundlePem: server.bundlePem }));
  for (const id of ids) assert.equal(id.spiffeId, `spiffe://${TD}/zone/private/gateway`);
  assert.equal(new Set(ids.map((i) => i.serial)).size, 4, 'four certificates, four keys');
  assert.equal(await issued(), before + 4);
  const service = await bootstrapIdentity({ caUrl: server.url, joinToken: await kubelet({ namespace: 'gh-private', serviceAccount: 'orders' }), service: 'orders', trustDomain: TD, bundlePem: server.bundlePem });
  assert.equal(service.spiffeId, `spiffe://${TD}/zone/private/svc/orders`);
  // the audit line names the pod the token was bound to
  const line = logs.lines.map((l) => JSON.parse(l)).find((l) => l.via === 'k8s_psat' && l.pod === 'gateway-7d9f-c');
  assert.ok(line, logs.text());
  assert.equal(line.namespace, 'gh-private');
  assert.equal(line.serviceAccount, 'gateway');
  assert.match(line.podUid, /^[0-9a-f-]{36}$/);
  assert.equal(line.node, 'node-1');
  // join tokens still work beside it (the files in pki/tokens), and a missing token file is named
  await assert.rejects(
    bootstrapIdentity({ caUrl: server.url, joinToken: `file:${path.join(env.stateDir, 'absent')}`, service: 'orders', trustDomain: TD, bundlePem: server.bundlePem }),
    /cannot read the token file .*absent: ENOENT/,
  );
});

test('hostile tokens are refused with their reason, issue nothing and are never logged', async () => {
  const before = await issued();
  const hs256 = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(JSON.stringify(await exportJWK(cluster.publicKey))));
  const none = new UnsecuredJWT({
    'kubernetes.io': { namespace: 'gh-private', serviceaccount: { name: 'gateway' }, pod: { name: 'p', uid: 'u' } },
    sub: 'system:serviceaccount:gh-private:gateway',
  })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt()
    .setExpirationTime('10m')
    .encode();
  const huge = await kubelet(GATEWAY, { claims: { padding: 'x'.repeat(9000) } });
  const cases: [string, Promise<string> | string, string, string, RegExp][] = [
    ['wrong audience', kubelet(GATEWAY, { aud: 'https://kubernetes.default.svc' }), 'gateway:private', 'token_invalid', /audience is not this CA/],
    ['expired', kubelet(GATEWAY, { iatShift: -1200, lifetime: 600 }), 'gateway:private', 'token_expired', /expired/],
    ['not yet valid', kubelet(GATEWAY, { iatShift: 600 }), 'gateway:private', 'token_invalid', /not valid yet|issued in the future/],
    ['another issuer key, same kid', kubelet(GATEWAY, { key: other.privateKey }), 'gateway:private', 'token_invalid', /no key of the cluster issuer verifies its signature/],
    ['an unknown kid', kubelet(GATEWAY, { kid: 'rotated-away' }), 'gateway:private', 'token_invalid', /no key of the cluster issuer/],
    ['another iss', kubelet(GATEWAY, { iss: 'https://oidc.other-cluster.example' }), 'gateway:private', 'token_invalid', /issued by another issuer/],
    ['a service account the config does not map', kubelet({ namespace: 'gh-private', serviceAccount: 'default' }), 'gateway:private', 'unknown_workload', /gh-private\/default is not mapped/],
    ['a namespace mismatch', kubelet({ namespace: 'gh-public', serviceAccount: 'gateway' }), 'gateway:private', 'unknown_workload', /gh-public\/gateway is not mapped/],
    ['a token for another workload', kubelet({ namespace: 'gh-private', serviceAccount: 'orders' }), 'gateway:private', 'token_wrong_service', /attests orders, not the workload asked for/],
    ['sub naming another account', kubelet(GATEWAY, { sub: 'system:serviceaccount:gh-private:orders' }), 'gateway:private', 'token_invalid', /sub does not name/],
    ['alg none', none, 'gateway:private', 'token_invalid', /algorithm not accepted/],
    ['HS256 with the public key as secret', hs256, 'gateway:private', 'token_invalid', /algorithm not accepted/],
    ['oversized', huge, 'gateway:private', 'token_invalid', /larger than 8192 bytes/],
    ['not a JWS', 'eyJhbGciOiJSUzI1NiJ9.e30', 'gateway:private', 'token_invalid', /not a compact JWS/],
    ['no pod binding (kubectl create token)', kubelet(GATEWAY, { claims: { 'kubernetes.io': { namespace: 'gh-private', serviceaccount: { name: 'gateway', uid: 'u' } } } }), 'gateway:private', 'token_invalid', /pod binding|bound to a pod/],
    ['a token living a day', kubelet(GATEWAY, { lifetime: 86_400 }), 'gateway:private', 'token_invalid', /lives 86400 s, more than 3600 s/],
  ];
  // a legacy Secret-based token: iss kubernetes/serviceaccount, no aud, no exp
  const legacy = await new SignJWT({ 'kubernetes.io/serviceaccount/namespace': 'gh-private', 'kubernetes.io/serviceaccount/service-account.name': 'gateway' })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer('kubernetes/serviceaccount')
    .setSubject('system:serviceaccount:gh-private:gateway')
    .sign(cluster.privateKey);
  const forever = await new SignJWT({ 'kubernetes.io': { namespace: 'gh-private', pod: { name: 'p', uid: 'u' }, serviceaccount: { name: 'gateway', uid: 'u' } } })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('system:serviceaccount:gh-private:gateway')
    .setIssuedAt()
    .sign(cluster.privateKey);
  cases.push(['a token without exp', forever, 'gateway:private', 'token_invalid', /it has no valid exp/]);
  cases.push(['a legacy Secret token', legacy, 'gateway:private', 'token_invalid', /audience is not this CA|issued by another issuer/]);
  const seen: string[] = [];
  for (const [name, token, service, code, detail] of cases) {
    const t = await token;
    const r = await refused(t, service, name);
    assert.equal(r.code, code, `${name}: ${JSON.stringify(r)}`);
    assert.match(r.detail, detail, name);
    assert.ok(r.status === 401 || r.status === 403, name);
    assert.ok(!logs.text().includes(t.split('.')[2] || t), `${name}: the token is not logged`);
    seen.push(`${name} → ${r.status} ${r.code}: ${r.detail}`);
  }
  assert.equal(await issued(), before, 'nothing issued');
  process.stdout.write(seen.map((s) => `# ${s}\n`).join(''));
});

test('the attestation config names file, line and field of what it refuses', async () => {
  const file = path.join(env.stateDir, 'bad.yaml');
  const check = (text: string, want: RegExp) => {
    writeFileSync(file, text);
    assert.throws(() => loadK8sAttestationConfig(file, env.topology), (e: unknown) => e instanceof ConfigError && want.test(e.message));
  };
  check(CONFIG('jwks.json').replace('workload: checkout', 'workload: "authority:public"'), /serviceAccounts\[2\]\.workload: the topology has no workload "authority:public"/);
  check(CONFIG('jwks.json').replace('workload: orders', 'workload: nope'), /bad\.yaml:8:\d+: serviceAccounts\[1\]\.workload: the topology has no workload "nope"/);
  check(CONFIG('jwks.json').replace('serviceAccount: orders, workload: orders', 'serviceAccount: gateway, workload: orders'), /bad\.yaml:8:\d+: serviceAccounts\[1\]: service account gh-private\/gateway is listed twice/);
  check(CONFIG('jwks.json').replace('serviceAccount: checkout, workload: checkout', 'serviceAccount: checkout, workload: orders'), /serviceAccounts\[2\]\.workload: orders is already the workload of gh-private\/orders/);
  check(CONFIG('jwks.json').replace(`issuer: ${ISSUER}`, 'issuer: http://kubernetes.default.svc'), /bad\.yaml:2:\d+: issuer: must be an https URL/);
  check(CONFIG('jwks.json').replace('namespace: gh-public', 'namespace: "gh public"'), /serviceAccounts\[2\]\.namespace: is not a Kubernetes namespace name/);
  check(CONFIG('jwks.json') + 'allowAll: true\n', /allowAll/);
  // a JWKS file that is missing refuses to start, it never attests without keys
  writeFileSync(file, CONFIG('missing.json'));
  await assert.rejects(createK8sAttestor(loadK8sAttestationConfig(file, env.topology)), /ENOENT/);
});

test('a CA without attestation refuses a service account token as an invalid join token', async () => {
  const plain = await startCaServer({ topology: env.topology, stateDir: env.stateDir });
  try {
    await assert.rejects(
      bootstrapIdentity({ caUrl: plain.url, joinToken: await kubelet(GATEWAY), service: 'gateway:private', trustDomain: TD, bundlePem: plain.bundlePem }),
      (e: unknown) => e instanceof CaRequestError && e.code === 'token_invalid',
    );
  } finally {
    await plain.close();
  }
});

test("keys by discovery: the issuer's openid-configuration names its jwks_uri (https, the given CA), and a document naming another issuer is refused at start", async () => {
  const edge = await openDevCa(path.join(env.stateDir, 'edge'));
  const tls = await edge.issueServer(['localhost']);
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(cluster.publicKey)), kid: 'k1', alg: 'RS256' }] });
  let claimedIssuer = '';
  const seen: string[] = [];
  const oidc = https.createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    seen.push(req.url ?? '');
    const body = req.url === '/.well-known/openid-configuration' ? JSON.stringify({ issuer: claimedIssuer, jwks_uri: `${origin}/openid/v1/jwks` }) : req.url === '/openid/v1/jwks' ? jwks : undefined;
    res.writeHead(body ? 200 : 404, { 'content-type': 'application/json' });
    res.end(body ?? '{}');
  });
  await new Promise<void>((r) => oidc.listen(0, '127.0.0.1', () => r()));
  const origin = `https://localhost:${(oidc.address() as { port: number }).port}`;
  try {
    const file = path.join(env.stateDir, 'discovery.yaml');
    writeFileSync(
      file,
      `issuer: ${origin}\naudience: ${AUDIENCE}\nkeys: { discovery: true, caFile: edge/tls/dev-ca.pem }\nserviceAccounts:\n  - { namespace: gh-private, serviceAccount: gateway, workload: "gateway:private" }\n`,
    );
    claimedIssuer = origin;
    const attestor = await createK8sAttestor(loadK8sAttestationConfig(file, env.topology));
    const who = await attestor.attest(await kubelet({ ...GATEWAY, name: 'gw-1' }, { iss: origin }), 'gateway:private', Date.now());
    assert.equal(who.spiffeId, `spiffe://${TD}/zone/private/gateway`);
    assert.deepEqual(seen, ['/.well-known/openid-configuration', '/openid/v1/jwks']);
    await assert.rejects(attestor.attest(await kubelet(GATEWAY, { iss: origin, key: other.privateKey, kid: 'k2' }), 'gateway:private', Date.now()), /no key of the cluster issuer/);
    claimedIssuer = 'https://evil.example';
    await assert.rejects(createK8sAttestor(loadK8sAttestationConfig(file, env.topology)), /names issuer "https:\/\/evil\.example"/);
  } finally {
    oidc.close();
  }
});
