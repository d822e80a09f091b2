import type { Command } from 'commander';
import { usage } from '../usage.ts';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  program
    .command('sidecar')
    .description('mTLS proxy in front of a service in any language: inbound allow edges, outbound egress allow-list')
    .requiredOption('--service <name>', 'the service this sidecar speaks for')
    .option(
      '--upstream <url>',
      'the application: unix:/path.sock, or http://127.0.0.1:P (then --secret-file is where it reads the shared secret); absent: unix:<state-dir>/run/<service>/app.sock',
    )
    .option('--secret-file <file>', 'where the shared secret the application checks is published (0600, rotated); absent: <state-dir>/run/<service>/sidecar.secret')
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--state-dir <dir>', 'state directory', '.gatehouse')
    .option('--listen <host:port>', 'mTLS listener', '127.0.0.1:0')
    .option(
      '--outbound-listen <where>',
      'the application\'s way out (Host: <service>): unix:/path.sock or a loopback host:port; absent: unix:<state-dir>/run/<service>/outbound.sock',
    )
    .option('--ca-url <url>', 'CA to bootstrap from (with GATEHOUSE_JOIN_TOKEN); absent: issue directly from the CA in the state dir (dev)')
    .option('--control <url>', "follow the control plane (https://…/v1/bundles): edges and egress as the signed bundle says; with none in force everything is refused")
    .option('--bundles <url|dir>', 'follow exported bundles (gatehouse control export) instead of --control')
    .action(
      async (o: { service: string; upstream?: string; secretFile?: string; config: string; stateDir: string; listen: string; outboundListen?: string; caUrl?: string; control?: string; bundles?: string }) => {
      (await import('../../shared/request-load.ts')).tuneForRequestLoad();
      const { readFileSync } = await import('node:fs');
      const path = await import('node:path');
      const { loadTopology } = await import('../../topology/load.ts');
      const pki = await import('../../pki/index.ts');
      const { startSidecar, checkSidecarAddresses, resolveFromEndpoints, jwksFromFile, sidecarPaths, openMeshPolicy, GatehouseError } = await import('../../mesh/index.ts');
      const { createLogger } = await import('../../shared/logger.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const { topology } = loadTopology(o.config);
      const svc = topology.services[o.service];
      if (!svc) throw usage('sidecar', `the topology has no service ${JSON.stringify(o.service)}`);
      const td = topology.trustDomain;
      const FLAGS: Record<string, string> = { upstream: '--upstream', secretFile: '--secret-file', outboundListen: '--outbound-listen', service: '--service', socket: '--state-dir' };
      const addresses = () => {
        const run = sidecarPaths(o.stateDir, o.service);
        const chosen = {
          upstream: o.upstream ?? `unix:${run.socket}`,
          secretFile: o.secretFile ?? run.secretFile,
          outboundListen: o.outboundListen ?? `unix:${run.outboundSocket}`,
        };
        checkSidecarAddresses(chosen);
        return chosen;
      };
      let chosen: ReturnType<typeof addresses>;
      try {
        chosen = addresses();
      } catch (error) {
        // a bad flag is a usage error (exit 2) that names the flag, checked before any certificate is made
        if (!(error instanceof GatehouseError) || error.code !== 'invalid_config') throw error;
        const m = /^(\w+): ([\s\S]*)$/.exec(error.message);
        throw usage('sidecar', m ? `${FLAGS[m[1]] ?? m[1]}: ${m[2]}` : error.message);
      }
      let identity: import('../../pki/index.ts').IdentityManager;
      let revocations: import('../../pki/index.ts').RevocationSource;
      if (o.caUrl) {
        const joinToken = process.env.GATEHOUSE_JOIN_TOKEN;
        if (!joinToken) throw usage('sidecar', 'set GATEHOUSE_JOIN_TOKEN (from `gatehouse ca token --service S`)');
        const bundlePem = readFileSync(pki.trustBundlePath(o.stateDir), 'utf8');
        const first = await pki.bootstrapIdentity({ caUrl: o.caUrl, joinToken, service: o.service, trustDomain: td, bundlePem });
        identity = pki.createIdentityManager({ initial: first, caUrl: o.caUrl, trustDomain: td });
        const feed = pki.createRevocationFeed({ caUrl: o.caUrl, trustDomain: td, bundlePem });
        await feed.ready;
        revocations = feed;
      } else {
        const spiffeId = pki.serviceSpiffeId(td, svc.zone, o.service);
        const first = await pki.issueWorkloadIdentity(o.stateDir, spiffeId, { topology });
        identity = pki.createIdentityManager({ initial: first, renew: (current) => pki.issueWorkloadIdentity(o.stateDir, spiffeId, { topology, parent: current.serial }) });
        revocations = pki.localRevocations(o.stateDir);
      }
      identity.on('alert', (a: unknown) => process.stderr.write(`gatehouse sidecar: ALERT ${JSON.stringify(a)}\n`));
      const { identityKeyPaths } = await import('../../gateway/index.ts');
      const policy = await openMeshPolicy({
        control: o.control,
        bundles: o.bundles,
        service: o.service,
        spiffeId: pki.serviceSpiffeId(td, svc.zone, o.service),
        identity,
        trustDomain: td,
        bundlePem: readFileSync(pki.trustBundlePath(o.stateDir), 'utf8'),
        stateDir: o.stateDir,
        logger: createLogger({ name: `sidecar-${o.service}` }),
      });
      const car = await startSidecar({
        service: o.service,
        topology,
        identity,
        upstream: chosen.upstream,
        secretFile: chosen.secretFile,
        revocations,
        resolve: resolveFromEndpoints(path.join(o.stateDir, 'endpoints.json')),
        // identity tokens of the zone gateway, keys from the file it publishes in the state dir
        identityToken: { keys: jwksFromFile(identityKeyPaths(o.stateDir, svc.zone).jwks), issuer: pki.gatewaySpiffeId(td, svc.zone), algorithms: ['EdDSA'] },
        policy: policy?.source,
        events: policy?.events,
        listen: o.listen,
        outboundListen: chosen.outboundListen,
      });
      announceReady({ component: 'sidecar', service: o.service, endpoints: { service: car.url, outbound: car.outboundUrl } });
      closeOnSignals(async () => {
        identity.close();
        revocations.close();
        await car.close();
        await policy?.close();
      });
      },
    );
}
