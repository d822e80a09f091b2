import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('validate')
    .description('check a topology file (and the contracts and Cedar policies it names) and report every problem with file:line:column')
    .argument('[file]', 'topology file', 'examples/shop/gatehouse.yaml')
    .action(async (file: string) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { checkContracts } = await import('../../gateway/contracts.ts');
      const loaded = loadTopology(file);
      // request contracts (JSON Schema, OpenAPI documents) and Cedar policies compile as the gateway would
      await checkContracts(loaded);
      const { topology } = loaded;
      const zones = Object.keys(topology.zones);
      const routes = Object.values(topology.zones).reduce((n, z) => n + z.routes.length, 0);
      process.stdout.write(
        `${file}: ok (trust domain ${topology.trustDomain}; ${zones.length} zone(s): ${zones.join(', ')}; ` +
          `${Object.keys(topology.services).length} service(s); ${routes} route(s))\n`,
      );
    });
}
