// A zone gateway that does not run beside the CA (a Kubernetes pod) gets its
// workload certificate the way services do: a one-time join token bound to
// `gateway:<zone>`, redeemed at the CA server. The token names one identity:
// it bootstraps that gateway and nothing else.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeCaDir, TD } from './support/pki-fixtures.ts';
import { startCaServer, createJoinToken, bootstrapIdentity, renewIdentity, CaRequestError, GatehouseError, type CaServer } from '../src/pki/index.ts';

let env: Awaited<ReturnType<typeof makeCaDir>>;
let server: CaServer;
before(async () => {
  env = await makeCaDir();
  server = await startCaServer({ topology: env.topology, stateDir: env.stateDir });
});
after(async () => {
  await server.close();
  env.cleanup();
});

const token = (service: string) => createJoinToken({ stateDir: env.stateDir, topology: env.topology, service }).token;
const boot = (joinToken: string, service: string) => bootstrapIdentity({ caUrl: server.url, joinToken, service, trustDomain: TD, bundlePem: server.bundlePem });

test('a gateway join token bootstraps that zone gateway, which renews over mTLS like a service', async () => {
  const first = await boot(token('gateway:private'), 'gateway:private');
  assert.equal(first.spiffeId, `spiffe://${TD}/zone/private/gateway`);
  const renewed = await renewIdentity({ caUrl: server.url, trustDomain: TD, current: first });
  assert.equal(renewed.spiffeId, first.spiffeId);
});

test('a gateway token is that gateway only: not a service, not another zone, once', async () => {
  const t = token('gateway:private');
  await assert.rejects(boot(t, 'orders'), (e: unknown) => e instanceof CaRequestError && e.status === 403);
  await assert.rejects(boot(t, 'gateway:public'), (e: unknown) => e instanceof CaRequestError && e.status === 403);
  await boot(t, 'gateway:private');
  await assert.rejects(boot(t, 'gateway:private'), (e: unknown) => e instanceof CaRequestError && e.status === 401);
  // a service token never makes a gateway
  await assert.rejects(boot(token('orders'), 'gateway:private'), (e: unknown) => e instanceof CaRequestError && e.status === 403);
  // a zone without a gateway, or an unknown zone, gets no token
  for (const bad of ['gateway:nowhere', 'gateway:', 'gateway:private/../public'])
    assert.throws(() => token(bad), (e: unknown) => e instanceof GatehouseError && e.code === 'unknown_workload', bad);
});
