import type { Command } from 'commander';
import { usage } from '../usage.ts';

function milliseconds(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(value.trim());
  if (!m) throw usage('up', `expected a duration like 10s or 500ms, got ${JSON.stringify(value)}`);
  return Math.round(Number(m[1]) * (m[2] === 'ms' ? 1 : 1000));
}

export function register(program: Command): void {
  program
    .command('up')
    .description('run a whole topology on this machine: CA, authorities, services (mTLS) and gateways, each supervised')
    .option('-c, --config <file>', 'topology file', 'examples/shop/gatehouse.yaml')
    .option('-s, --state-dir <dir>', 'state directory (endpoints.json, dev CA, logs)', '.gatehouse')
    .option('--ephemeral-ports', 'listen on free ports instead of the ones in the file', false)
    .option('--no-dev', "do not seed demo identities (dev-credentials.json) nor the gateways' revocation-feed clients (register them; set each clientSecretEnv)")
    .option('--fail-fast', 'stop everything when any component exits (no restarts)', false)
    .option('--drain-timeout <duration>', 'how long gateways drain in-flight requests on shutdown (10s, 500ms)', milliseconds, 10_000)
    .option('--admin-listen <host:port>', "up's own loopback admin listener (GET /healthz, GET /readyz)", '127.0.0.1:0')
    .addHelpText(
      'after',
      [
        '',
        'When every component answers, writes DIR/endpoints.json and prints "gatehouse: ready"',
        '("gatehouse: degraded: …" when a component failed at start; the rest serves).',
        'Logs of each component go to DIR/logs/. A component that crashes is restarted',
        '(backoff 0.5 s doubling to 30 s, with jitter); GET <up.admin>/readyz lists the unhealthy ones.',
        'SIGINT/SIGTERM: gateways drain first, then services, authorities, the CA; exit 0 when all',
        'stopped cleanly, at the latest drain timeout + 2 s. A second signal does not cut the drain.',
      ].join('\n'),
    )
    .action(
      async (opts: { config: string; stateDir: string; ephemeralPorts: boolean; dev: boolean; failFast: boolean; drainTimeout: number; adminListen: string }) => {
        const { up } = await import('../up.ts');
        const session = up({
          config: opts.config,
          stateDir: opts.stateDir,
          ephemeralPorts: opts.ephemeralPorts,
          dev: opts.dev,
          failFast: opts.failFast,
          drainTimeoutMs: opts.drainTimeout,
          adminListen: opts.adminListen,
        });
        // from the start, so a signal during bring-up is an ordered stop too
        let signals = 0;
        const stop = (signal: string) => {
          if (signals++ > 0) {
            process.stdout.write(`gatehouse: ${signal}: already stopping (drain ≤ ${opts.drainTimeout} ms)\n`);
            return;
          }
          process.stdout.write('gatehouse: stopping\n');
          void session.stop();
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
        // a failed bring-up is reported by main (exit 1, or 2 for a config error) once everything has stopped
        let failed = false;
        void session.finished.then((code) => failed || process.exit(code));
        let result: Awaited<typeof session.ready>;
        try {
          result = await session.ready;
        } catch (error) {
          if (signals > 0) return; // stopped on request: `finished` exits
          failed = true;
          await session.stop();
          throw error;
        }
        const { endpoints, unhealthy } = result;
        const lines = [`trust domain ${endpoints.trustDomain}; CA bundle ${endpoints.caBundle}${endpoints.ca ? `; workload CA ${endpoints.ca}` : ''}`];
        if (endpoints.control)
          lines.push(`control plane ${endpoints.control}: every gateway, service and sidecar enforces its signed bundle (gatehouse status --state-dir ${opts.stateDir})`);
        for (const [zone, z] of Object.entries(endpoints.zones))
          lines.push(`zone ${zone}: ${Object.entries(z).map(([k, v]) => `${k} ${v}`).join(', ')}`);
        process.stdout.write(lines.join('\n') + '\n');
        process.stdout.write(`endpoints: ${opts.stateDir}/endpoints.json\n`);
        if (unhealthy.length === 0) {
          process.stdout.write('gatehouse: ready\n');
          process.stdout.write(await nextSteps(opts.config, opts.stateDir, endpoints));
        } else
          process.stdout.write(
            `gatehouse: degraded: ${unhealthy.map((c) => `${c.name} ${c.state}`).join(', ')}; everything else is ready (GET ${endpoints.up?.admin}/readyz)\n`,
          );
      },
    );
}

/** What to look at and try once everything answers (after `gatehouse: ready`, which tests wait for). */
async function nextSteps(config: string, stateDir: string, endpoints: import('../up.ts').Endpoints): Promise<string> {
  const { loadTopology } = await import('../../topology/load.ts');
  const { topology } = loadTopology(config);
  const lines = [`  logs         ${stateDir}/logs/<component>.log`];
  const authorityZones = Object.keys(topology.zones).filter((z) => topology.zones[z].authority && endpoints.zones[z]?.authority);
  if (authorityZones.length > 0) lines.push(`  audit trail  ${stateDir}/authority/<zone>/audit.jsonl`);
  for (const [zone, z] of Object.entries(topology.zones)) {
    const open = z.routes.find((r) => r.auth === 'anonymous' && !r.path.includes('{'));
    const gateway = endpoints.zones[zone]?.gateway;
    if (open && gateway && !z.ingress?.clientCertificate) {
      lines.push(`  try          curl --cacert ${endpoints.caBundle} ${gateway}${open.path}`);
      break;
    }
  }
  if (authorityZones.length > 0) lines.push(`               gatehouse token --zone ${authorityZones[0]} --state-dir ${stateDir}      (dev mode: a token of the zone)`);
  lines.push(`  attack it    gatehouse probe --state-dir ${stateDir} --config ${config}`);
  lines.push(`  watch it     gatehouse status --state-dir ${stateDir}; gatehouse events --since 10m --state-dir ${stateDir}`);
  return lines.join('\n') + '\n';
}
