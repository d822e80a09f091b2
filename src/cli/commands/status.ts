import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('status')
    .description('every enforcement point with the revision it enforces, when it last polled, and whether it is stale')
    .option('--state-dir <dir>', 'state directory of the running control plane', '.gatehouse')
    .option('--config <file>', 'topology file (unused: the running control plane answers)', process.env.GATEHOUSE_CONFIG ?? 'gatehouse.yaml')
    .option('--json', 'one JSON document: { revision, peps: [ { id, kind, revision, lastSeen, stale } ] }')
    .action(async (o: { stateDir: string; json?: boolean }) => {
      const { controlAdminUrl } = await import('../../control/index.ts');
      const admin = controlAdminUrl(o.stateDir);
      if (!admin) {
        process.stderr.write(`gatehouse status: no control plane runs from ${o.stateDir}\n`);
        process.exitCode = 1;
        return;
      }
      const res = await fetch(`${admin}/status`);
      if (!res.ok) {
        process.stderr.write(`gatehouse status: the control plane answered ${res.status}\n`);
        process.exitCode = 1;
        return;
      }
      const s = (await res.json()) as { revision: number; peps: { id: string; kind: string; revision: number; lastSeen: string; stale: boolean; lastRefusal?: string }[] };
      if (o.json) {
        process.stdout.write(JSON.stringify({ revision: s.revision, peps: s.peps.map((p) => ({ id: p.id, kind: p.kind, revision: p.revision, lastSeen: p.lastSeen, stale: p.stale })) }) + '\n');
        return;
      }
      process.stdout.write(`revision ${s.revision}\n`);
      for (const p of s.peps)
        process.stdout.write(
          `${p.stale ? 'STALE' : 'ok   '} ${p.kind.padEnd(8)} r${String(p.revision).padEnd(6)} ${p.lastSeen}  ${p.id}${p.lastRefusal ? `  (last refused: ${p.lastRefusal})` : ''}\n`,
        );
      if (s.peps.some((p) => p.stale)) process.exitCode = 1;
    });
}
