import type { Command } from 'commander';
import { usage } from '../usage.ts';
import { zoneOptions, openZone, type ZoneOptions } from '../zone-stores.ts';

type Common = ZoneOptions;
const common = (c: Command) => zoneOptions(c, 'clients');
const open = openZone;

export function register(program: Command): void {
  const clients = program.command('clients').description("manage a zone authority's OAuth clients");

  common(clients.command('add'))
    .description('register a client; a generated secret is printed once and stored only as a keyed hash')
    .option('--id <client_id>', 'client id (default: generated)')
    .option('--grant <type...>', 'grant types: client_credentials, authorization_code, refresh_token, token-exchange (default: client_credentials; none with --revocation-feed)')
    .option('--redirect-uri <uri...>', 'exact redirect URIs (authorization_code)')
    .option('--scope <scopes>', 'scopes the client may have, space- or comma-separated', '')
    .option('--auth <method>', 'client_secret_basic | private_key_jwt | tls_client_auth | none (public, PKCE)', 'client_secret_basic')
    .option('--jwks <file>', 'public JWK set file (private_key_jwt)')
    .option('--tls-san-uri <uri>', 'SAN URI the client certificate must carry (tls_client_auth)')
    .option('--name <name>', 'display name')
    .option('--revocation-feed', "may read GET /revocations (the zone gateway's client; client_secret_basic or tls_client_auth); without --grant it can do nothing else", false)
    .option('--first-party', "the zone's own application: its users are not asked to consent (default: a third party, consent once per scope set)", false)
    .option('--certificate-bound', 'access tokens bound to the client certificate (RFC 8705 cnf.x5t#S256; tls_client_auth)', false)
    .option('--dpop-bound', 'the token endpoint requires a DPoP proof (RFC 9449): every access token is DPoP-bound', false)
    .action(async (o: Common & { id?: string; grant?: string[]; redirectUri?: string[]; scope: string; auth: string; jwks?: string; tlsSanUri?: string; name?: string; revocationFeed: boolean; firstParty: boolean; certificateBound: boolean; dpopBound: boolean }) => {
      const { readFileSync } = await import('node:fs');
      const { TOKEN_EXCHANGE } = await import('../../authority/index.ts');
      const s = await open(o);
      try {
        const GRANTS = ['authorization_code', 'refresh_token', 'client_credentials', TOKEN_EXCHANGE] as const;
        const METHODS = ['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'none'] as const;
        // the gateway's feed client gets no grant unless asked: it only reads the feed
        const grantTypes = (o.grant ?? (o.revocationFeed ? [] : ['client_credentials'])).map((g) => {
          const grant = g === 'token-exchange' ? TOKEN_EXCHANGE : g;
          const known = GRANTS.find((k) => k === grant);
          if (!known) throw usage('clients', `unknown grant ${JSON.stringify(g)} (${GRANTS.join(', ')}, token-exchange)`);
          return known;
        });
        const authMethod = METHODS.find((m) => m === o.auth);
        if (!authMethod) throw usage('clients', `unknown --auth ${JSON.stringify(o.auth)} (${METHODS.join(', ')})`);
        const created = await s.clients.add({
          clientId: o.id,
          grantTypes,
          redirectUris: o.redirectUri,
          scope: o.scope.split(/[\s,]+/).filter(Boolean).join(' '),
          authMethod,
          jwks: o.jwks ? JSON.parse(readFileSync(o.jwks, 'utf8')) : undefined,
          tlsSanUri: o.tlsSanUri,
          name: o.name,
          revocationFeed: o.revocationFeed,
          firstParty: o.firstParty,
          certificateBound: o.certificateBound,
          dpopBound: o.dpopBound,
        });
        process.stdout.write(JSON.stringify(created, null, 2) + '\n');
        if (created.client_secret) process.stderr.write('gatehouse: the client secret is shown once; store it now\n');
      } finally {
        await s.storage.close();
      }
    });

  common(clients.command('list'))
    .description('list the clients (never their secrets)')
    .action(async (o: Common) => {
      const s = await open(o);
      try {
        process.stdout.write(JSON.stringify(await s.clients.list(), null, 2) + '\n');
      } finally {
        await s.storage.close();
      }
    });

  common(clients.command('remove'))
    .description('remove a client and revoke every grant and refresh token it holds')
    .argument('<client_id>')
    .action(async (clientId: string, o: Common) => {
      const s = await open(o);
      try {
        if (!(await s.clients.remove(clientId))) {
          process.stderr.write(`gatehouse: no client ${clientId} in zone ${o.zone}\n`);
          process.exitCode = 1;
        } else process.stdout.write(`removed ${clientId}\n`);
      } finally {
        await s.storage.close();
      }
    });
}
