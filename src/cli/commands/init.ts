import type { Command } from 'commander';
import { usage } from '../usage.ts';
import type { ScaffoldInput } from '../scaffold.ts';

type InitOptions = Omit<ScaffoldInput, 'service' | 'scopes'> & { service?: string; scope?: string[]; out: string; force?: boolean };

export function register(program: Command): void {
  program
    .command('init')
    .description('scaffold a topology for one service: a zone with a gateway (and an authority when the route needs tokens), one route, the service and its allow edge; asks for what is missing when run in a terminal')
    .option('-n, --service <name>', 'the service (lowercase letters, digits, -)')
    .option('-z, --zone <name>', 'its zone', 'public')
    .option('--trust-domain <domain>', 'SPIFFE trust domain', 'example.local')
    .option('--upstream <url>', 'where the service already listens (any language), e.g. http://127.0.0.1:3000')
    .option('--run <module>', 'a Node module that `gatehouse up` starts (it exports start())')
    .option('--sidecar', 'with --run: a plain-HTTP application with `gatehouse sidecar` in front (any language)')
    .option('-p, --path <path>', 'the route: requests under this path prefix go to the service (default /api/<service>/)')
    .option('-a, --auth <auth>', 'anonymous | jwt', 'jwt')
    .option('-s, --scope <scopes...>', 'scopes a token needs (space- or comma-separated, or the flag repeated); absent: any token of the zone')
    .option('--listen <host:port>', "the gateway's listener", '127.0.0.1:8443')
    .option('-o, --out <file>', 'where to write it', 'gatehouse.yaml')
    .option('-f, --force', 'overwrite an existing file')
    .action(async (o: InitOptions) => {
      const { existsSync, writeFileSync } = await import('node:fs');
      const { scaffold, askMissing } = await import('../scaffold.ts');
      const refuse = (message: string): never => {
        throw usage('init', message);
      };
      if (!o.service && process.stdin.isTTY && process.stdout.isTTY) Object.assign(o, await askMissing(o));
      if (!o.service) return refuse('--service is required (or run it in a terminal to be asked)');
      if (existsSync(o.out) && !o.force) return refuse(`${o.out} exists; --force to overwrite it, or --out another file`);
      const made = scaffold({ ...o, service: o.service, scopes: (o.scope ?? []).flatMap((s) => s.split(/[\s,]+/)).filter(Boolean) }, o.out);
      if (typeof made !== 'string' && 'error' in made) return refuse(made.error);
      writeFileSync(o.out, made.yaml, { flag: o.force ? 'w' : 'wx' });
      process.stdout.write(`wrote ${o.out}\n${made.next}`);
    });
}
