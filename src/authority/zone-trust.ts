// A zone that trusts this zone's tokens (its `trustedZones` names this zone,
// on the same machine: the shared state dir) must check their revocation
// here before it exchanges one (token-exchange.ts). This zone's authority
// grants it that at start: a feed-only client `authority.<that zone>` (it may
// read GET /revocations and nothing else), whose id and secret are written
// into that zone's own directory of the state dir (owner-only, like its
// master key), where its authority reads them (issuer-revocations.ts).
// A secret that is still valid is kept, so a restart changes nothing.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AuthorityContext } from './context.ts';
import { compareClientSecret, REVOCATION_FEED_PROPERTY } from './client-registry.ts';

export interface FeedGrant {
  /** the issuer whose feed this reads */
  issuer: string;
  client_id: string;
  client_secret: string;
}

/** Where zone `reader` finds its credentials for the revocation feed of zone `issuerZone`. */
export function feedGrantFile(stateDir: string, reader: string, issuerZone: string): string {
  return path.join(stateDir, 'authority', reader, 'trusted', `${issuerZone}.json`);
}

export function readFeedGrant(stateDir: string, reader: string, issuerZone: string): FeedGrant | undefined {
  try {
    const v = JSON.parse(readFileSync(feedGrantFile(stateDir, reader, issuerZone), 'utf8')) as FeedGrant;
    return typeof v.client_id === 'string' && typeof v.client_secret === 'string' && typeof v.issuer === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The zones of the topology that trust this zone by name. */
export function trustingZones(ctx: Pick<AuthorityContext, 'loaded' | 'zone'>): string[] {
  return Object.entries(ctx.loaded.topology.zones)
    .filter(([name, z]) => name !== ctx.zone && z.authority?.trustedZones.some((t) => t === ctx.zone))
    .map(([name]) => name);
}

export async function grantTrustingZones(ctx: AuthorityContext, stateDir: string): Promise<void> {
  for (const zone of trustingZones(ctx)) {
    const clientId = `authority.${zone}`;
    const file = feedGrantFile(stateDir, zone, ctx.zone);
    const existing = await ctx.clients.find(clientId);
    if (existing) {
      const m = existing.metadata;
      if (m[REVOCATION_FEED_PROPERTY] !== true || !Array.isArray(m.grant_types) || m.grant_types.length > 0)
        throw new Error(`zone ${ctx.zone}: client ${JSON.stringify(clientId)} is reserved for zone ${zone}'s revocation checks, and a client by that name can do more than read the feed; remove it`);
      const held = readFeedGrant(stateDir, zone, ctx.zone);
      if (held?.client_id === clientId && held.issuer === ctx.issuer && existing.secretHash && compareClientSecret(ctx.secretHashKey, existing.secretHash, held.client_secret))
        continue;
      await ctx.clients.remove(clientId);
    }
    const created = await ctx.clients.add({
      clientId,
      name: `zone ${zone}'s authority (revocation checks before token exchange)`,
      grantTypes: [],
      scope: '',
      authMethod: 'client_secret_basic',
      revocationFeed: true,
    });
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    const grant: FeedGrant = { issuer: ctx.issuer, client_id: created.client_id, client_secret: created.client_secret! };
    writeFileSync(tmp, JSON.stringify(grant) + '\n', { mode: 0o600 });
    renameSync(tmp, file);
    ctx.audit('client.added', { client_id: clientId, reason: `revocation feed for zone ${zone}` });
  }
}
