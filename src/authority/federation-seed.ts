// A zone whose `federation` names this zone (`zone: <this zone>`, on the same
// machine: the shared state dir) signs its users in here. This zone's
// authority registers its client at start, as zone-trust.ts does for
// revocation feeds: a first-party authorization-code client `clientId` of
// that entry, with redirect URI <that zone's issuer>/federation/callback,
// whose secret is written into that zone's own directory of the state dir
// (owner-only), where its authority reads it when `clientSecretEnv` is not
// set (federation.ts). The downstream's issuer must be known before it
// listens: its `issuer`, or a `listen` with a fixed port; otherwise nothing is
// registered (register the client by hand, and set the variable).
// A secret that is still valid is kept, so a restart changes nothing.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { AuthorityContext } from './context.ts';
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

/** The issuer a zone's authority will have, when it is fixed by its configuration. */
function plannedIssuer(authority: { issuer?: string; listen: string }): string | undefined {
  if (authority.issuer) return authority.issuer;
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(authority.listen);
  if (!m || m[3] === '0') return undefined;
  const host = m[1] !== undefined ? `[${m[1]}]` : m[2] === '0.0.0.0' ? '127.0.0.1' : m[2];
  return `https://${host}:${m[3]}`;
}

export async function grantFederatingZones(ctx: AuthorityContext, stateDir: string): Promise<void> {
  for (const [zone, z] of Object.entries(ctx.loaded.topology.zones)) {
    if (zone === ctx.zone || !z.authority) continue;
    for (const f of z.authority.federation.filter((x) => x.zone === ctx.zone)) {
      const issuer = plannedIssuer(z.authority);
      if (!issuer) {
        ctx.log.warn({ zone, clientId: f.clientId }, 'a zone federates with this one but its issuer is not fixed (issuer, or a listen port): register its client by hand');
        continue;
      }
      const redirect = `${issuer}${FEDERATION_CALLBACK}`;
      const file = federationGrantFile(stateDir, zone, ctx.zone);
      const existing = await ctx.clients.find(f.clientId);
      if (existing) {
        const m = existing.metadata;
        const ours = m[FIRST_PARTY_PROPERTY] === true && JSON.stringify(m.redirect_uris) === JSON.stringify([redirect]) && JSON.stringify(m.grant_types) === JSON.stringify(['authorization_code']);
        if (!ours) throw new Error(`zone ${ctx.zone}: client ${JSON.stringify(f.clientId)} is named by zone ${zone}'s federation, and a client by that name exists that is not its sign-in client; remove it or name another`);
        const held = readFederationGrant(stateDir, zone, ctx.zone);
        if (held?.client_id === f.clientId && existing.secretHash && compareClientSecret(ctx.secretHashKey, existing.secretHash, held.client_secret)) {
          // still valid (the issuer in the file is informational: the downstream reads it from public.json)
          if (held.issuer !== ctx.issuer) writeGrant(file, { ...held, issuer: ctx.issuer });
          continue;
        }
        await ctx.clients.remove(f.clientId);
      }
      const created = await ctx.clients.add({
        clientId: f.clientId,
        name: `zone ${zone} (sign-in through ${ctx.zone})`,
        grantTypes: ['authorization_code'],
        redirectUris: [redirect],
        scope: 'openid profile email',
        authMethod: 'client_secret_basic',
        firstParty: true,
      });
      writeGrant(file, { issuer: ctx.issuer, client_id: created.client_id, client_secret: created.client_secret! });
      ctx.audit('client.added', { client_id: f.clientId, reason: `sign-in client of zone ${zone} (federation)` });
    }
  }
}
