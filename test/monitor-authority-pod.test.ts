// An authority away from the CA (a Kubernetes pod: the trust bundle alone in
// its state dir) takes its workload identity from the CA server with its
// projected service-account token (gatehouse authority --control … --ca-url …,
// GATEHOUSE_JOIN_TOKEN=file:…), then follows its bundle and ships its events
// like one beside the CA. A token of another account gets it nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { initCa, startCaServer, createK8sAttestor, loadK8sAttestationConfig, caSpiffeId, trustBundlePath } from '../src/pki/index.ts';
import { authoritySpiffeId } from '../src/pki/spiffe-id.ts';
import { startControlServer } from '../src/control/index.ts';
import { startAuthority } from '../src/authority/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { captureLogger } from './support/pki-fixtures.ts';
import { closeAfterAll, until } from './support/closers.ts';

const TD = 'authority-pod.test';
const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const quiet = createLogger({ name: 'test', level: 'silent' });
const closer = closeAfterAll();
const caDir = tempDir('gh-authority-pod-ca-');
const file = path.join(caDir, 'gatehouse.yaml');
writeFileSync(file, `version: 1\ntrustDomain: ${TD}\nzones:\n  public:\n    authority: { listen: 127.0.0.1:0, scopes: [orders:read] }\n`);
const topology = loadTopology(file);
await initCa({ stateDir: caDir, topology: topology.topology, passphrase: 'correct horse battery staple' });
const control = await startControlServer({ config: file, stateDir: caDir, logger: quiet });
closer(() => control.close());
// the cluster's service-account issuer (its key here; its JWKS is what the CA is given)
const cluster = await generateKeyPair('RS256', { extractable: true });
writeFileSync(path.join(caDir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(cluster.publicKey)), kid: 'k1', alg: 'RS256' }] }));
writeFileSync(
  path.join(caDir, 'att.yaml'),
  `issuer: ${ISSUER}\naudience: ${caSpiffeId(TD)}\nkeys: { jwksFile: jwks.json }\nserviceAccounts:\n  - { namespace: gh-public, serviceAccount: authority, workload: 'authority:public' }\n`,
);
const caLog = captureLogger('ca');
const ca = await startCaServer({
  topology: topology.topology,
  stateDir: caDir,
  logger: caLog.logger,
  k8sAttestor: await createK8sAttestor(loadK8sAttestationConfig(path.join(caDir, 'att.yaml'), topology.topology)),
});
closer(() => ca.close());

/** A pod's state dir: the trust bundle (a ConfigMap in the export), and its service-account token in a file. */
async function pod(name: string, serviceAccount: string): Promise<{ stateDir: string; tokenFile: string }> {
  const stateDir = tempDir(`gh-authority-pod-${name}-`);
  mkdirSync(path.dirname(trustBundlePath(stateDir)), { recursive: true });
  copyFileSync(trustBundlePath(caDir), trustBundlePath(stateDir));
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ 'kubernetes.io': { namespace: 'gh-public', pod: { name, uid: `uid-${name}` }, serviceaccount: { name: serviceAccount, uid: 'u' } } })
    .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
    .setIssuer(ISSUER)
    .setAudience(caSpiffeId(TD))
    .setSubject(`system:serviceaccount:gh-public:${serviceAccount}`)
    .setIssuedAt(now)
    .setExpirationTime(now + 600)
    .sign(cluster.privateKey);
  const tokenFile = path.join(stateDir, 'token');
  writeFileSync(tokenFile, token, { mode: 0o600 });
  return { stateDir, tokenFile };
}

/** The authority of zone public in pod `p`, following the control plane, its identity from the CA server. */
const startInPod = (p: { stateDir: string; tokenFile: string }) =>
  startAuthority({
    topology: loadTopology(file),
    zone: 'public',
    stateDir: p.stateDir,
    dev: true,
    logger: quiet,
    control: control.bundlesUrl,
    bootstrap: { caUrl: ca.url, joinToken: `file:${p.tokenFile}` },
  });

test('an authority in a pod bootstraps its identity with its service-account token, follows its bundle and is listed by the control plane', async () => {
  const p = await pod('authority-7f9c-a', 'authority');
  const auth = await startInPod(p);
  closer(() => auth.close());
  assert.equal(auth.spiffeId, authoritySpiffeId(TD, 'public'));
  const pep = await until('authority in status', async () => control.status().peps.find((x) => x.id === auth.spiffeId), (x) => x !== undefined && x.revision === control.revision());
  assert.equal(pep!.kind, 'authority');
  assert.match(caLog.text(), /authority-7f9c-a/, "the CA's issuance line names the pod");
  // it serves: a client of the zone gets a token
  const c = auth.devCredentials!.clients.find((x) => x.grant_types.includes('client_credentials') && x.client_secret)!;
  assert.ok(c, 'a dev client');
});

test("a service-account token of another account gets the authority no identity: it does not start", async () => {
  const p = await pod('intruder-1', 'default');
  await assert.rejects(
    startInPod(p),
    (e: Error) => /not mapped|unknown_workload|CA refused/.test(e.message),
  );
  assert.doesNotMatch(caLog.text(), /intruder-1[^\n]*issued|certificate issued[^\n]*intruder-1/);
});
