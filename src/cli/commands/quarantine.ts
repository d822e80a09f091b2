// `gatehouse quarantine add|remove|list`: time-boxed decisions the running
// control plane publishes to every gateway, zone authority and mesh service.
import type { Command } from 'commander';

interface Selector {
  source?: string;
  client?: string;
  subject?: string;
  service?: string;
}

const SELECTORS = ['source', 'client', 'subject', 'service'] as const;

function selector(cmd: Command): Command {
  return cmd
    .option('--source <cidr>', 'a client network: refused at every gateway')
    .option('--client <id>', 'an OAuth client: its tokens are refused at every gateway, and the authorities issue it none')
    .option('--subject <sub>', "a token subject (a user's sub) or API-key consumer: refused at every gateway; the user cannot sign in nor obtain, refresh or exchange a token at the authorities")
    .option('--service <name>', 'a workload: it loses every edge, in and out');
}

/** Exactly one selector, as { scope, value }; usage error (exit 2) otherwise. */
function chosen(o: Selector): { scope: (typeof SELECTORS)[number]; value: string } | undefined {
  const given = SELECTORS.filter((s) => o[s] !== undefined);
  if (given.length !== 1) {
    process.stderr.write('gatehouse quarantine: give exactly one of --source, --client, --subject, --service\n');
    process.exitCode = 2;
    return undefined;
  }
  return { scope: given[0], value: o[given[0]]! };
}

async function call(stateDir: string, method: string, query: string, body?: unknown): Promise<unknown> {
  const { controlAdminUrl } = await import('../../control/index.ts');
  const admin = controlAdminUrl(stateDir);
  if (!admin) {
    process.stderr.write(`gatehouse quarantine: no control plane runs from ${stateDir} (gatehouse up, or gatehouse control)\n`);
    process.exitCode = 1;
    return undefined;
  }
  const res = await fetch(`${admin}/quarantines${query}`, {
    method,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  const data = (await res.json()) as { detail?: string };
  if (!res.ok) {
    process.stderr.write(`gatehouse quarantine: ${data.detail ?? res.status}\n`);
    process.exitCode = res.status === 422 ? 2 : 1;
    return undefined;
  }
  return data;
}

export function register(program: Command): void {
  const q = program.command('quarantine').description('time-boxed decisions every gateway and mesh service enforces (through the control plane)');
  const stateDir = (cmd: Command) => cmd.option('--state-dir <dir>', 'state directory of the running control plane', '.gatehouse');

  stateDir(selector(q.command('add')))
    .description('quarantine a source network, a client, a subject or a service for a while')
    .requiredOption('--for <duration>', 'how long: 30s, 15m, 2h, 1d (at most 30d)')
    .requiredOption('--reason <text>', 'why (kept with the decision, shown by list)')
    .action(async (o: Selector & { for: string; reason: string; stateDir: string }) => {
      const sel = chosen(o);
      if (!sel) return;
      const r = (await call(o.stateDir, 'POST', '', { ...sel, for: o.for, reason: o.reason })) as { quarantine: { until: string }; revision: number } | undefined;
      if (r) process.stdout.write(`quarantined ${sel.scope} ${sel.value} until ${r.quarantine.until} (revision ${r.revision})\n`);
    });

  stateDir(selector(q.command('remove')))
    .description('end a quarantine now')
    .option('--false-positive', "a detector's decision that was wrong: that detector becomes less sensitive to this key for a day (threshold doubled, or the volumetric baseline raised)")
    .action(async (o: Selector & { stateDir: string; falsePositive?: boolean }) => {
      const sel = chosen(o);
      if (!sel) return;
      const fp = o.falsePositive ? '&falsePositive=1' : '';
      const r = (await call(o.stateDir, 'DELETE', `?scope=${encodeURIComponent(sel.scope)}&value=${encodeURIComponent(sel.value)}${fp}`)) as { revision: number } | undefined;
      if (r) process.stdout.write(`released ${sel.scope} ${sel.value}${o.falsePositive ? ' as a false positive' : ''} (revision ${r.revision})\n`);
    });

  stateDir(q.command('list'))
    .description('the quarantines in force')
    .option('--json', 'one JSON document: [ { scope, value, until, reason, origin } ]')
    .action(async (o: { stateDir: string; json?: boolean }) => {
      const list = (await call(o.stateDir, 'GET', '')) as { scope: string; value: string; until: string; reason: string; origin: string }[] | undefined;
      if (!list) return;
      if (o.json) return void process.stdout.write(JSON.stringify(list.map(({ scope, value, until, reason, origin }) => ({ scope, value, until, reason, origin }))) + '\n');
      if (list.length === 0) process.stdout.write('no quarantine in force\n');
      for (const e of list) process.stdout.write(`${e.scope.padEnd(8)} ${e.value}  until ${e.until}  (${e.origin}) ${e.reason}\n`);
    });
}
