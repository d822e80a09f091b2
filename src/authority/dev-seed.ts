// Dev mode only: demo identities of a zone, created at first start and the
// same on every restart (the issued secrets are kept sealed under the
// key-encryption key so they can be handed to `gatehouse up` again).
import type { AuthorityContext } from './context.ts';
import { TOKEN_EXCHANGE } from './client-registry.ts';

export interface DevClient {
  client_id: string;
  client_secret?: string;
  grant_types: string[];
  redirect_uris?: string[];
  scope: string;
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
    if (present.every(Boolean) && users.every((u) => u && u.mfa)) return creds;
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
  const webScope = ['openid', 'offline_access', ...ctx.scopes].join(' ');
  const w = await ctx.clients.add({
    clientId: web,
    name: `${ctx.zone} demo web app`,
    grantTypes: ['authorization_code', 'refresh_token'],
    redirectUris: [redirect],
    postLogoutRedirectUris: [redirect],
    scope: webScope,
    authMethod: 'client_secret_basic',
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
  await sealedPut(JSON.stringify(creds));
  return creds;
}

export { SECRET_NAME as DEV_CREDENTIALS_SECRET };
