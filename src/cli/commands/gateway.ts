import type { Command } from 'commander';
import { usage } from '../usage.ts';
import { availableParallelism } from 'node:os';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  program
    .command('gateway')
    .description("run one zone's gateway (HTTPS edge proxy and policy enforcement point)")
    .option('-c, --config <file>', CONFIG_HELP, defaultConfigPath())
    .requiredOption('-z, --zone <zone>', 'zone whose gateway to run')
    .option('-s, --state-dir <dir>', 'state directory (dev CA, discovered service addresses)', '.gatehouse')
    .option('-w, --workers <n>', 'worker processes (default: the zone setting, else one per core)')
    .option('--listen <host:port>', 'override the listen address')
    .option('--admin-listen <host:port>', 'override the admin listen address')
    .option('--redirect-listen <host:port>', 'override the redirect listener address')
    .option('--control <url>', "follow the control plane (its bundles URL, https://…/v1/bundles): the zone is enforced as its signed bundle says; with none in force every request is refused")
    .option('--bundles <url|dir>', 'follow exported bundles (gatehouse control export) in a folder or on a web server, instead of --control')
    .option('--ca-url <url>', "get the gateway's workload certificate from this CA server with the one-time GATEHOUSE_JOIN_TOKEN (gatehouse ca token --service gateway:<zone>), the trust bundle alone in <state-dir>/pki; absent: from the CA in the state dir")
    .addHelpText(
      'after',
      '\nSignals: SIGHUP reloads the topology (a bad one is refused, the old one keeps serving);\nSIGINT/SIGTERM drain and stop. Admin: GET /healthz /readyz /metrics, POST /reload.',
    )
    .action(async (opts: { config: string; zone: string; stateDir: string; workers?: string; listen?: string; adminListen?: string; redirectListen?: string; control?: string; bundles?: string; caUrl?: string }) => {
      (await import('../../shared/request-load.ts')).tuneForRequestLoad();
      const { loadTopology } = await import('../../topology/load.ts');
      const { topology } = loadTopology(opts.config);
      const gateway = topology.zones[opts.zone]?.gateway;
      if (!gateway) throw usage('gateway', `zone ${JSON.stringify(opts.zone)} has no gateway in ${opts.config}`);
      const workers = opts.workers !== undefined ? Number(opts.workers) : (gateway.workers ?? availableParallelism());
      if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw usage('gateway', '--workers must be a whole number from 1 to 256');
      const joinToken = process.env.GATEHOUSE_JOIN_TOKEN;
      delete process.env.GATEHOUSE_JOIN_TOKEN;
      if (opts.caUrl !== undefined && !joinToken) throw usage('gateway', '--ca-url needs GATEHOUSE_JOIN_TOKEN (gatehouse ca token --service gateway:<zone>)');
      if (opts.caUrl !== undefined && workers !== 1) throw usage('gateway', '--ca-url bootstraps one process (a join token is single use): give --workers 1');
      const { runGatewayProcess } = await import('../../gateway/index.ts');
      await runGatewayProcess({
        config: opts.config,
        zone: opts.zone,
        stateDir: opts.stateDir,
        workers,
        listen: opts.listen,
        adminListen: opts.adminListen,
        redirectListen: opts.redirectListen,
        bundles: { control: opts.control, bundles: opts.bundles },
        ...(opts.caUrl !== undefined ? { bootstrap: { caUrl: opts.caUrl, joinToken: joinToken! } } : {}),
      });
    });
}
