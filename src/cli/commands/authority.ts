import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';
import { usage } from '../usage.ts';

export function register(program: Command): void {
  program
    .command('authority')
    .description("run a zone's OAuth 2 / OpenID Connect authority (HTTPS)")
    .requiredOption('--config <file>', CONFIG_HELP, defaultConfigPath())
    .requiredOption('--zone <zone>', 'the zone whose authority to run')
    .option('--state-dir <dir>', 'state directory', '.gatehouse')
    .option('--listen <host:port>', "override the zone's authority listen address")
    .option('--dev', 'seed demo clients and a demo user (with TOTP) and report them', false)
    .option('--control <url>', 'follow the control plane (its bundles URL, https://…/v1/bundles): quarantines and revoked tokens from its signed bundle, events sent there (default $GATEHOUSE_CONTROL_URL)')
    .option('--ca-url <url>', "with --control: take the authority's workload certificate from this CA server (GATEHOUSE_JOIN_TOKEN: a join token, or file:<path> of a projected service-account token) instead of the CA in the state dir")
    .action(async (opts: { config: string; zone: string; stateDir: string; listen?: string; dev: boolean; control?: string; caUrl?: string }) => {
      const joinToken = process.env.GATEHOUSE_JOIN_TOKEN;
      delete process.env.GATEHOUSE_JOIN_TOKEN;
      if (opts.caUrl !== undefined && !joinToken) throw usage('authority', '--ca-url needs GATEHOUSE_JOIN_TOKEN (a join token, or file:<path> of a projected service-account token)');
      const control = opts.control ?? (process.env.GATEHOUSE_CONTROL_URL || undefined);
      if (opts.caUrl !== undefined && control === undefined) throw usage('authority', '--ca-url is for the identity an authority following the control plane needs: give --control too');
      const { loadTopology } = await import('../../topology/load.ts');
      const { startAuthority } = await import('../../authority/index.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const running = await startAuthority({
        topology: loadTopology(opts.config),
        zone: opts.zone,
        stateDir: opts.stateDir,
        dev: opts.dev,
        listen: opts.listen,
        control,
        bootstrap: opts.caUrl !== undefined ? { caUrl: opts.caUrl, joinToken: joinToken! } : undefined,
      });
      closeOnSignals(() => running.close());
      announceReady({
        component: 'authority',
        zone: opts.zone,
        endpoints: { authority: running.url },
        devCredentials: running.devCredentials,
        devFeedClient: running.devFeedClient,
      });
    });
}
