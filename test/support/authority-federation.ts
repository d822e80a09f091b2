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
import { readFederationGrant } from '../../src/authority/federation-seed.ts';
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
  const started: RunningAuthority[] = [];
  try {
    const corp = await startAuthority({ topology, zone: 'corp', stateDir, dev: true, clock, logger: silentLogger() });
    started.push(corp);
    const internal = await startAuthority({ topology, zone: 'internal', stateDir, dev: true, clock, logger: silentLogger() });
    started.push(internal);
    // corp registers internal's sign-in client itself once internal has published where it runs
    // (federation-seed.ts, every 500 ms): its secret, from the grant, is the one internal is given
    let grant: ReturnType<typeof readFederationGrant>;
    for (let i = 0; i < 200; i++) {
      grant = readFederationGrant(stateDir, 'internal', 'corp');
      if (grant?.client_id === 'internal-sso' && ((await corp.admin.clients.find('internal-sso'))?.metadata.redirect_uris as string[] | undefined)?.[0] === `${internal.issuer}/federation/callback`) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (!grant) throw new Error("corp did not register internal's sign-in client");
    process.env.GH_TEST_FED_SECRET = grant.client_secret;
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
  } catch (error) {
    // a pair that did not come up leaves nothing running (the test's process could not end)
    for (const a of started.reverse()) await a.close().catch(() => undefined);
    throw error;
  }
}
