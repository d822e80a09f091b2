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
import { startCaServer, bootstrapIdentity, createK8sAttestor, loadK8sAttestationConfig, caSpiffeId, createJoinToken, revokeCertificate, issueWorkloadIdentity, serviceSpiffeId } from '../src/pki/index.ts';
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

type Listed = { type: string; code: string; pep: string; peer?: string; detail?: string };
async function eventsOf(type: string, want: number): Promise<Listed[]> {
  let events: Listed[] = [];
  for (let i = 0; i < 60; i++) {
    events = (await (await fetch(`${control.adminUrl}/events?type=${type}&since=10m`)).json()) as Listed[];
    if (events.length >= want) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return events;
}

test('issuance is a certificate_issued event of the CA (how, who, the serial); a revocation in the CA list is a certificate_revoked event of the control plane; the same types sent by a workload are refused', async () => {
  const join = createJoinToken({ stateDir: env.stateDir, topology: env.topology, service: 'orders' });
  const issued = await bootstrapIdentity({ caUrl: ca.url, joinToken: join.token, service: 'orders', trustDomain: TD, bundlePem: ca.bundlePem });
  await shipper!.flush();
  const [event] = (await eventsOf('certificate_issued', 1)).filter((e) => e.detail === `serial ${issued.serial}`);
  assert.ok(event, 'the issuance is listed');
  assert.deepEqual([event.pep, event.code, event.peer], [caSpiffeId(TD), 'bootstrap', serviceSpiffeId(TD, 'private', 'orders')]);
  // the control plane watches the CA's list: each serial newly revoked is one event
  revokeCertificate({ stateDir: env.stateDir, serial: issued.serial, reason: 'keyCompromise' });
  const revoked = await eventsOf('certificate_revoked', 1);
  assert.deepEqual(
    revoked.map((e) => [e.code, e.detail]),
    [['revoked', `serial ${issued.serial}`]],
  );
  // a workload of the trust domain cannot speak for the CA
  const orders = await issueWorkloadIdentity(env.stateDir, serviceSpiffeId(TD, 'private', 'orders'), { topology: env.topology });
  const forger = createEventShipper({ url: control.url, identity: () => orders, trustDomain: TD, caBundle: ca.bundlePem, flushMs: 50 });
  try {
    for (const type of ['certificate_issued', 'certificate_revoked'])
      forger.emit({ type: type as 'certificate_issued', code: 'bootstrap', peer: serviceSpiffeId(TD, 'private', 'orders'), detail: 'serial ff' });
    await forger.flush();
  } finally {
    await forger.close();
  }
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await eventsOf('certificate_issued', 0)).filter((e) => e.detail === 'serial ff').length, 0);
  assert.equal((await eventsOf('certificate_revoked', 0)).filter((e) => e.detail === 'serial ff').length, 0);
});
