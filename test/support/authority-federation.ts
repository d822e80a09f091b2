// Two zone authorities on one machine for federation tests: `corp`, the
// upstream OpenID Provider (on localhost), and `internal`, which delegates
// sign-in to it (on 127.0.0.1: cookies are per host, not per port, as in a
// real browser). corp's dev user alice (TOTP) is in the corp-admins group;
// internal links her by verified e-mail to its own alice, maps corp-admins to
// admin and takes corp's MFA (mfa: upstream).
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import * as oidc from 'openid-client';
import { trustingFetch, silentLogger, REDIRECT, type TestFetch } from './authority-harness.ts';
import { loadTopology } from '../../src/topology/load.ts';
import { startAuthority, type RunningAuthority } from '../../src/authority/index.ts';
import type { Clock } from '../../src/shared/clock.ts';

export interface FederatedPair {
  corp: RunningAuthority;
  internal: RunningAuthority;
  fetch: TestFetch;
  /** openid-client configuration of internal's dev web client */
  web: oidc.Configuration;
  close(): Promise<void>;
}

/** `extraUpstreams`: more YAML items of internal's federation list (indented as list items). */
export async function startFederatedPair(dir: string, clock: Clock, extraUpstreams = ''): Promise<FederatedPair> {
  const stateDir = path.join(dir, 'state');
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: test.local
zones:
  corp:
    authority:
      listen: localhost:0
      scopes: [directory:read]
  internal:
    authority:
      listen: 127.0.0.1:0
      scopes: [admin:read]
      federation:
        - { name: corp, label: Sign in with Corp SSO, zone: corp, clientId: internal-sso, clientSecretEnv: GH_TEST_FED_SECRET, link: email, allowedDomains: [test.local], roles: { map: { corp-admins: admin } }, mfa: upstream }
${extraUpstreams}`,
  );
  const topology = loadTopology(file);
  const corp = await startAuthority({ topology, zone: 'corp', stateDir, dev: true, clock, logger: silentLogger() });
  const internal = await startAuthority({ topology, zone: 'internal', stateDir, dev: true, clock, logger: silentLogger() });
  const sso = await corp.admin.clients.add({
    clientId: 'internal-sso',
    name: 'Internal back office',
    grantTypes: ['authorization_code'],
    redirectUris: [`${internal.issuer}/federation/callback`],
    scope: 'openid profile email',
    authMethod: 'client_secret_basic',
    firstParty: true,
  });
  process.env.GH_TEST_FED_SECRET = sso.client_secret;
  const alice = (await corp.admin.users.byUsername('alice'))!;
  await corp.admin.users.setClaims(alice.id, { ...alice.claims, roles: ['corp-admins', 'staff'] });
  const f = trustingFetch(internal.caFile!);
  const w = internal.devCredentials!.clients.find((c) => c.client_id === 'internal-web')!;
  const web = await oidc.discovery(new URL(internal.issuer), w.client_id, { redirect_uris: [REDIRECT] }, oidc.ClientSecretBasic(w.client_secret!), { [oidc.customFetch]: f.fetch as any });
  return {
    corp,
    internal,
    fetch: f.fetch,
    web,
    async close() {
      await internal.close();
      await corp.close();
      await f.close();
    },
  };
}
