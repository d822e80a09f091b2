import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('version')
    .description('the version of Gatehouse, and of the Node.js and OpenSSL it runs on')
    .option('--json', 'one JSON document: { gatehouse, node, openssl }')
    .action(async (o: { json?: boolean }) => {
      const { readFileSync } = await import('node:fs');
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
      const v = { gatehouse: pkg.version, node: process.versions.node, openssl: process.versions.openssl };
      process.stdout.write(o.json ? JSON.stringify(v) + '\n' : `gatehouse ${v.gatehouse}\nnode ${v.node}\nopenssl ${v.openssl}\n`);
    });
}
