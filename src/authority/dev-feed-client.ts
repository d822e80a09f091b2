// Dev mode only: the client the zone's gateway reads the revocation feed with,
// when the topology asks for one (`zones.<zone>.authentication.revocationFeed`
// without a `url`, i.e. this authority's own feed). It may read GET
// /revocations and nothing else: no grant type, no scope, no redirect URI, and
// oidc-provider never sees it (oidc-adapter.ts), so it cannot get, introspect
// or revoke a token. Its secret is generated once, kept sealed under the
// key-encryption key (the same on every restart, so a gateway started earlier
// keeps reading), and handed to `gatehouse up`, which gives it to the gateway
// in the environment variable the topology names. Outside dev mode the operator
// registers it: `gatehouse clients add --zone Z --id ID --revocation-feed`.
import type { AuthorityContext } from './context.ts';
import { compareClientSecret, REVOCATION_FEED_PROPERTY } from './client-registry.ts';

export interface DevFeedClient {
  client_id: string;
  client_secret: string;
}

const SECRET_NAME = 'dev-revocation-feed-client';

export async function seedFeedClient(
  ctx: AuthorityContext,
  sealedGet: (name: string) => Promise<string | undefined>,
  sealedPut: (name: string, value: string) => Promise<void>,
): Promise<DevFeedClient | undefined> {
  const zone = ctx.loaded.topology.zones[ctx.zone];
  const feed = zone?.authentication.revocationFeed;
  if (!zone?.gateway || !feed || feed.url !== undefined) return undefined;
  const existing = await ctx.clients.find(feed.clientId);
  if (existing) {
    const m = existing.metadata;
    // never take over (or delete) a client that can do more than read the feed
    if (m[REVOCATION_FEED_PROPERTY] !== true || !Array.isArray(m.grant_types) || m.grant_types.length > 0)
      throw new Error(
        `zone ${ctx.zone}: authentication.revocationFeed.clientId ${JSON.stringify(feed.clientId)} is already a client that is not a feed-only client; name another one`,
      );
    const stored = await sealedGet(SECRET_NAME);
    const seeded = stored ? (JSON.parse(stored) as DevFeedClient) : undefined;
    if (seeded?.client_id === feed.clientId && existing.secretHash && compareClientSecret(ctx.secretHashKey, existing.secretHash, seeded.client_secret))
      return seeded;
    // a feed-only client whose secret this seed does not hold: issue a new one
    await ctx.clients.remove(feed.clientId);
  }
  const created = await ctx.clients.add({
    clientId: feed.clientId,
    name: `${ctx.zone} gateway (revocation feed)`,
    grantTypes: [],
    scope: '',
    authMethod: 'client_secret_basic',
    revocationFeed: true,
  });
  const seeded: DevFeedClient = { client_id: created.client_id, client_secret: created.client_secret! };
  await sealedPut(SECRET_NAME, JSON.stringify(seeded));
  return seeded;
}
