import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a topology file (and the contracts and Cedar policies it names) and report every problem with file:line:column')
    .argument('[file]', CONFIG_HELP, defaultConfigPath())
    .option('--strict', 'warnings are errors (exit 2): route methods a service refuses from the gateway')
    .action(async (file: string, options: { strict?: boolean }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { checkContracts, routeMethodWarnings } = await import('../../gateway/index.ts');
      const { ConfigError } = await import('../../topology/config-error.ts');
      const loaded = loadTopology(file);
      // request contracts (JSON Schema, OpenAPI documents) and Cedar policies compile as the gateway would
      await checkContracts(loaded);
      // methods a route takes that its service's allow edges refuse from the gateway (a 403 behind the gateway)
      const warnings = await routeMethodWarnings(loaded);
      if (options.strict && warnings.length > 0) throw new ConfigError(warnings);
      for (const w of warnings) process.stderr.write(`${w.file}:${w.line}:${w.column}: warning: ${w.path}: ${w.message}\n`);
      const { topology } = loaded;
      const zones = Object.keys(topology.zones);
      const routes = Object.values(topology.zones).reduce((n, z) => n + z.routes.length, 0);
      process.stdout.write(
        `${file}: ok (trust domain ${topology.trustDomain}; ${zones.length} zone(s): ${zones.join(', ')}; ` +
          `${Object.keys(topology.services).length} service(s); ${routes} route(s)` +
          `${warnings.length > 0 ? `; ${warnings.length} warning(s)` : ''})\n`,
      );
    });
}
