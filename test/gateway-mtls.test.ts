// The gateway reaches https upstreams over mTLS with its own SVID, and talks
// only to the exact service the route names.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { writeFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Agent, request } from 'undici';
import { initCa, issueWorkloadIdentity, revokeCertificate, serviceSpiffeId, trustBundlePath } from '../src/pki/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { startGateway } from '../src/gateway/server.ts';
import { createLogger } from '../src/shared/logger.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';
import { ConfigError } from '../src/topology/config-error.ts';
import { tempDir } from './support/gateway-fixture.ts';

const dir = tempDir('gh-mtls-');
const file = path.join(dir, 'gatehouse.yaml');
const quiet = createLogger({ name: 'test', level: 'silent' });
const servers: https.Server[] = [];
let seenPeers: string[] = [];

async function serve(cert: { cert: string; key: string }, ca: string): Promise<string> {
  const server = https.createServer({ ...cert, ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    seenPeers.push(peer.subjectaltname ?? '');
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const yaml = (upstreams: Record<string, string>) => `version: 1
trustDomain: mtls.test
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 }, accessLog: { enabled: false } }
    routes:
      - { path: /good, service: good, auth: anonymous }
      - { path: /impostor, service: impostor, auth: anonymous }
      - { path: /foreign, service: foreign, auth: anonymous }
      - { path: /revoked, service: revoked, auth: anonymous }
services:
${Object.entries(upstreams)
  .map(([n, u]) => `  ${n}: { zone: edge, upstream: '${u}', circuitBreaker: { failures: 100 } }`)
  .join('\n')}
`;

let agent: Agent;
let gateway: Awaited<ReturnType<typeof startGateway>>;

before(async () => {
  writeFileSync(file, yaml({ good: 'https://127.0.0.1:1', impostor: 'https://127.0.0.1:2', foreign: 'https://127.0.0.1:3', revoked: 'https://127.0.0.1:4' }));
  const { topology } = loadTopology(file);
  await initCa({ stateDir: dir, topology });
  const bundle = readFileSync(trustBundlePath(dir), 'utf8');
  const good = await issueWorkloadIdentity(dir, serviceSpiffeId('mtls.test', 'edge', 'good'), { topology });
  // "impostor" answers with a valid certificate of another service of the trust domain ("good")
  const other = await issueWorkloadIdentity(dir, serviceSpiffeId('mtls.test', 'edge', 'good'), { topology });
  // "foreign" has a certificate from a CA outside the trust domain
  const foreignCa = await openDevCa(path.join(dir, 'foreign'));
  const foreign = await foreignCa.issueServer(['127.0.0.1']);
  // "revoked" has its own certificate, revoked at the CA
  const revoked = await issueWorkloadIdentity(dir, serviceSpiffeId('mtls.test', 'edge', 'revoked'), { topology });
  revokeCertificate({ stateDir: dir, serial: revoked.serial, reason: 'keyCompromise' });
  const upstreams = {
    good: await serve({ cert: good.certPem + good.bundlePem, key: good.keyPem }, bundle),
    revoked: await serve({ cert: revoked.certPem, key: revoked.keyPem }, bundle),
    impostor: await serve({ cert: other.certPem, key: other.keyPem }, bundle),
    foreign: await serve(foreign, bundle),
  };
  writeFileSync(file, yaml(upstreams));
  gateway = await startGateway({ config: file, zone: 'edge', stateDir: dir, logger: quiet, accessLog: false });
  agent = new Agent({ connect: { ca: readFileSync(path.join(dir, 'tls/dev-ca.pem')) } });
});

after(async () => {
  await agent.close();
  await gateway.close();
  for (const s of servers) s.close();
});

test('the upstream sees the gateway SVID as the client certificate', async () => {
  seenPeers = [];
  const res = await request(gateway.url + '/good', { dispatcher: agent });
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), 'ok');
  assert.deepEqual(seenPeers, ['URI:spiffe://mtls.test/zone/edge/gateway']);
});

test('an upstream presenting another service\'s identity, a foreign CA, or its own revoked certificate gets no request (502)', async () => {
  seenPeers = [];
  for (const p of ['/impostor', '/foreign', '/revoked']) {
    const res = await request(gateway.url + p, { dispatcher: agent });
    assert.equal(res.statusCode, 502, p);
    assert.equal(((await res.body.json()) as { code: string }).code, 'bad_gateway');
  }
  assert.deepEqual(seenPeers, [], 'no request reached an impostor or the revoked upstream');
});

test('an https upstream without a trust-domain CA in the state dir is a config error', async () => {
  const bare = tempDir('gh-mtls-noca-');
  const f = path.join(bare, 'g.yaml');
  writeFileSync(f, yaml({ good: 'https://127.0.0.1:1', impostor: 'https://127.0.0.1:2', foreign: 'https://127.0.0.1:3', revoked: 'https://127.0.0.1:4' }));
  await assert.rejects(
    startGateway({ config: f, zone: 'edge', stateDir: bare, logger: quiet, accessLog: false }),
    (e: unknown) => e instanceof ConfigError && /needs the trust-domain CA/.test(e.message),
  );
});
