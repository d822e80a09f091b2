import type { Command } from 'commander';

// `gatehouse keys …`: key management. `rotate` rotates a zone authority's
// signing key; a later issue adds `keys api …` (API keys) beside it.
export function register(program: Command): void {
  const keys = program.command('keys').description('manage keys (authority signing keys)');

  keys
    .command('rotate')
    .description('add a new signing key: published in JWKS now, signing after the zone publish lead; the old key leaves JWKS once its tokens expired')
    .option('--config <file>', 'topology file', 'examples/shop/gatehouse.yaml')
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
