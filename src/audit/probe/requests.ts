// Small requests the checks share: a GET with Connection: close, a genuine
// token for a zone (dev mode: client credentials from dev-credentials.json),
// the authority's JWKS, and the route that reflects request headers (if any).
import { exchange, rawRequest, type Exchange, type ExchangeOptions, type ParsedResponse } from './http1.ts';
import type { ProbeContext } from './context.ts';
import { dpopKey, dpopProof, htuOf, type DpopKey } from '../../shared/dpop-client.ts';
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
  // one a genuine client token passes (the control) if there is one
  const jwt = z.routes.filter((r) => r.jwt);
  return jwt.find((r) => !r.mfa && methodFor(r) === 'GET') ?? jwt.find((r) => !r.mfa) ?? jwt.find((r) => methodFor(r) === 'GET') ?? jwt[0];
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
/** The DPoP key of this run (one per run), and the tokens bound to it. */
const dpopKeys = new WeakMap<ProbeContext, Promise<DpopKey>>();
const boundTokens = new WeakMap<ProbeContext, Set<string>>();
const boundSet = (ctx: ProbeContext) => {
  let b = boundTokens.get(ctx);
  if (!b) boundTokens.set(ctx, (b = new Set()));
  return b;
};

function keyOf(ctx: ProbeContext): Promise<DpopKey> {
  let k = dpopKeys.get(ctx);
  if (!k) dpopKeys.set(ctx, (k = dpopKey()));
  return k;
}

/** A nonce the server asked for (RFC 9449 §8, §9): a 400/401 use_dpop_nonce with a DPoP-Nonce header. */
function askedNonce(res: ParsedResponse | undefined): string | undefined {
  if (!res || (res.status !== 400 && res.status !== 401)) return undefined;
  const nonce = res.headers['dpop-nonce'];
  const said = `${res.headers['www-authenticate'] ?? ''} ${res.body.toString('utf8', 0, 512)}`;
  return nonce && /use_dpop_nonce/.test(said) ? nonce : undefined;
}

/**
 * A genuine access token of `zone` (dev mode only), or undefined when the plan has no client for it.
 * In a zone whose JWTs must be sender-constrained it is DPoP-bound to this run's key (present it with `credentials`).
 */
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
        const headers = [`Authorization: Basic ${basic}`, 'Content-Type: application/x-www-form-urlencoded'];
        const u = new URL(d.token_endpoint);
        const request = async (nonce?: string) => {
          const proof = zone.senderConstrained ? [`DPoP: ${await dpopProof(await keyOf(ctx), { htm: 'POST', htu: htuOf(d.token_endpoint), nonce })}`] : [];
          return (await send(ctx, u.origin, 'POST', u.pathname + u.search, [...headers, ...proof], body)).res;
        };
        let res = await request();
        const nonce = zone.senderConstrained ? askedNonce(res) : undefined;
        if (nonce !== undefined) res = await request(nonce);
        if (res?.status !== 200) return undefined;
        const token = (JSON.parse(res.body.toString('utf8')) as { access_token?: string }).access_token;
        if (token !== undefined && zone.senderConstrained) boundSet(ctx).add(token);
        return token;
      })().catch(() => undefined)),
    );
  }
  return t;
}

/**
 * Headers presenting `token` for one request to `origin`+`target`: a DPoP proof beside a token bound to this run's
 * key (or any token on a sender-constrained route: a forgery is then refused for itself, not for a missing proof).
 */
export async function credentials(ctx: ProbeContext, token: string, o: { method: string; origin: string; target: string; dpop?: boolean; nonce?: string }): Promise<string[]> {
  if (!boundSet(ctx).has(token) && !o.dpop) return [`Authorization: Bearer ${token}`];
  const proof = await dpopProof(await keyOf(ctx), { htm: o.method, htu: htuOf(new URL(o.target, o.origin).href), token, nonce: o.nonce });
  return [`Authorization: DPoP ${token}`, `DPoP: ${proof}`];
}

/** A request carrying `token` (see `credentials`); once more with the nonce when the gateway asks for one. */
export async function sendWithToken(
  ctx: ProbeContext,
  token: string,
  r: { origin: string; method: string; target: string; headers?: string[]; dpop?: boolean },
  o: ExchangeOptions = {},
): Promise<{ res?: ParsedResponse; x: Exchange }> {
  let out = await send(ctx, r.origin, r.method, r.target, [...(await credentials(ctx, token, r)), ...(r.headers ?? [])], undefined, o);
  const nonce = boundSet(ctx).has(token) || r.dpop ? askedNonce(out.res) : undefined;
  if (nonce !== undefined) out = await send(ctx, r.origin, r.method, r.target, [...(await credentials(ctx, token, { ...r, nonce })), ...(r.headers ?? [])], undefined, o);
  return out;
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
      if (!route.jwt || route.mfa) continue;
      const t = await genuineToken(ctx, zone, route.scopes);
      if (!t) continue;
      // a DPoP proof is for one request: a route reached with a bound token cannot be reused as a reflector
      if (boundSet(ctx).has(t)) continue;
      auth = [`Authorization: Bearer ${t}`];
    }
    // with a genuine token: from the address it was obtained from (see token.control)
    const { res } = await send(ctx, zone.gateway, 'GET', route.path, [...auth, `X-Probe-Reflect: ${nonce}`], undefined, auth.length > 0 ? {} : { freshSource: true });
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
