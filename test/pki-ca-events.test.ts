// The CA's refusals reach the control plane as security events: a bootstrap
// with a forged join token and one with a service-account token of an
// unmapped account are shipped with the CA's own certificate
// (spiffe://<td>/ca), attributed to it, and listed by the control plane's
// events API with their code; nothing secret travels with them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { makeCaDir, TD, TOPOLOGY_YAML, captureLogger } from './support/pki-fixtures.ts';
import { startCaServer, bootstrapIdentity, createK8sAttestor, loadK8sAttestationConfig, caSpiffeId } from '../src/pki/index.ts';
import { startControlServer, createEventShipper } from '../src/control/index.ts';

const env = await makeCaDir();
const config = path.join(env.stateDir, 'gatehouse.yaml');
writeFileSync(config, TOPOLOGY_YAML);
const control = await startControlServer({ config, stateDir: env.stateDir, logger: captureLogger('control').logger });
const cluster = await generateKeyPair('RS256', { extractable: true });
writeFileSync(path.join(env.stateDir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(cluster.publicKey)), kid: 'k1', alg: 'RS256' }] }));
writeFileSync(
  path.join(env.stateDir, 'att.yaml'),
  `issuer: https://kubernetes.default.svc.cluster.local\naudience: ${caSpiffeId(TD)}\nkeys: { jwksFile: jwks.json }\nserviceAccounts:\n  - { namespace: gh-private, serviceAccount: orders, workload: orders }\n`,
);
let shipper: ReturnType<typeof createEventShipper> | undefined;
const ca = await startCaServer({
  topology: env.topology,
  stateDir: env.stateDir,
  logger: captureLogger('ca').logger,
  k8sAttestor: await createK8sAttestor(loadK8sAttestationConfig(path.join(env.stateDir, 'att.yaml'), env.topology)),
  events: { emit: (e) => shipper?.emit(e) },
});
shipper = createEventShipper({ url: control.url, identity: ca.identity, trustDomain: TD, caBundle: ca.bundlePem, flushMs: 50 });
after(async () => {
  await ca.close();
  await shipper?.close();
  await control.close();
  env.cleanup();
});

test('a refused bootstrap is a request_refused event of the CA at the control plane', async () => {
  const forged = 'ghjt_' + 'A'.repeat(43);
  await assert.rejects(bootstrapIdentity({ caUrl: ca.url, joinToken: forged, service: 'orders', trustDomain: TD, bundlePem: ca.bundlePem }));
  const now = Math.floor(Date.now() / 1000);
  const stranger = await new SignJWT({ 'kubernetes.io': { namespace: 'gh-private', pod: { name: 'p', uid: 'u' }, serviceaccount: { name: 'default', uid: 'u' } } })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer('https://kubernetes.default.svc.cluster.local')
    .setAudience(caSpiffeId(TD))
    .setSubject('system:serviceaccount:gh-private:default')
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(cluster.privateKey);
  await assert.rejects(bootstrapIdentity({ caUrl: ca.url, joinToken: stranger, service: 'orders', trustDomain: TD, bundlePem: ca.bundlePem }));
  await shipper!.flush();
  type Event = { type: string; code: string; pep: string; path?: string; status?: number; detail?: string; source?: string };
  let events: Event[] = [];
  for (let i = 0; i < 40 && events.length < 2; i++) {
    const res = await fetch(`${control.adminUrl}/events?type=request_refused&since=10m`);
    events = ((await res.json()) as Event[]).filter((e) => e.pep === caSpiffeId(TD));
    if (events.length < 2) await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(
    events.map((e) => [e.code, e.status, e.path]),
    [
      ['token_invalid', 401, '/v1/bootstrap'],
      ['unknown_workload', 403, '/v1/bootstrap'],
    ],
  );
  assert.match(events[1].detail!, /gh-private\/default is not mapped/);
  assert.equal(events[0].source, '127.0.0.1');
  assert.ok(!JSON.stringify(events).includes(stranger.split('.')[2]) && !JSON.stringify(events).includes(forged), 'no token in an event');
});
