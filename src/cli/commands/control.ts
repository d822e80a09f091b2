import type { Command } from 'commander';
import { refused } from '../usage.ts';

interface Common {
  config: string;
  stateDir: string;
}

function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'topology file (default $GATEHOUSE_CONFIG, else ./gatehouse.yaml)', process.env.GATEHOUSE_CONFIG ?? 'gatehouse.yaml')
    .option('--state-dir <dir>', 'state directory (the CA in <dir>/pki, the control plane in <dir>/control)', '.gatehouse');
}

async function adminUrl(stateDir: string): Promise<string> {
  const { controlAdminUrl } = await import('../../control/index.ts');
  const admin = controlAdminUrl(stateDir);
  if (!admin) throw refused('control', `no control plane runs from ${stateDir} (start \`gatehouse control\`)`);
  return admin;
}

export function register(program: Command): void {
  const control = common(program.command('control'))
    .description('the control plane: serves signed policy bundles to every enforcement point over mTLS (long-poll), collects their status')
    .option('--listen <host:port>', 'HTTPS (mTLS) listener', '127.0.0.1:0')
    .option('--admin-listen <host:port>', 'loopback admin listener (status, publish)', '127.0.0.1:0')
    .option('--bundle-ttl <seconds>', 'lifetime of a signed bundle (default 3600)', (v) => Number(v))
    .action(async (o: Common & { listen: string; adminListen: string; bundleTtl?: number }) => {
      const { startControlServer } = await import('../../control/index.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const server = await startControlServer({ config: o.config, stateDir: o.stateDir, listen: o.listen, adminListen: o.adminListen, ttlSeconds: o.bundleTtl });
      announceReady({ component: 'control', endpoints: { control: server.url, admin: server.adminUrl, ...(server.consoleUrl ? { console: server.consoleUrl } : {}) } });
      process.stderr.write(`gatehouse control: revision ${server.revision()} at ${server.bundlesUrl} (admin ${server.adminUrl})\n`);
      closeOnSignals(() => server.close());
    });

  control
    .command('publish')
    .description('recompile the topology and publish new bundles now (asks the running control plane)')
    .option('--state-dir <dir>', 'state directory of the running control plane', '.gatehouse')
    .action(async (o: { stateDir: string }) => {
      const url = await adminUrl(o.stateDir);
      const res = await fetch(`${url}/publish`, { method: 'POST' });
      const body = (await res.json()) as { revision?: number; detail?: string };
      if (!res.ok) {
        process.stderr.write(`gatehouse control publish: ${body.detail ?? res.status}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`revision ${body.revision}\n`);
    });

  common(control.command('export'))
    .description('write the signed bundles as plain files (DIR/zone/<zone>/gateway.bundle, DIR/zone/<zone>/svc/<name>.bundle)')
    .argument('<dir>', 'output folder')
    .action(async (dir: string, _o: unknown, cmd: Command) => {
      const o = cmd.optsWithGlobals() as Common & { bundleTtl?: number };
      const { exportBundles } = await import('../../control/index.ts');
      const r = await exportBundles({ config: o.config, stateDir: o.stateDir, out: dir, ttlSeconds: o.bundleTtl });
      process.stdout.write(`revision ${r.revision}: ${r.files.length} bundle(s) in ${dir}\n`);
    });
}
