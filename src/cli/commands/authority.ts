import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

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
    .action(async (opts: { config: string; zone: string; stateDir: string; listen?: string; dev: boolean; control?: string }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { startAuthority } = await import('../../authority/index.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const running = await startAuthority({
        topology: loadTopology(opts.config),
        zone: opts.zone,
        stateDir: opts.stateDir,
        dev: opts.dev,
        listen: opts.listen,
        control: opts.control,
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
