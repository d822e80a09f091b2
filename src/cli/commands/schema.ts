import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('schema')
    .description('print the JSON Schema (2020-12) of gatehouse.yaml, for editors to complete and check it (# yaml-language-server: $schema=…)')
    .action(async () => {
      const { topologyJsonSchema } = await import('../topology-docs.ts');
      process.stdout.write(JSON.stringify(topologyJsonSchema(), null, 2) + '\n');
    });
}
