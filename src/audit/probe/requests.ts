// Small requests the checks share: a GET with Connection: close, a genuine
// token for a zone (dev mode: client credentials from dev-credentials.json),
// the authority's JWKS, and the route that reflects request headers (if any).
import { exchange, rawRequest, type Exchange, type ExchangeOptions, type ParsedResponse } from './http1.ts';
import type { ProbeContext } from './context.ts';
import type { RouteInfo, ZoneTarget } from './types.ts';

export const hostOf = (url: string) => new URL(url).host;

/** One request on its own connection (Connection: close), first response or why none. */
export async function send(
  ctx: ProbeContext,
  origin: string,
  method: string,
  target: string,
  headers: string[] = [],
  body?: string,
  o: ExchangeOptions = {},
): Promise<{ res?: ParsedResponse; x: Exchange }> {
  const x = await exchange(ctx, origin, rawRequest(method, target, hostOf(origin), [...headers, 'Connection: close'], body), { graceMs: 0, ...o });
  return { res: x.responses[0], x };
}

/** A method the route takes that needs no body: GET if it can, else its first. */
export const methodFor = (r: RouteInfo) => (r.methods.includes('GET') || r.methods.includes('*') ? 'GET' : r.methods[0] ?? 'GET');

export function protectedRoute(z: ZoneTarget): RouteInfo | undefined {
  return z.routes.find((r) => r.protected && methodFor(r) === 'GET') ?? z.routes.find((r) => r.protected);
}

export function jwtRoute(z: ZoneTarget): RouteInfo | undefined {
  return z.routes.find((r) => r.jwt && methodFor(r) === 'GET') ?? z.routes.find((r) => r.jwt);
}

async function json(ctx: ProbeContext, url: string, init: { method?: string; headers?: string[]; body?: string } = {}): Promise<unknown> {
  const u = new URL(url);
  const { res, x } = await send(ctx, u.origin, init.method ?? 'GET', u.pathname + u.search, init.headers, init.body);
  if (!res) throw new Error(`${url}: ${x.error ?? x.cut ?? 'no answer'}`);
  if (res.status !== 200) throw new Error(`${url}: ${res.status}`);
  return JSON.parse(res.body.toString('utf8'));
}

interface Discovery {
  issuer: string;
  token_endpoint: string;
  jwks_uri: string;
}

const discoveries = new WeakMap<ProbeContext, Map<string, Promise<Discovery>>>();

export function discovery(ctx: ProbeContext, authority: string): Promise<Discovery> {
  let m = discoveries.get(ctx);
  if (!m) discoveries.set(ctx, (m = new Map()));
  let d = m.get(authority);
  if (!d) m.set(authority, (d = json(ctx, authority.replace(/\/$/, '') + '/.well-known/openid-configuration') as Promise<Discovery>));
  return d;
}

export async function jwks(ctx: ProbeContext, authority: string): Promise<{ keys: Array<Record<string, string>> }> {
  const d = await discovery(ctx, authority);
  return (await json(ctx, d.jwks_uri)) as { keys: Array<Record<string, string>> };
}

const tokens = new WeakMap<ProbeContext, Map<string, Promise<string | undefined>>>();

/** A genuine access token of `zone` (dev mode only), or undefined when the plan has no client for it. */
export function genuineToken(ctx: ProbeContext, zone: ZoneTarget, scopes: string[] = []): Promise<string | undefined> {
  const client = ctx.plan.clients[zone.name];
  if (!client?.client_secret || !zone.authority || !client.grant_types.includes('client_credentials')) return Promise.resolve(undefined);
  let m = tokens.get(ctx);
  if (!m) tokens.set(ctx, (m = new Map()));
  const key = `${zone.name} ${scopes.join(' ')}`;
  let t = m.get(key);
  if (!t) {
    const authority = zone.authority;
    const secret = client.client_secret;
    const granted = client.scope.split(' ').filter((s) => scopes.length === 0 || scopes.includes(s));
    m.set(
      key,
      (t = (async () => {
        const d = await discovery(ctx, authority);
        const basic = Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(secret)}`).toString('base64');
        const body = new URLSearchParams({ grant_type: 'client_credentials', ...(granted.length > 0 ? { scope: granted.join(' ') } : {}) }).toString();
        const r = (await json(ctx, d.token_endpoint, {
          method: 'POST',
          headers: [`Authorization: Basic ${basic}`, 'Content-Type: application/x-www-form-urlencoded'],
          body,
        })) as { access_token?: string };
        return r.access_token;
      })().catch(() => undefined)),
    );
  }
  return t;
}

export interface Reflector {
  route: RouteInfo;
  /** Headers that make the route answer (a genuine token when it needs one). */
  auth: string[];
}

/** The first route whose answer repeats a header we sent: where spoofed headers can be seen arriving upstream. */
export async function findReflector(ctx: ProbeContext, zone: ZoneTarget, nonce: string): Promise<Reflector | undefined> {
  if (!zone.gateway) return undefined;
  for (const route of zone.routes.slice(0, 8)) {
    if (methodFor(route) !== 'GET') continue;
    let auth: string[] = [];
    if (route.protected) {
      if (!route.jwt) continue;
      const t = await genuineToken(ctx, zone, route.scopes);
      if (!t) continue;
      auth = [`Authorization: Bearer ${t}`];
    }
    const { res } = await send(ctx, zone.gateway, 'GET', route.path, [...auth, `X-Probe-Reflect: ${nonce}`], undefined, { freshSource: true });
    if (res && res.status < 300 && res.body.includes(nonce)) return { route, auth };
  }
  return undefined;
}

/** Refusals that prove nothing about the request: the source was throttled first. */
export const THROTTLED = 429;

export const statusList = (xs: Array<number | string>) => {
  const counts = new Map<string, number>();
  for (const s of xs) counts.set(String(s), (counts.get(String(s)) ?? 0) + 1);
  return [...counts].map(([s, n]) => (n > 1 ? `${s}×${n}` : s)).join(', ');
};
