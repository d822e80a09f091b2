// A zone whose `federation` names this zone (`zone: <this zone>`, on the same
// machine: the shared state dir) signs its users in here. This zone's
// authority registers its client at start, as zone-trust.ts does for
// revocation feeds: a first-party authorization-code client `clientId` of
// that entry, with redirect URI <that zone's issuer>/federation/callback,
// whose secret is written into that zone's own directory of the state dir
// (owner-only), where its authority reads it when `clientSecretEnv` is not
// set (federation.ts).
// That zone's issuer is the one it runs with: its configured `issuer`, else
// the issuer its running authority published in the state dir (public.json,
// written once it listens: `gatehouse up --ephemeral-ports` gives it another
// port than its `listen` says), else, before it has started, the one its
// `listen` fixes (a port other than 0). The published issuer is followed
// while this authority runs (a restart of that zone on another port moves
// the redirect URI with it); the secret stays. With none of these nothing is
// registered until that zone has started.
// A secret that is still valid is kept, so a restart changes nothing.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AuthorityContext } from './context.ts';
import { publicFile } from './trusted-issuers.ts';
import { compareClientSecret, FIRST_PARTY_PROPERTY } from './client-registry.ts';
import { FEDERATION_CALLBACK } from './federation.ts';

export interface FederationGrant {
  /** the upstream's issuer */
  issuer: string;
  client_id: string;
  client_secret: string;
}

/** Where zone `downstream` finds its client secret at the upstream zone `upstream`. */
export function federationGrantFile(stateDir: string, downstream: string, upstream: string): string {
  return path.join(stateDir, 'authority', downstream, 'federation', `${upstream}.json`);
}

export function readFederationGrant(stateDir: string, downstream: string, upstream: string): FederationGrant | undefined {
  try {
    const v = JSON.parse(readFileSync(federationGrantFile(stateDir, downstream, upstream), 'utf8')) as FederationGrant;
    return typeof v.client_id === 'string' && typeof v.client_secret === 'string' && typeof v.issuer === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

function writeGrant(file: string, grant: FederationGrant): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(grant) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

/** How often the published issuers of federating zones are read again. */
export const FEDERATION_POLL_MS = 500;

/** The issuer a zone's authority will have, when it is fixed by its configuration. */
function plannedIssuer(authority: { issuer?: string; listen: string }): string | undefined {
  if (authority.issuer) return authority.issuer;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(authority.listen);
  if (!m || m[3] === '0') return undefined;
  const host = m[1] !== undefined ? `[${m[1]}]` : m[2] === '0.0.0.0' ? '127.0.0.1' : m[2];
  return `https://${host}:${m[3]}`;
}

/** The issuer zone `zone`'s authority published in the state dir (it runs), or undefined. */
function publishedIssuer(stateDir: string, zone: string): string | undefined {
  try {
    const v = (JSON.parse(readFileSync(publicFile(stateDir, zone), 'utf8')) as { issuer?: unknown }).issuer;
    return typeof v === 'string' && /^https:\/\/[^/?#]+$/.test(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The issuer to register the redirect URI of the federating zone for (see the top of this file). */
function downstreamIssuer(stateDir: string, zone: string, authority: { issuer?: string; listen: string }): string | undefined {
  return authority.issuer ?? publishedIssuer(stateDir, zone) ?? plannedIssuer(authority);
}

/**
 * Registers (or keeps) the sign-in client of every zone that federates with
 * this one, then follows their published issuers every FEDERATION_POLL_MS;
 * returns the function that stops following.
 */
export async function grantFederatingZones(ctx: AuthorityContext, stateDir: string): Promise<() => void> {
  const entries = Object.entries(ctx.loaded.topology.zones).flatMap(([zone, z]) =>
    zone === ctx.zone || !z.authority ? [] : z.authority.federation.filter((f) => f.zone === ctx.zone).map((f) => ({ zone, authority: z.authority!, clientId: f.clientId })),
  );
  const registered = new Map<string, string>();
  const warned = new Set<string>();
  const sync = async () => {
    for (const e of entries) {
      const issuer = downstreamIssuer(stateDir, e.zone, e.authority);
      if (!issuer) {
        if (!warned.has(e.zone))
          ctx.log.warn({ zone: e.zone, clientId: e.clientId }, 'a zone federates with this one but its issuer is not known yet (no issuer, no fixed listen port, not started): its client is registered once it has started');
        warned.add(e.zone);
        continue;
      }
      if (registered.get(e.clientId) === issuer) continue;
      await grantOne(ctx, stateDir, e.zone, e.clientId, `${issuer}${FEDERATION_CALLBACK}`);
      registered.set(e.clientId, issuer);
    }
  };
  await sync();
  if (entries.length === 0) return () => undefined;
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    sync()
      .catch((err: unknown) => {
        // after close the database is gone: stop following (start-authority.ts may not stop this)
        clearInterval(timer);
        ctx.log.error({ err }, 'federation client registration failed; the redirect URIs are no longer followed');
      })
      .finally(() => (running = false));
  }, FEDERATION_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

async function grantOne(ctx: AuthorityContext, stateDir: string, zone: string, clientId: string, redirect: string): Promise<void> {
  const file = federationGrantFile(stateDir, zone, ctx.zone);
  const existing = await ctx.clients.find(clientId);
  if (existing) {
    const m = existing.metadata;
    const ours = m[FIRST_PARTY_PROPERTY] === true && JSON.stringify(m.grant_types) === JSON.stringify(['authorization_code']) && Array.isArray(m.redirect_uris) && m.redirect_uris.length === 1;
    if (!ours) throw new Error(`zone ${ctx.zone}: client ${JSON.stringify(clientId)} is named by zone ${zone}'s federation, and a client by that name exists that is not its sign-in client; remove it or name another`);
    const held = readFederationGrant(stateDir, zone, ctx.zone);
    const granted = held?.client_id === clientId && existing.secretHash !== null && compareClientSecret(ctx.secretHashKey, existing.secretHash, held.client_secret);
    // registered by hand for that address (its secret in that zone's clientSecretEnv): left alone
    if (!granted && (m.redirect_uris as unknown[])[0] === redirect) return;
    if (granted && held) {
      if ((m.redirect_uris as unknown[])[0] !== redirect) {
        // that zone runs at another address now: the same client and secret, its new redirect URI
        await ctx.db.updateTable('clients').set({ metadata: JSON.stringify({ ...m, redirect_uris: [redirect] }) }).where('client_id', '=', clientId).execute();
        ctx.log.info({ clientId, zone, redirect }, 'the sign-in client of a federating zone follows it to its new address');
        ctx.audit('client.updated', { client_id: clientId, reason: `redirect URI of zone ${zone}'s sign-in client follows it to ${redirect}` });
      }
      // still valid (the issuer in the file is informational: the downstream reads it from public.json)
      if (held.issuer !== ctx.issuer) writeGrant(file, { ...held, issuer: ctx.issuer });
      return;
    }
    await ctx.clients.remove(clientId);
  }
  const created = await ctx.clients.add({
    clientId,
    name: `zone ${zone} (sign-in through ${ctx.zone})`,
    grantTypes: ['authorization_code'],
    redirectUris: [redirect],
    scope: 'openid profile email',
    authMethod: 'client_secret_basic',
    firstParty: true,
  });
  writeGrant(file, { issuer: ctx.issuer, client_id: created.client_id, client_secret: created.client_secret! });
  ctx.audit('client.added', { client_id: clientId, reason: `sign-in client of zone ${zone} (federation)` });
}
