// Revocation status of trusted zones' tokens, read from each issuer's
// revocation feed (revocation-feed.ts), as the zone's gateway reads it.
//
// Before a token of another zone is exchanged (token-exchange.ts) its issuer's
// feed is read afresh (incrementally, `since` the last answer): a token
// revoked there before the exchange request is refused, and when the feed
// cannot be read the exchange is refused too (fail closed). Every few seconds
// the feeds of issuers whose tokens were exchanged here are polled, and the
// tokens exchanged from a subject token that is now revoked are revoked here
// too (so this zone's feed lists them and its gateway refuses them).
//
// Credentials: a zone of the same state dir grants this zone a feed-only
// client at its start (zone-trust.ts); a remote zone's entry in trustedZones
// names the client and the environment variable holding its secret.
import { request } from 'node:https';
import { existsSync, readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import path from 'node:path';
import type { Kysely } from 'kysely';
import type { Database } from './db/schema.ts';
import type { AuthorityConfig } from '../topology/schema-authority.ts';
import type { Logger } from '../shared/logger.ts';
import { readBody } from '../shared/body.ts';
import { readFeedGrant } from './zone-trust.ts';
import { revokeDescendants } from './access-token.ts';

const MAX_FEED_BYTES = 4 * 1024 * 1024;
const FEED_TIMEOUT_MS = 5_000;
export const ISSUER_POLL_MS = 5_000;

export class RevocationStatusUnknown extends Error {}

interface IssuerState {
  revoked: Map<string, number>;
  until?: number;
}

export interface IssuerRevocations {
  /** Throws RevocationStatusUnknown when the issuer's feed cannot be read now. */
  isRevoked(issuer: string, zone: string, jti: string): Promise<boolean>;
  /** polls every issuer whose tokens were exchanged here; revokes descendants of what it learns */
  poll(): Promise<void>;
  close(): void;
}

export function createIssuerRevocations(o: {
  stateDir: string;
  zone: string;
  ownIssuer: string;
  trustedZones: AuthorityConfig['trustedZones'];
  db: Kysely<Database>;
  now: () => number;
  log: Logger;
  onDescendantsRevoked?: (issuer: string, count: number) => void;
}): IssuerRevocations {
  const states = new Map<string, IssuerState>();
  const zoneOf = new Map<string, string>();
  const remote = new Map<string, Extract<AuthorityConfig['trustedZones'][number], object>>();
  for (const t of o.trustedZones) if (typeof t !== 'string') remote.set(t.issuer, t);
  const devCa = path.join(o.stateDir, 'tls', 'dev-ca.pem');

  function credentials(issuer: string, zone: string): { url: URL; id: string; secret: string } {
    const r = remote.get(issuer);
    if (r) {
      const secret = process.env[r.revocationFeed.clientSecretEnv];
      if (!secret) throw new RevocationStatusUnknown(`the secret for ${r.zone}'s revocation feed is not in $${r.revocationFeed.clientSecretEnv}`);
      return { url: new URL(r.revocationFeed.url ?? `${issuer}/revocations`), id: r.revocationFeed.clientId, secret };
    }
    const grant = readFeedGrant(o.stateDir, o.zone, zone);
    if (!grant || grant.issuer !== issuer)
      throw new RevocationStatusUnknown(`zone ${zone}'s authority has not granted this zone its revocation feed (start it)`);
    return { url: new URL(`${issuer}/revocations`), id: grant.client_id, secret: grant.client_secret };
  }

  function get(url: URL, id: string, secret: string, ca: string[] | undefined): Promise<{ jtis: { jti: string; exp: number }[]; until: number }> {
    return new Promise((resolve, reject) => {
      const auth = Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64');
      const req = request(url, { method: 'GET', headers: { authorization: `Basic ${auth}`, accept: 'application/json' }, ca, timeout: FEED_TIMEOUT_MS }, (res) => {
        readBody(res, MAX_FEED_BYTES).then((body) => {
          if (res.statusCode !== 200) return reject(new RevocationStatusUnknown(`the revocation feed answered ${res.statusCode}`));
          try {
            const v = JSON.parse(body.toString('utf8')) as { jtis: { jti: string; exp: number }[]; until: number };
            if (!Array.isArray(v.jtis) || typeof v.until !== 'number') throw new Error('shape');
            resolve(v);
          } catch {
            reject(new RevocationStatusUnknown('the revocation feed answered something else than a feed'));
          }
        }, reject);
      });
      req.on('timeout', () => req.destroy(new RevocationStatusUnknown('the revocation feed did not answer in time')));
      req.on('error', (e) => reject(e instanceof RevocationStatusUnknown ? e : new RevocationStatusUnknown(`the revocation feed cannot be reached (${(e as NodeJS.ErrnoException).code ?? e.message})`)));
      req.end();
    });
  }

  /** Reads what the issuer revoked since the last read; revokes descendants of what is new. */
  async function refresh(issuer: string, zone: string): Promise<IssuerState> {
    zoneOf.set(issuer, zone);
    const { url, id, secret } = credentials(issuer, zone);
    let state = states.get(issuer);
    if (!state) states.set(issuer, (state = { revoked: new Map() }));
    if (state.until !== undefined) url.searchParams.set('since', String(state.until));
    const ca = !remote.has(issuer) && existsSync(devCa) ? [...rootCertificates, readFileSync(devCa, 'utf8')] : undefined;
    const answer = await get(url, id, secret, ca);
    const fresh: string[] = [];
    for (const { jti, exp } of answer.jtis) {
      if (typeof jti !== 'string') continue;
      if (!state.revoked.has(jti)) fresh.push(jti);
      state.revoked.set(jti, Number(exp) * 1000);
    }
    state.until = Math.max(state.until ?? 0, answer.until);
    const now = o.now();
    for (const [jti, exp] of state.revoked) if (exp + 60_000 < now) state.revoked.delete(jti);
    if (fresh.length > 0) {
      const n = await revokeDescendants(o.db, o.ownIssuer, issuer, fresh, now);
      if (n > 0) o.onDescendantsRevoked?.(issuer, n);
    }
    return state;
  }

  let polling: Promise<void> | undefined;
  return {
    async isRevoked(issuer, zone, jti) {
      const state = await refresh(issuer, zone);
      return state.revoked.has(jti);
    },
    poll() {
      polling ??= (async () => {
        try {
          // issuers of live exchanged tokens (also after a restart), and those used since
          const rows = await o.db
            .selectFrom('token_index')
            .select('subject_iss')
            .distinct()
            .where('subject_iss', 'is not', null)
            .where('subject_iss', '!=', o.ownIssuer)
            .where('revoked', '=', 0)
            .where('expires_at', '>', o.now())
            .execute();
          const issuers = new Set([...zoneOf.keys(), ...rows.map((r) => r.subject_iss as string)]);
          for (const issuer of issuers) {
            const zone = zoneOf.get(issuer) ?? remote.get(issuer)?.zone ?? localZoneOf(issuer);
            if (!zone) continue;
            try {
              await refresh(issuer, zone);
            } catch (err) {
              o.log.warn({ issuer, reason: (err as Error).message }, 'trusted issuer revocation feed unavailable');
            }
          }
        } finally {
          polling = undefined;
        }
      })();
      return polling;
    },
    close() {
      states.clear();
    },
  };

  function localZoneOf(issuer: string): string | undefined {
    for (const t of o.trustedZones) if (typeof t === 'string' && readFeedGrant(o.stateDir, o.zone, t)?.issuer === issuer) return t;
    return undefined;
  }
}
