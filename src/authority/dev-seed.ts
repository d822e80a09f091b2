// Dev mode only: demo identities of a zone, created at first start and the
// same on every restart (the issued secrets are kept sealed under the
// key-encryption key so they can be handed to `gatehouse up` again).
import type { AuthorityContext } from './context.ts';
import { FIRST_PARTY_PROPERTY, TOKEN_EXCHANGE, type GrantType } from './client-registry.ts';
import { serviceSpiffeId } from '../pki/index.ts';

export interface DevClient {
  client_id: string;
  client_secret?: string;
  grant_types: string[];
  redirect_uris?: string[];
  scope: string;
  /** service clients (dev.serviceClients): they authenticate with their workload certificate */
  token_endpoint_auth_method?: 'tls_client_auth';
  tls_client_auth_san_uri?: string;
}

export interface DevUser {
  username: string;
  password: string;
  totp_secret: string;
}

/** The per-zone object of dev-credentials.json (DESIGN.md). */
export interface ZoneDevCredentials {
  clients: DevClient[];
  users: DevUser[];
}

const SECRET_NAME = 'dev-credentials';

export async function seedDev(ctx: AuthorityContext, sealedGet: () => Promise<string | undefined>, sealedPut: (v: string) => Promise<void>): Promise<ZoneDevCredentials> {
  const stored = await sealedGet();
  if (stored) {
    const creds = JSON.parse(stored) as ZoneDevCredentials;
    const present = await Promise.all(creds.clients.map((c) => ctx.clients.exists(c.client_id)));
    const users = await Promise.all(creds.users.map((u) => ctx.users.byUsername(u.username)));
    const boundNow = await Promise.all(serviceClients(ctx).map(async (c) => (await ctx.clients.find(c.client_id))?.metadata.tls_client_certificate_bound_access_tokens === true));
    const sameServiceClients =
      JSON.stringify(creds.clients.filter((c) => c.tls_client_auth_san_uri).map((c) => [c.client_id, c.tls_client_auth_san_uri, c.grant_types, c.scope])) ===
        JSON.stringify(serviceClients(ctx).map((c) => [c.client_id, c.tls_client_auth_san_uri, c.grant_types, c.scope])) &&
      JSON.stringify(boundNow) === JSON.stringify(ctx.config.dev.serviceClients.map((c) => c.certificateBound));
    // state seeded before first-party clients existed is seeded again (its web client would ask for consent)
    const webFirstParty = (await ctx.clients.find(`${ctx.zone}-web`))?.metadata[FIRST_PARTY_PROPERTY] === true;
    if (present.every(Boolean) && users.every((u) => u && u.mfa) && sameServiceClients && webFirstParty) return creds;
    for (const c of creds.clients) await ctx.clients.remove(c.client_id);
  }
  const scope = ctx.scopes.join(' ');
  const service = `${ctx.zone}-service`;
  const web = `${ctx.zone}-web`;
  for (const id of [service, web]) if (await ctx.clients.exists(id)) await ctx.clients.remove(id);
  const s = await ctx.clients.add({
    clientId: service,
    name: `${ctx.zone} demo service`,
    grantTypes: ['client_credentials', TOKEN_EXCHANGE],
    scope,
    authMethod: 'client_secret_basic',
  });
  const redirect = ctx.config.dev.redirectUri;
  const webScope = ['openid', 'profile', 'offline_access', ...ctx.scopes].join(' ');
  const w = await ctx.clients.add({
    clientId: web,
    name: `${ctx.zone} demo web app`,
    grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [redirect],
    postLogoutRedirectUris: [redirect],
    scope: webScope,
    authMethod: 'client_secret_basic',
    firstParty: true,
  });
  const username = 'alice';
  const existing = await ctx.users.byUsername(username);
  if (existing) await ctx.db.deleteFrom('users').where('id', '=', existing.id).execute();
  const u = await ctx.users.add({ username, claims: { email: `alice@${ctx.loaded.topology.trustDomain}` } });
  const creds: ZoneDevCredentials = {
    clients: [
      { client_id: s.client_id, client_secret: s.client_secret, grant_types: ['client_credentials', TOKEN_EXCHANGE], scope },
      { client_id: w.client_id, client_secret: w.client_secret, grant_types: ['authorization_code', 'refresh_token'], redirect_uris: [redirect], scope: webScope },
    ],
    users: [{ username: u.username, password: u.password, totp_secret: u.totp_secret! }],
  };
  const bound = new Set(ctx.config.dev.serviceClients.filter((c) => c.certificateBound).map((c) => c.service));
  for (const c of serviceClients(ctx)) {
    if (await ctx.clients.exists(c.client_id)) await ctx.clients.remove(c.client_id);
    await ctx.clients.add({
      clientId: c.client_id,
      name: `${c.client_id} (workload certificate)`,
      grantTypes: c.grant_types as GrantType[],
      scope: c.scope,
      authMethod: 'tls_client_auth',
      tlsSanUri: c.tls_client_auth_san_uri,
      certificateBound: bound.has(c.client_id),
    });
    creds.clients.push(c);
  }
  await sealedPut(JSON.stringify(creds));
  return creds;
}

/** dev.serviceClients as clients: named after the service, bound to its SPIFFE ID. */
function serviceClients(ctx: AuthorityContext): DevClient[] {
  const { topology } = ctx.loaded;
  return ctx.config.dev.serviceClients.map((c) => {
    const svc = topology.services[c.service];
    if (!svc) throw new Error(`authority dev.serviceClients: the topology has no service ${JSON.stringify(c.service)}`);
    return {
      client_id: c.service,
      grant_types: [...c.grantTypes],
      scope: c.scopes.join(' '),
      token_endpoint_auth_method: 'tls_client_auth',
      tls_client_auth_san_uri: serviceSpiffeId(topology.trustDomain, svc.zone, c.service),
    };
  });
}

export { SECRET_NAME as DEV_CREDENTIALS_SECRET };
