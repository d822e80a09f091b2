// A zone authority's stores opened without serving: its database (migrated),
// key table, sealer, clients and users. The authority opens them at start; the
// admin verbs (`gatehouse users`, `clients`, `keys rotate`) open them alone,
// without loading the OpenID provider.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { LoadedTopology } from '../topology/load.ts';
import type { AuthorityConfig } from '../topology/schema-authority.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { openDatabase } from './db/open-database.ts';
import { loadKeyEncryptionKey } from './keys/key-encryption.ts';
import { KeyStore } from './keys/key-store.ts';
import { ClientRegistry } from './client-registry.ts';
import { UserRegistry } from './user-registry.ts';

export function zoneDir(stateDir: string, zone: string): string {
  return path.join(stateDir, 'authority', zone);
}

export function authorityConfigOf(topology: LoadedTopology, zone: string): AuthorityConfig {
  const z = topology.topology.zones[zone];
  if (!z) throw new Error(`zone ${JSON.stringify(zone)} is not in ${topology.file}`);
  if (!z.authority) throw new Error(`zone ${JSON.stringify(zone)} has no authority block`);
  return z.authority;
}

/** Opens the zone's stores without serving (used by the admin CLI as well). */
export async function openZoneStores(topology: LoadedTopology, zone: string, stateDir: string, clock: Clock = systemClock) {
  const config = authorityConfigOf(topology, zone);
  const dir = zoneDir(stateDir, zone);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const sealer = loadKeyEncryptionKey(dir);
  const storage = await openDatabase(config.storage, dir);
  const now = () => clock.now();
  const keyStore = new KeyStore(storage.db, sealer, now);
  const secretHashKey = await keyStore.secret('client-secret-hmac');
  return {
    config,
    dir,
    sealer,
    storage,
    keyStore,
    now,
    clients: new ClientRegistry(storage.db, secretHashKey, now),
    users: new UserRegistry(storage.db, sealer, now, `Gatehouse ${zone}`),
    secretHashKey,
  };
}
