import type { Command } from 'commander';

interface DevClient {
  client_id: string;
  client_secret?: string;
  grant_types: string[];
  redirect_uris?: string[];
  scope: string;
}
interface DevUser {
  username: string;
  password: string;
  totp_secret: string;
}

/** Scopes as given: repeated flags, each a space- or comma-separated list (the one separator rule of the CLI). */
const scopesOf = (values: string[]) => values.flatMap((v) => v.split(/[\s,]+/)).filter(Boolean);

export function register(program: Command): void {
  program
    .command('token')
    .description(
      "a test access token of a zone, from `gatehouse up`'s dev credentials (dev mode only): the confidential client's " +
        '(client credentials), or with --user a signed-in user (authorization code + PKCE through the real password and TOTP forms)',
    )
    .requiredOption('-z, --zone <zone>', 'the zone whose authority issues the token')
    .option('-s, --scope <scopes...>', "scopes (space- or comma-separated, or the flag repeated); default: every scope the client may have")
    .option('-u, --user <username>', 'a seeded user of the zone (see dev-credentials.json); absent: the client itself')
    .option('--client <id>', 'which seeded client; absent: the first that fits the grant')
    .option('--state-dir <dir>', 'state directory of `gatehouse up`', '.gatehouse')
    .option('--json', "the authority's whole token response as one JSON document")
    .action(async (o: { zone: string; scope?: string[]; user?: string; client?: string; stateDir: string; json?: boolean }) => {
      const { readFileSync, existsSync } = await import('node:fs');
      const path = await import('node:path');
      const refuse = (message: string, code = 1) => {
        process.stderr.write(`gatehouse token: ${message}\n`);
        process.exitCode = code;
      };
      const credsFile = path.join(o.stateDir, 'dev-credentials.json');
      const endpointsFile = path.join(o.stateDir, 'endpoints.json');
      if (!existsSync(endpointsFile)) return refuse(`no running topology in ${o.stateDir} (no endpoints.json; start it with gatehouse up)`);
      if (!existsSync(credsFile)) return refuse(`dev mode only: ${credsFile} does not exist (gatehouse up --no-dev seeds no credentials; use your own client)`);
      const endpoints = JSON.parse(readFileSync(endpointsFile, 'utf8')) as { caBundle: string; zones: Record<string, { authority?: string }> };
      const creds = JSON.parse(readFileSync(credsFile, 'utf8')) as { zones: Record<string, { clients: DevClient[]; users: DevUser[] }> };
      const authority = endpoints.zones[o.zone]?.authority;
      if (!authority) {
        const { nearest } = await import('../../topology/suggest.ts');
        const hint = nearest(o.zone, Object.keys(endpoints.zones).filter((z) => endpoints.zones[z].authority));
        return refuse(`zone ${JSON.stringify(o.zone)} has no authority${hint ? ` (did you mean ${hint}?)` : ''}; zones with one: ${Object.keys(endpoints.zones).filter((z) => endpoints.zones[z].authority).join(', ')}`, 2);
      }
      const zone = creds.zones[o.zone];
      if (!zone) return refuse(`no dev credentials for zone ${o.zone}`);
      const { Agent } = await import('undici');
      const agent = new Agent({ connect: { ca: readFileSync(endpoints.caBundle, 'utf8') } });
      const { fetchToken } = await import('../dev-token.ts');
      try {
        const grant = o.user ? 'authorization_code' : 'client_credentials';
        const client = zone.clients.find((c) => (o.client ? c.client_id === o.client : c.grant_types.includes(grant) && c.client_secret));
        if (!client) return refuse(o.client ? `no seeded client ${o.client} in zone ${o.zone}` : `no seeded ${grant} client in zone ${o.zone}`);
        const scopes = o.scope ? scopesOf(o.scope) : client.scope.split(' ').filter((s) => !['openid', 'offline_access'].includes(s));
        const allowed = new Set(client.scope.split(' '));
        const extra = scopes.filter((s) => !allowed.has(s));
        if (extra.length > 0) return refuse(`client ${client.client_id} may not have ${extra.join(', ')}; it may have: ${client.scope}`, 2);
        let user: DevUser | undefined;
        if (o.user) {
          user = zone.users.find((u) => u.username === o.user);
          if (!user) return refuse(`no seeded user ${o.user} in zone ${o.zone}; seeded: ${zone.users.map((u) => u.username).join(', ') || 'none'}`);
        }
        const response = await fetchToken({ authority, agent, client, scopes, user });
        process.stdout.write(o.json ? JSON.stringify(response) + '\n' : `${response.access_token}\n`);
      } catch (e) {
        return refuse((e as Error).message);
      } finally {
        await agent.close();
      }
    });
}
