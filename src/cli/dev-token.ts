// A test token from a zone's authority, for `gatehouse token`: client
// credentials for a confidential client, or for a user the authorization code
// flow with PKCE through the authority's real sign-in forms (password, then
// the TOTP code computed from the seeded secret), as a browser would. Dev mode
// only: the credentials come from `gatehouse up`'s dev-credentials.json.
import { createHash, randomBytes } from 'node:crypto';
import type { Agent } from 'undici';
import { generate } from 'otplib';

interface Client {
  client_id: string;
  client_secret?: string;
  redirect_uris?: string[];
}

export interface TokenResponse {
  access_token: string;
  token_type?: string;
  expires_in?: number;
  scope?: string;
  [k: string]: unknown;
}

interface Discovery {
  issuer: string;
  token_endpoint: string;
  authorization_endpoint: string;
}

const basic = (c: Client) => 'Basic ' + Buffer.from(`${encodeURIComponent(c.client_id)}:${encodeURIComponent(c.client_secret ?? '')}`).toString('base64');

async function call(agent: Agent, url: string, init: RequestInit & { cookies?: Map<string, string> } = {}): Promise<Response> {
  const { fetch } = await import('undici');
  const headers = new Headers(init.headers);
  if (init.cookies?.size) headers.set('cookie', [...init.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
  const res = (await fetch(url, { ...(init as object), headers, redirect: 'manual', dispatcher: agent } as never)) as unknown as Response;
  for (const line of res.headers.getSetCookie?.() ?? []) {
    const [pair] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq > 0) init.cookies?.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
  return res;
}

async function tokenRequest(agent: Agent, d: Discovery, client: Client, form: Record<string, string>): Promise<TokenResponse> {
  const res = await call(agent, d.token_endpoint, {
    method: 'POST',
    headers: { authorization: basic(client), 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  });
  const body = (await res.json().catch(() => ({}))) as TokenResponse & { error?: string; error_description?: string };
  if (!res.ok) throw new Error(`the authority refused: ${res.status} ${body.error ?? ''}${body.error_description ? ` (${body.error_description})` : ''}`);
  return body;
}

/** The hidden fields and action of the form whose action ends with `suffix`. */
function form(html: string, suffix: string): { action: string; hidden: Record<string, string> } {
  for (const [, attrs, inner] of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)) {
    const action = (/action="([^"]*)"/.exec(attrs)?.[1] ?? '').replace(/&amp;/g, '&');
    if (!action.endsWith(suffix)) continue;
    const hidden: Record<string, string> = {};
    for (const [, input] of inner.matchAll(/<input\b([^>]*)>/g))
      if (/type="hidden"/.test(input)) hidden[/name="([^"]*)"/.exec(input)?.[1] ?? ''] = (/value="([^"]*)"/.exec(input)?.[1] ?? '').replace(/&amp;/g, '&');
    return { action, hidden };
  }
  throw new Error(`the sign-in page has no …${suffix} form (a passkey-only user cannot sign in here)`);
}

/** Follows redirects on the authority's origin; returns the last page, or the redirect that left it. */
async function follow(agent: Agent, url: string, origin: string, cookies: Map<string, string>, init: RequestInit = {}): Promise<{ html: string; url: string; left?: string }> {
  let res = await call(agent, url, { ...init, cookies, headers: { accept: 'text/html', ...(init.headers as Record<string, string>) } });
  let current = url;
  for (let hops = 0; hops < 10 && res.status >= 300 && res.status < 400; hops++) {
    const next = new URL(res.headers.get('location') ?? '', current).toString();
    if (!next.startsWith(origin)) return { html: '', url: current, left: next };
    current = next;
    res = await call(agent, current, { cookies, headers: { accept: 'text/html' } });
  }
  const html = await res.text();
  if (res.status >= 400) throw new Error(`the authority answered ${res.status} at ${new URL(current).pathname}: ${/role="alert"[^>]*>([^<]*)/.exec(html)?.[1] ?? ''}`);
  return { html, url: current };
}

export async function fetchToken(o: {
  authority: string;
  agent: Agent;
  client: Client;
  scopes: string[];
  user?: { username: string; password: string; totp_secret: string };
}): Promise<TokenResponse> {
  const dRes = await call(o.agent, `${o.authority.replace(/\/$/, '')}/.well-known/openid-configuration`);
  if (!dRes.ok) throw new Error(`no OpenID configuration at ${o.authority} (${dRes.status})`);
  const d = (await dRes.json()) as Discovery;
  if (!o.user) return tokenRequest(o.agent, d, o.client, { grant_type: 'client_credentials', ...(o.scopes.length ? { scope: o.scopes.join(' ') } : {}) });

  const redirect = o.client.redirect_uris?.[0];
  if (!redirect) throw new Error(`client ${o.client.client_id} has no redirect URI`);
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const auth = new URL(d.authorization_endpoint);
  auth.search = new URLSearchParams({
    response_type: 'code',
    client_id: o.client.client_id,
    redirect_uri: redirect,
    scope: ['openid', ...o.scopes].join(' '),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state,
  }).toString();
  const origin = new URL(d.authorization_endpoint).origin;
  const cookies = new Map<string, string>();
  const submit = async (page: { html: string; url: string }, suffix: string, fields: Record<string, string>) => {
    const f = form(page.html, suffix);
    return follow(o.agent, new URL(f.action, page.url).toString(), origin, cookies, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
      body: new URLSearchParams({ ...f.hidden, ...fields }).toString(),
    });
  };
  const login = await follow(o.agent, auth.toString(), origin, cookies);
  const otp = await submit(login, '/login', { username: o.user.username, password: o.user.password });
  if (otp.left) throw new Error('signed in without a second factor: this tool expects a TOTP step');
  if (!/name="otp"/.test(otp.html)) throw new Error(`sign-in refused: ${/role="alert"[^>]*>([^<]*)/.exec(otp.html)?.[1] ?? 'no TOTP step'}`);
  const done = await submit(otp, '/otp', { otp: await generate({ secret: o.user.totp_secret }) });
  if (!done.left) throw new Error(`the TOTP step did not finish: ${/role="alert"[^>]*>([^<]*)/.exec(done.html)?.[1] ?? 'no redirect'}`);
  const back = new URL(done.left);
  if (back.searchParams.get('state') !== state) throw new Error('the authority returned another state');
  const error = back.searchParams.get('error');
  if (error) throw new Error(`the authority refused: ${error} ${back.searchParams.get('error_description') ?? ''}`);
  return tokenRequest(o.agent, d, o.client, { grant_type: 'authorization_code', code: back.searchParams.get('code') ?? '', redirect_uri: redirect, code_verifier: verifier });
}
