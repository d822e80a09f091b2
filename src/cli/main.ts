// The gatehouse command. Each verb is a file in ./commands exporting
// `register(program)`; a verb loads its component lazily, inside its action,
// so `gatehouse --help` stays fast.
import { Command } from 'commander';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../topology/config-error.ts';
import { maskText } from '../shared/mask.ts';
import { GatehouseError } from '../shared/errors.ts';
import { VerbError, exitCodeOf } from './usage.ts';

export interface CommandModule {
  register(program: Command): void;
}

const here = path.dirname(fileURLToPath(import.meta.url));

export async function main(argv: string[]): Promise<void> {
  const program = new Command('gatehouse')
    .description('Zero-trust security layer for microservices: one topology file, every enforcement point.')
    .version('0.1.0')
    .showHelpAfterError()
    .configureOutput({ outputError: (s, write) => write(s) });
  const dir = path.join(here, 'commands');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .sort();
  // A process runs one verb (`up` starts a dozen, each a verb): when the first
  // argument names a verb's file, only that one is registered. Help, --version
  // and an unknown verb (commander suggests the nearest) get them all.
  const verb = files.find((f) => f === `${argv[2]}.ts`);
  for (const f of verb ? [verb] : files) {
    const mod = (await import(path.join(dir, f))) as CommandModule;
    mod.register(program);
  }
  // set once every verb is registered (so no verb inherits it): the program's own options (--version) come
  // before a verb, and a verb may have an option of the same name (vault keys set-min-version --version N)
  program.enablePositionalOptions();
  await program.parseAsync(argv);
}

main(process.argv).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\ngatehouse: invalid configuration (${error.issues.length} problem${error.issues.length === 1 ? '' : 's'})\n`);
    process.exitCode = 2;
    return;
  }
  if (error instanceof GatehouseError) {
    process.stderr.write(`gatehouse${error instanceof VerbError ? ` ${error.verb}` : ''}: ${maskText(error.message)}\n`);
    process.exitCode = exitCodeOf(error);
    return;
  }
  process.stderr.write(`gatehouse: ${maskText(error instanceof Error ? error.message : String(error))}\n`);
  process.exitCode = 1;
});
