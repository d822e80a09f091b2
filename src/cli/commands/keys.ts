import type { Command } from 'commander';
import { usage, refused } from '../usage.ts';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

// `gatehouse keys …`: key management. `rotate` rotates a zone authority's
// signing key; `keys api …` manages the gateway's partner API keys.
export function register(program: Command): void {
  const keys = program.command('keys').description('manage keys (authority signing keys, partner API keys)');
  registerApiKeys(keys);

  keys
    .command('rotate')
    .description('add a new signing key: published in JWKS now, signing after the zone publish lead; the old key leaves JWKS once its tokens expired')
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--state-dir <dir>', 'state directory', '.gatehouse')
    .requiredOption('--zone <zone>', 'zone whose authority key to rotate')
    .action(async (o: { config: string; stateDir: string; zone: string }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { openZoneStores } = await import('../../authority/index.ts');
      const s = await openZoneStores(loadTopology(o.config), o.zone, o.stateDir);
      try {
        await s.keyStore.ensureSigningKey(s.config.signingAlg, s.config.accessTokenTtl);
        const r = await s.keyStore.rotate(s.config.signingAlg, s.config.keyRotation.publishLeadSeconds, s.config.accessTokenTtl);
        const { appendFileSync } = await import('node:fs');
        const path = await import('node:path');
        appendFileSync(
          path.join(s.dir, 'audit.jsonl'),
          JSON.stringify({ time: new Date().toISOString(), zone: o.zone, event: 'key.rotated', kid: r.kid, reason: 'gatehouse keys rotate' }) + '\n',
          { mode: 0o600 },
        );
        process.stdout.write(
          JSON.stringify({ kid: r.kid, signs_from: new Date(r.signFrom).toISOString(), retiring: r.retired }, null, 2) + '\n',
        );
      } finally {
        await s.storage.close();
      }
    });
}

function registerApiKeys(keys: Command): void {
  const api = keys.command('api').description("partner API keys of a zone's gateway (only a hash is stored)");
  const common = (c: Command) =>
    c
      .option('--config <file>', CONFIG_HELP, defaultConfigPath())
      .option('--state-dir <dir>', 'state directory', '.gatehouse')
      .requiredOption('--zone <zone>', 'zone whose gateway accepts the key');
  const zoneOf = async (o: { config: string; zone: string }) => {
    const { loadTopology } = await import('../../topology/load.ts');
    if (!loadTopology(o.config).topology.zones[o.zone]?.gateway) throw usage('keys', `zone ${JSON.stringify(o.zone)} has no gateway in ${o.config}`);
  };
  common(api.command('add'))
    .description('create a key for a consumer and print it once (the gateway sees it within 2 s)')
    .requiredOption('--consumer <name>', 'who the key belongs to (lowercase, digits, -)')
    .option('--scopes <list>', 'scopes the key carries, space- or comma-separated', '')
    .option('--tier <tier>', 'rate-limit tier of the consumer')
    .action(async (o: { config: string; stateDir: string; zone: string; consumer: string; scopes: string; tier?: string }) => {
      await zoneOf(o);
      const { addApiKey } = await (await import('../../gateway/index.ts')).apiKeys();
      const scopes = o.scopes.split(/[\s,]+/).filter(Boolean);
      const { key, prefix } = addApiKey(o.stateDir, o.zone, { consumer: o.consumer, scopes, tier: o.tier });
      process.stdout.write(`${JSON.stringify({ key, prefix, consumer: o.consumer, scopes, tier: o.tier ?? null }, null, 2)}\nstore the key now: it is not shown again\n`);
    });
  common(api.command('list'))
    .description('list keys by their public prefix (never the key)')
    .action(async (o: { config: string; stateDir: string; zone: string }) => {
      await zoneOf(o);
      const { listApiKeys } = await (await import('../../gateway/index.ts')).apiKeys();
      process.stdout.write(JSON.stringify(listApiKeys(o.stateDir, o.zone), null, 2) + '\n');
    });
  common(api.command('revoke'))
    .description('revoke a key by its prefix (refused by the gateway within 2 s)')
    .requiredOption('--prefix <prefix>', 'the key prefix shown by add and list')
    .action(async (o: { config: string; stateDir: string; zone: string; prefix: string }) => {
      await zoneOf(o);
      const { revokeApiKey } = await (await import('../../gateway/index.ts')).apiKeys();
      if (!revokeApiKey(o.stateDir, o.zone, o.prefix)) throw refused('keys', `no active key with prefix ${o.prefix}`);
      process.stdout.write(`revoked ${o.prefix}\n`);
    });
}
