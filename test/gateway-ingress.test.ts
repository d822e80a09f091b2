// A zone's locked ingress: only workloads of the trust domain whose egress
// names the gateway complete TLS (HTTP/1.1 and HTTP/2, on a protected route),
// a revoked or foreign certificate or none is refused at the TLS layer, and a
// connection from another network is closed before TLS. Through the control
// plane, who may connect follows the topology live.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { request, Agent } from 'undici';
import { initCa, issueWorkloadIdentity, serviceSpiffeId, revokeCertificate, type WorkloadIdentity } from '../src/pki/index.ts';
import { startControlServer } from '../src/control/index.ts';
import { startGateway, type RunningGateway } from '../src/gateway/server.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { startUpstream, tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll } from './support/closers.ts';

const TD = 'ingress.test';
const quiet = createLogger({ name: 'test', level: 'silent' });
const upstream = await startUpstream();
const closer = closeAfterAll();
closer(() => upstream.close());

const topology = (o: { sources?: string; bffEgress?: string } = {}) => `
version: 1
trustDomain: ${TD}
zones:
  edge:
    gateway: { listen: 127.0.0.1:0, tls: dev, admin: { listen: 127.0.0.1:0 } }
    ingress: { clientCertificate: required, sources: ${o.sources ?? '[127.0.0.0/8]'} }
    routes:
      # a protected route: the API key is checked only once TLS admitted the caller
      - { name: orders, path: /orders, service: app, auth: { accept: [api_key] } }
services:
  app: { zone: edge, upstream: ${upstream.url} }
  bff: { zone: edge, upstream: ${upstream.url}, egress: ${o.bffEgress ?? "['gateway:edge']"} }
  other: { zone: edge, upstream: ${upstream.url}, egress: [app] }
`;

const dir = tempDir('gh-ingress-');
const file = path.join(dir, 'gatehouse.yaml');
writeFileSync(file, topology());
await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
const bff = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'bff'));
const other = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'other'));
const foreignDir = tempDir('gh-ingress-foreign-');
await initCa({ stateDir: foreignDir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
const foreign = await issueWorkloadIdentity(foreignDir, serviceSpiffeId(TD, 'edge', 'bff'));

async function gateway(extra: Parameters<typeof startGateway>[0]['bundles'] = undefined, config = file): Promise<RunningGateway> {
  const gw = await startGateway({ config, zone: 'edge', stateDir: dir, logger: quiet, accessLog: false, listen: '127.0.0.1:0', adminListen: '127.0.0.1:0', bundles: extra });
  closer(() => gw.close(100));
  return gw;
}

/** GET /orders over HTTP/1.1 with `id` as client certificate: the status, or the connection error's code. */
async function h1(gw: RunningGateway, id?: WorkloadIdentity): Promise<number | string> {
  const agent = new Agent({ connect: { rejectUnauthorized: false, ...(id ? { cert: id.certPem, key: id.keyPem } : {}) }, pipelining: 0 });
  try {
    const r = await request(`${gw.url}/orders`, { dispatcher: agent });
    await r.body.dump();
    return r.statusCode;
  } catch (error) {
    const e = error as { code?: string; cause?: { code?: string } };
    return e.cause?.code ?? e.code ?? 'error';
  } finally {
    await agent.close();
  }
}

/** The same over HTTP/2. */
function h2(gw: RunningGateway, id?: WorkloadIdentity): Promise<number | string> {
  return new Promise((resolve) => {
    const session = http2.connect(gw.url, { rejectUnauthorized: false, ...(id ? { cert: id.certPem, key: id.keyPem } : {}) });
    const timer = setTimeout(() => {
      resolve('timeout');
      session.destroy();
    }, 5000);
    session.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    session.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    const req = session.request({ ':path': '/orders' });
    req.on('response', (h) => {
      resolve(Number(h[':status']));
      session.close();
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    req.end();
  });
}

const refused = (v: number | string) => typeof v === 'string';
/** Past TLS, the route's own check answers: 401 (no API key), or 429 once the source's failed credentials are throttled. */
const admitted = (v: number | string) => v === 401 || v === 429;

async function ingressMetric(gw: RunningGateway, reason: string): Promise<number> {
  const text = await (await request(`${gw.adminUrl}/metrics`)).body.text();
  return Number(new RegExp(`gatehouse_gateway_ingress_refused_total\\{reason="${reason}",zone="edge"\\} (\\d+)`).exec(text)?.[1] ?? 0);
}

test('only a caller the topology names completes TLS: no certificate, another workload, a foreign CA: refused before any request, over HTTP/1.1 and HTTP/2', async () => {
  const gw = await gateway();
  const seen = upstream.seen.length;
  // the admitted caller reaches the route's own check (401: no API key), over both protocols
  assert.equal(await h1(gw, bff), 401);
  assert.equal(await h2(gw, bff), 401);
  for (const who of [undefined, other, foreign]) {
    const a = await h1(gw, who);
    const b = await h2(gw, who);
    assert.ok(refused(a) && refused(b), `${who?.spiffeId ?? 'no certificate'}: ${a} / ${b}`);
  }
  assert.equal(upstream.seen.length, seen, 'nothing reached the upstream');
  assert.ok((await ingressMetric(gw, 'not_a_caller')) >= 2);
});

test('a revoked certificate of an admitted caller is refused once the CA lists it', async () => {
  const gw = await gateway();
  const victim = await issueWorkloadIdentity(dir, serviceSpiffeId(TD, 'edge', 'bff'));
  assert.ok(admitted(await h1(gw, victim)));
  revokeCertificate({ stateDir: dir, serial: victim.serial, reason: 'test' });
  let got: number | string = 0;
  for (let i = 0; i < 60 && !refused(got); i++) {
    await delay(100);
    got = await h1(gw, victim);
  }
  assert.ok(refused(got), `still ${got}`);
  assert.ok((await ingressMetric(gw, 'certificate_invalid')) >= 1);
  assert.ok(admitted(await h1(gw, bff)), 'the other certificate of the caller still works');
});

test('a connection from a network the ingress does not list is closed before TLS', async () => {
  const closedFile = path.join(dir, 'closed.yaml');
  writeFileSync(closedFile, topology({ sources: "['10.0.0.0/8']" }));
  const gw = await gateway(undefined, closedFile);
  assert.ok(refused(await h1(gw, bff)));
  assert.ok(refused(await h2(gw, bff)));
  assert.ok((await ingressMetric(gw, 'source')) >= 2);
});

test('following the control plane: a caller whose egress is withdrawn is refused at the next connection', async () => {
  const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
  closer(() => control.close());
  const gw = await gateway({ control: control.bundlesUrl, firstWaitMs: 2000 });
  assert.ok(admitted(await h1(gw, bff)));
  const revision = gw.state().revision;
  writeFileSync(file, topology({ bffEgress: '[app]' }));
  for (let i = 0; i < 100 && gw.state().revision === revision; i++) await delay(30);
  assert.ok(refused(await h1(gw, bff)));
  writeFileSync(file, topology());
  for (let i = 0; i < 100 && gw.state().revision === revision + 1; i++) await delay(30);
  assert.ok(admitted(await h1(gw, bff)));
});
