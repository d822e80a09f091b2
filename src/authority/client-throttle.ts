// Client secrets are throttled like passwords: an HTTP Basic client
// authentication at the token, introspection, revocation and PAR endpoints is
// charged to the client's budget (per client and source, and client-wide at
// 10x) and the source's before oidc-provider compares the secret; only an
// answer that is not `invalid_client` gives the charge back. So a burst of
// parallel guesses cannot all be compared, and a locked key is refused before
// the comparison. Only a lock, no growing delay: a delay on a client-wide key
// would let anyone slow a service down.
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorityContext } from './context.ts';
import type { Budget, Charge, Reservation, ThrottleVerdict } from './throttle.ts';

/** Endpoints where a client authenticates (oidc-provider's default routes). */
const CLIENT_AUTH_PATHS = new Set(['/token', '/token/introspection', '/token/revocation', '/request']);

/** The client id of an HTTP Basic header (RFC 6749 §2.3.1: form-encoded), or undefined. */
export function basicClientId(header: string | undefined): string | undefined {
  if (!header || header.length > 2048) return undefined;
  const m = /^Basic ([A-Za-z0-9+/]+=*)$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return undefined;
  try {
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' ')).slice(0, 128);
  } catch {
    return undefined;
  }
}

export interface ClientSecretThrottle {
  /** charge an attempt by `clientId` from `source` before its secret is compared */
  reserve(clientId: string, source: string): Promise<ThrottleVerdict & { charges: Charge[] }>;
  /** the secret was right: give the charges back */
  refund(charges: Charge[]): Promise<void>;
  /** the secret was wrong: keep the charges; audit a lockout this failure started */
  failed(verdict: Reservation, clientId: string, source: string): void;
}

export function clientSecretThrottle(ctx: AuthorityContext): ClientSecretThrottle {
  const budget = ctx.config.throttle.client;
  const clientWide: Budget = { maxFailures: budget.maxFailures * 10, lockoutSeconds: budget.lockoutSeconds };
  const source: Budget = ctx.config.throttle.source;
  return {
    async reserve(clientId, from) {
      const charges: Charge[] = [
        { key: `client:${clientId}:${from}`, budget, delays: false },
        { key: `client:${clientId}`, budget: clientWide, delays: false },
        { key: `csrc:${from}`, budget: source, delays: false },
      ];
      return { ...(await ctx.throttle.reserve(charges)), charges };
    },
    async refund(charges) {
      for (const c of charges) await ctx.throttle.refund(c.key, c.budget);
    },
    failed(verdict, clientId, from) {
      for (const l of verdict.locks)
        ctx.audit('lockout', { client_id: clientId, source: from, budget: l.key.startsWith('csrc:') ? 'client-source' : 'client', until: new Date(l.until).toISOString() });
    },
  };
}

export function installClientThrottle(provider: Provider, ctx: AuthorityContext): void {
  const throttle = clientSecretThrottle(ctx);
  provider.use(async (c: KoaContextWithOIDC, next) => {
    if (c.method !== 'POST' || !CLIENT_AUTH_PATHS.has(c.path)) return next();
    const clientId = basicClientId(c.get('authorization') || undefined);
    if (clientId === undefined) return next();
    const from = c.req.socket.remoteAddress ?? 'unknown';
    const verdict = await throttle.reserve(clientId, from);
    if (!verdict.allowed) {
      ctx.audit('client.auth_failure', { client_id: clientId, source: from, reason: verdict.reason === 'locked' ? 'locked out' : 'too fast' });
      c.status = 429;
      c.set('retry-after', String(verdict.retryAfterSec));
      c.set('cache-control', 'no-store');
      c.body = { error: 'invalid_client', error_description: `too many failed client authentications; retry in ${verdict.retryAfterSec} seconds` };
      return;
    }
    let failed = true;
    try {
      await next();
      failed = c.status === 401 && (c.body as { error?: string } | undefined)?.error === 'invalid_client';
    } finally {
      if (failed) {
        throttle.failed(verdict, clientId, from);
        ctx.audit('client.auth_failure', { client_id: clientId, source: from, reason: 'bad credentials' });
      } else await throttle.refund(verdict.charges);
    }
  });
}
