// Shared by the authority admin verbs (clients, users): the options that name
// a zone, and opening that zone's authority stores without serving.
import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from './config-path.ts';

export interface ZoneOptions {
  config: string;
  stateDir: string;
  zone: string;
}

export const zoneOptions = (c: Command, what: string) =>
  c
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--state-dir <dir>', 'state directory', '.gatehouse')
    .requiredOption('--zone <zone>', `zone whose authority holds the ${what}`);

export async function openZone(o: ZoneOptions) {
  const { loadTopology } = await import('../topology/load.ts');
  const { openZoneStores } = await import('../authority/index.ts');
  return openZoneStores(loadTopology(o.config), o.zone, o.stateDir);
}
