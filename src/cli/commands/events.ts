// `gatehouse events`: the security events the control plane received from
// every enforcement point (schema: src/monitor/event.ts), newest last.
import type { Command } from 'commander';

/** The event types (src/monitor/event.ts EVENT_TYPES, written out: help loads no schema; a test keeps them equal). */
export const TYPES =
  'request_refused, edge_denied, vault_denied, ingress_refused, bundle_refused, config_change, detection, quarantine, auth_failure, auth_success, lockout, token_issued, token_exchange, token_refused, token_revoked, token_use, upstream_status, traffic, certificate_issued, certificate_revoked';

export function register(program: Command): void {
  program
    .command('events')
    .description('security events from every enforcement point (refusals, edge denials, sign-in failures, token exchanges, detections, quarantines), newest last')
    .option('--since <duration>', 'how far back: 30s, 10m, 2h, 1d', '1h')
    .option(
      '--type <type>',
      `only this type: ${TYPES}`,
    )
    .option('--limit <n>', 'at most this many, the newest (default 1000)', '1000')
    .option('--state-dir <dir>', 'state directory of the running control plane', '.gatehouse')
    .option('--json', 'one JSON document: an array of events in the documented schema')
    .action(async (o: { since: string; type?: string; limit: string; stateDir: string; json?: boolean }) => {
      const { controlAdminUrl } = await import('../../control/index.ts');
      const admin = controlAdminUrl(o.stateDir);
      if (!admin) {
        process.stderr.write(`gatehouse events: no control plane runs from ${o.stateDir} (gatehouse up, or gatehouse control)\n`);
        process.exitCode = 1;
        return;
      }
      const q = new URLSearchParams({ since: o.since, limit: o.limit, ...(o.type ? { type: o.type } : {}) });
      const res = await fetch(`${admin}/events?${q}`);
      const body = (await res.json()) as { detail?: string } | Record<string, unknown>[];
      if (!res.ok || !Array.isArray(body)) {
        process.stderr.write(`gatehouse events: ${(body as { detail?: string }).detail ?? res.status}\n`);
        process.exitCode = res.status === 422 ? 2 : 1;
        return;
      }
      if (o.json) return void process.stdout.write(JSON.stringify(body) + '\n');
      for (const e of body)
        process.stdout.write(
          [
            e.received,
            e.type,
            e.code,
            e.status,
            e.source,
            e.route ?? e.peer,
            e.method,
            e.path,
            e.subject && `sub=${e.subject}`,
            e.client && `client=${e.client}`,
            e.account && `account=${e.account}`,
            e.jti && `jti=${e.jti}`,
            e.count !== undefined && `count=${e.count}`,
            `pep=${e.pep}`,
            e.detail,
          ]
            .filter((v) => v !== undefined && v !== '' && v !== false)
            .join('  ') + '\n',
        );
    });
}
