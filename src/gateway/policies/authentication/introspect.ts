// Opaque tokens of an external identity provider, checked by RFC 7662
// introspection. Answers are cached no longer than the token lives (and never
// longer than `cacheSeconds`); an inactive answer is cached briefly too, so a
// flood of bad tokens does not become a flood of introspection calls.
import { request, Agent } from 'undici';
import type { Clock } from '../../../shared/clock.ts';
import type { Identity } from '../policy.ts';
import { TokenRejected } from './verify-token.ts';

export interface Introspector {
  verify(token: string): Promise<Identity>;
  close(): void;
}

export function createIntrospector(o: {
  endpoint: string;
  clientId: string;
  clientSecret: string;
  cacheSeconds: number;
  clock: Clock;
  ca?: string;
  maxEntries?: number;
}): Introspector {
  const dispatcher = new Agent({ connect: o.ca ? { ca: o.ca } : {}, headersTimeout: 5_000, bodyTimeout: 5_000 });
  const cache = new Map<string, { identity?: Identity; until: number }>();
  const max = o.maxEntries ?? 10_000;
  const basic = 'Basic ' + Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(o.clientSecret)}`).toString('base64');
  return {
    async verify(token) {
      const now = o.clock.now();
      const hit = cache.get(token);
      if (hit && hit.until > now) {
        if (!hit.identity) throw new TokenRejected('the token is not active');
        return hit.identity;
      }
      let body: Record<string, unknown>;
      try {
        const res = await request(o.endpoint, {
          method: 'POST',
          dispatcher,
          headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        });
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new Error(`introspection answered ${res.statusCode}`);
        }
        body = (await res.body.json()) as Record<string, unknown>;
      } catch {
        // fail closed: an unreachable introspection endpoint authenticates nobody
        throw new TokenRejected('the token could not be checked');
      }
      if (cache.size >= max) cache.delete(cache.keys().next().value as string);
      if (body.active !== true || typeof body.sub !== 'string') {
        cache.set(token, { until: now + 5_000 });
        throw new TokenRejected('the token is not active');
      }
      const exp = typeof body.exp === 'number' ? body.exp : now / 1000 + o.cacheSeconds;
      const clientId = typeof body.client_id === 'string' ? body.client_id : undefined;
      const identity: Identity = {
        kind: clientId !== undefined && clientId === body.sub ? 'client' : 'user',
        sub: body.sub,
        clientId,
        issuer: typeof body.iss === 'string' ? body.iss : undefined,
        scopes: new Set(typeof body.scope === 'string' ? body.scope.split(' ').filter(Boolean) : []),
        roles: new Set(Array.isArray(body.roles) ? body.roles.filter((r): r is string => typeof r === 'string') : []),
        acr: typeof body.acr === 'string' ? body.acr : undefined,
        amr: Array.isArray(body.amr) ? body.amr.filter((r): r is string => typeof r === 'string') : [],
        jti: typeof body.jti === 'string' ? body.jti : undefined,
        exp,
        token,
        act: body.act !== null && typeof body.act === 'object' && !Array.isArray(body.act) ? (body.act as Record<string, unknown>) : undefined,
      };
      if (exp * 1000 <= now) throw new TokenRejected('the token expired');
      cache.set(token, { identity, until: Math.min(exp * 1000, now + o.cacheSeconds * 1000) });
      return identity;
    },
    close: () => void dispatcher.close(),
  };
}
