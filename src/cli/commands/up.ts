import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('up')
    .description('run a whole topology on this machine: CA, authorities, services (mTLS) and gateways')
    .option('-c, --config <file>', 'topology file', 'examples/shop/gatehouse.yaml')
    .option('-s, --state-dir <dir>', 'state directory (endpoints.json, dev CA, logs)', '.gatehouse')
    .option('--ephemeral-ports', 'listen on free ports instead of the ones in the file', false)
    .option('--no-dev', "do not seed demo identities (dev-credentials.json) nor the gateways' revocation-feed clients (register them; set each clientSecretEnv)")
    .addHelpText(
      'after',
      '\nWhen every component answers, writes DIR/endpoints.json and prints "gatehouse: ready".\nLogs of each component go to DIR/logs/. SIGINT/SIGTERM stop everything.',
    )
    .action(async (opts: { config: string; stateDir: string; ephemeralPorts: boolean; dev: boolean }) => {
      const { up } = await import('../up.ts');
      const running = await up({ config: opts.config, stateDir: opts.stateDir, ephemeralPorts: opts.ephemeralPorts, dev: opts.dev });
      const { endpoints } = running;
      const lines = [`trust domain ${endpoints.trustDomain}; CA bundle ${endpoints.caBundle}${endpoints.ca ? `; workload CA ${endpoints.ca}` : ''}`];
      for (const [zone, z] of Object.entries(endpoints.zones))
        lines.push(`zone ${zone}: ${Object.entries(z).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      process.stdout.write(lines.join('\n') + '\n');
      process.stdout.write(`endpoints: ${opts.stateDir}/endpoints.json\ngatehouse: ready\n`);
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        process.stdout.write('gatehouse: stopping\n');
        void running.stop().then(() => process.exit(0));
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
}
