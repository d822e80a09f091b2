import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('sidecar')
    .description('mTLS proxy in front of a service in any language: inbound allow edges, outbound egress allow-list')
    .requiredOption('--service <name>', 'the service this sidecar speaks for')
    .requiredOption('--upstream <url>', 'the application, plain HTTP on loopback (http://127.0.0.1:P)')
    .option('--config <file>', 'topology file', 'examples/shop/gatehouse.yaml')
    .option('--state-dir <dir>', 'state directory', '.gatehouse')
    .option('--listen <host:port>', 'mTLS listener', '127.0.0.1:0')
    .option('--outbound-listen <host:port>', 'loopback listener for the application\'s outbound calls (Host: <service>)', '127.0.0.1:0')
    .option('--ca-url <url>', 'CA to bootstrap from (with GATEHOUSE_JOIN_TOKEN); absent: issue directly from the CA in the state dir (dev)')
    .action(async (o: { service: string; upstream: string; config: string; stateDir: string; listen: string; outboundListen: string; caUrl?: string }) => {
      const { readFileSync } = await import('node:fs');
      const path = await import('node:path');
      const { loadTopology } = await import('../../topology/load.ts');
      const pki = await import('../../pki/index.ts');
      const { startSidecar, resolveFromEndpoints, jwksFromFile } = await import('../../mesh/index.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const { topology } = loadTopology(o.config);
      const svc = topology.services[o.service];
      if (!svc) throw new Error(`the topology has no service ${JSON.stringify(o.service)}`);
      const td = topology.trustDomain;
      let identity: import('../../pki/index.ts').IdentityManager;
      let revocations: import('../../pki/index.ts').RevocationSource;
      if (o.caUrl) {
        const joinToken = process.env.GATEHOUSE_JOIN_TOKEN;
        if (!joinToken) throw new Error('set GATEHOUSE_JOIN_TOKEN (from `gatehouse ca token --service S`)');
        const bundlePem = readFileSync(pki.trustBundlePath(o.stateDir), 'utf8');
        const first = await pki.bootstrapIdentity({ caUrl: o.caUrl, joinToken, service: o.service, trustDomain: td, bundlePem });
        identity = pki.createIdentityManager({ initial: first, caUrl: o.caUrl, trustDomain: td });
        const feed = pki.createRevocationFeed({ caUrl: o.caUrl, trustDomain: td, bundlePem });
        await feed.ready;
        revocations = feed;
      } else {
        const spiffeId = pki.serviceSpiffeId(td, svc.zone, o.service);
        const first = await pki.issueWorkloadIdentity(o.stateDir, spiffeId, { topology });
        identity = pki.createIdentityManager({ initial: first, renew: () => pki.issueWorkloadIdentity(o.stateDir, spiffeId, { topology }) });
        revocations = pki.localRevocations(o.stateDir);
      }
      identity.on('alert', (a: unknown) => process.stderr.write(`gatehouse sidecar: ALERT ${JSON.stringify(a)}\n`));
      const { identityKeyPaths } = await import('../../gateway/policies/authentication/identity-token.ts');
      const car = await startSidecar({
        service: o.service,
        topology,
        identity,
        upstream: o.upstream,
        revocations,
        resolve: resolveFromEndpoints(path.join(o.stateDir, 'endpoints.json')),
        // identity tokens of the zone gateway, keys from the file it publishes in the state dir
        identityToken: { keys: jwksFromFile(identityKeyPaths(o.stateDir, svc.zone).jwks), issuer: pki.gatewaySpiffeId(td, svc.zone), algorithms: ['EdDSA'] },
        listen: o.listen,
        outboundListen: o.outboundListen,
      });
      announceReady({ component: 'sidecar', service: o.service, endpoints: { service: car.url, outbound: car.outboundUrl } });
      closeOnSignals(async () => {
        identity.close();
        revocations.close();
        await car.close();
      });
    });
}
