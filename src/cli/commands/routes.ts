import type { Command } from 'commander';
import { usage } from '../usage.ts';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

export function register(program: Command): void {
  program
    .command('routes')
    .description("a zone's compiled route table in the order the gateway matches it: method, host, path, service, auth, policies")
    .requiredOption('-z, --zone <zone>', 'the zone')
    .option('-c, --config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--json', 'one JSON document: [ { name, methods, hosts, path, match, service, auth, policies } ]')
    .action(async (o: { zone: string; config: string; json?: boolean }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { routeTable } = await import('../route-table.ts');
      const { topology } = loadTopology(o.config);
      const table = routeTable(topology, o.zone);
      if (typeof table === 'string') throw usage('routes', table);
      if (o.json) {
        process.stdout.write(JSON.stringify(table) + '\n');
        return;
      }
      const rows = table.map((r) => [
        r.methods.join(','),
        r.hosts ? r.hosts.join(',') : '*',
        r.path,
        r.match,
        r.service,
        r.auth.accept.length === 0 ? 'anonymous' : `${r.auth.accept.join('|')}${r.auth.scopes ? ` ${r.auth.scopes}` : ''}${r.auth.mfa === 'required' ? ' mfa' : ''}`,
        Object.keys(r.policies).join(',') || '-',
        r.name,
      ]);
      const head = ['METHODS', 'HOSTS', 'PATH', 'MATCH', 'SERVICE', 'AUTH', 'POLICIES', 'NAME'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
      for (const r of [head, ...rows]) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ') + '\n');
    });
}
