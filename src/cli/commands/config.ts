import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  const config = program.command('config').description('the topology file as Gatehouse reads it');
  config
    .command('show')
    .description('the effective configuration: the topology with every default filled in (YAML, or --json)')
    .option('-c, --config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--json', 'one JSON document')
    .action(async (o: { config: string; json?: boolean }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { topology } = loadTopology(o.config);
      if (o.json) {
        process.stdout.write(JSON.stringify(topology) + '\n');
        return;
      }
      const { stringify } = await import('yaml');
      process.stdout.write(`# ${o.config}, with every default filled in (gatehouse config show)\n` + stringify(topology, { aliasDuplicateObjects: false }));
    });
}
