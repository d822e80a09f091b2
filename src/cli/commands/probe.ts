import type { Command } from 'commander';
import { usage as usageError } from '../usage.ts';
import { CONFIG_HELP } from '../config-path.ts';

export function register(program: Command): void {
  program
    .command('probe')
    .description(
      'an active, bounded attack run against a live deployment (smuggling, path tricks, spoofed headers, forged tokens, ' +
        'WebSocket, rate-limit evasion, direct and undeclared ports, TLS posture); exit 1 on any high finding',
    )
    .option('-e, --endpoints <file>', "endpoints.json of a running topology (default: <state-dir>/endpoints.json)")
    .option('-t, --target <url>', 'probe one URL (a gateway) instead of the endpoints of a topology')
    .option('-s, --state-dir <dir>', 'state directory of `gatehouse up`', '.gatehouse')
    .option('-c, --config <file>', `${CONFIG_HELP}; gives the probe the routes (absent: route-based checks are skipped)`)
    .option('-f, --format <format>', 'text | json | sarif | junit', 'text')
    .option('--cert <file>', 'a workload certificate (PEM) to present to gateways that require one: checks behind mTLS, as a compromised workload would')
    .option('--key <file>', 'the private key (PEM) of --cert')
    .option('--accept <file>', 'YAML of accepted findings (id, target, observed, reason, expires): medium or low findings the deployment accepts are reported as accepted, with the reason, and do not fail the run')
    .option('--fail-on <severity>', 'exit 1 on any finding of this severity or above: high | medium | low', 'high')
    .option('--only <families>', 'comma-separated check families (h1-framing, h2-desync, paths, h2-paths, headers, tokens, websocket, direct, tls, ports, rate-limit)')
    .option('--max-requests <n>', 'most requests of the whole run', '2000')
    .option('--max-seconds <n>', 'wall-clock bound of the whole run', '180')
    .option('--timeout <ms>', 'bound of one request', '5000')
    .action(
      async (o: { endpoints?: string; target?: string; cert?: string; key?: string; stateDir: string; config?: string; format: string; accept?: string; failOn: string; only?: string; maxRequests: string; maxSeconds: string; timeout: string }) => {
        const { existsSync } = await import('node:fs');
        const path = await import('node:path');
        const { runProbe, exitCodeOf, formatReport, planFromEndpoints, planFromTarget, loadAcceptances, applyAcceptances, FORMATS, FAMILIES } = await import(
          '../../audit/probe/index.ts'
        );
        const { loadTopology } = await import('../../topology/load.ts');
        const { defaultConfigPath } = await import('../config-path.ts');
        const usage = (message: string): never => {
          throw usageError('probe', message);
        };
        if (!(FORMATS as readonly string[]).includes(o.format)) return usage(`--format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(o.format)}`);
        const SEVERITIES = ['high', 'medium', 'low'] as const;
        if (!(SEVERITIES as readonly string[]).includes(o.failOn)) return usage(`--fail-on must be one of ${SEVERITIES.join(', ')}, got ${JSON.stringify(o.failOn)}`);
        // read before any request: a broken accept file must not cost a whole run (a ConfigError names file:line:column)
        const acceptances = o.accept === undefined ? [] : loadAcceptances(o.accept);
        const only = o.only?.split(',').map((s) => s.trim()).filter(Boolean);
        const unknown = only?.filter((f) => !FAMILIES.some(([n]) => n === f));
        if (unknown?.length) return usage(`unknown check famil${unknown.length === 1 ? 'y' : 'ies'} ${unknown.join(', ')}; known: ${FAMILIES.map(([n]) => n).join(', ')}`);
        const numbers = { maxRequests: Number(o.maxRequests), maxMs: Number(o.maxSeconds) * 1000, timeoutMs: Number(o.timeout) };
        for (const [k, v] of Object.entries(numbers)) if (!Number.isFinite(v) || v <= 0) return usage(`${k} must be a positive number`);
        // routes come from the topology: an explicit --config must exist; the default is used when it does
        const configFile = o.config ?? defaultConfigPath();
        const topology = o.config !== undefined || existsSync(configFile) ? loadTopology(configFile).topology : undefined;
        let plan;
        if (o.target) {
          try {
            plan = planFromTarget(o.target, topology);
          } catch (e) {
            return usage((e as Error).message);
          }
        } else {
          const file = o.endpoints ?? path.join(o.stateDir, 'endpoints.json');
          if (!existsSync(file)) return usage(`no endpoints file at ${file} (is \`gatehouse up\` running? give --endpoints FILE or --target URL)`);
          try {
            plan = planFromEndpoints(file, topology);
          } catch (e) {
            return usage(`cannot read ${file}: ${(e as Error).message}`);
          }
        }
        if ((o.cert === undefined) !== (o.key === undefined)) return usage('--cert and --key go together');
        if (o.cert && o.key) {
          const { readFileSync } = await import('node:fs');
          try {
            plan.clientCert = { cert: readFileSync(o.cert, 'utf8'), key: readFileSync(o.key, 'utf8') };
          } catch (e) {
            return usage(`cannot read the client certificate: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
          }
        }
        const { report, unused } = applyAcceptances(await runProbe(plan, numbers, only), acceptances, new Date().toISOString().slice(0, 10));
        process.stdout.write(formatReport(report, o.format as (typeof FORMATS)[number]));
        for (const a of unused)
          process.stderr.write(`gatehouse probe: accepted finding ${a.id}${a.target ? ` at ${JSON.stringify(a.target)}` : ''} was not found in this run: remove it from ${o.accept} if it is fixed\n`);
        process.exitCode = exitCodeOf(report, o.failOn as (typeof SEVERITIES)[number]);
      },
    );
}
