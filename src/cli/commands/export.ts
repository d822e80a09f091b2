import type { Command } from 'commander';

const CONFIG = process.env.GATEHOUSE_CONFIG ?? 'gatehouse.yaml';

export function register(program: Command): void {
  const exporter = program.command('export').description('write what the topology declares in the formats of the machines it runs on');

  exporter
    .command('nftables')
    .description('the nftables ruleset of one host of the hosts: mapping (default drop in and out, exactly its flows), on stdout for nft -f')
    .option('--config <file>', 'topology file (default $GATEHOUSE_CONFIG, else ./gatehouse.yaml)', CONFIG)
    .requiredOption('--host <name>', 'the host (a key of hosts:)')
    .action(async (o: { config: string; host: string }) => {
      const { loadTopology } = await import('../../topology/index.ts');
      const { exportNftables } = await import('../../deploy/index.ts');
      process.stdout.write(exportNftables(loadTopology(o.config), o.host));
    });
}
