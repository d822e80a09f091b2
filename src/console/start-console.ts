// The web console (issue 16), served by the control plane on a listener of its
// own (loopback by default, plain HTTP: put a TLS proxy in front to serve it
// elsewhere). Lifecycle: provision (sign-in, listener) → serve → close.
//
// Who may open it: operators named in `monitor.console.operators`, signed in
// at the authority of `monitor.console.zone` with its second factor. Deny by
// default — every page but the sign-in page and the assets needs a session.
// Secured by: a session cookie (HttpOnly, SameSite=Strict, random, server-side,
// `sessionMinutes`); a CSRF token in every form that changes something, checked
// with the request's Origin (or Sec-Fetch-Site) and a form content type, 4 KiB
// at most; a strict CSP (nothing inline, nothing from another origin, no
// framing); the Host header must be the console's own (DNS rebinding); no
// secret in any page.
//
//   GET  /               overview: revision, counts, live rates, each PEP's revision and staleness
//   GET  /topology       the graph: zones, gateways, services, allowed edges, denied attempts in red
//   GET  /events         the event stream, filtered by type, since, source and text
//   GET  /quarantines    decisions in force, each with a one-click release
//   POST /quarantines/release   scope, value, csrf[, falsePositive]
//   GET  /audit          findings of `gatehouse audit` on the running topology
//   GET  /api/rates      the rates table (the overview's script refreshes it)
//   GET  /signin, /login, /callback; POST /logout
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from '../shared/node-http.ts';
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { listen } from '../shared/listen.ts';
import { writeProblem } from '../shared/problem.ts';
import { GatehouseError, MethodNotAllowed, NotFound, UnsupportedMediaType } from '../shared/errors.ts';
import { readBody } from '../shared/body.ts';
import type { Clock } from '../shared/clock.ts';
import type { Logger } from '../shared/logger.ts';
import type { Topology } from '../topology/schema.ts';
import type { MonitorConfig } from '../topology/schema-monitor.ts';
import { loadTopology } from '../topology/load.ts';
import { auditTopology, type Finding } from '../audit/index.ts';
import { EVENT_TYPES, parseDuration, QUARANTINE_SCOPES, type EventQuery, type EventType, type QuarantineScope, type SecurityEvent } from '../monitor/index.ts';
import type { Quarantine } from '../policy/index.ts';
import type { ControlStatus } from '../control/start-control-server.ts';
import { createSignIn, type Operator } from './lib/sign-in.ts';
import { topologyGraph } from './lib/graph.ts';
import { auditPage, eventsPage, overviewPage, quarantinesPage, ratesTable, signInPage, topologyPage, SCRIPT, SINCE, STYLESHEET, type Layout, type Rates } from './lib/views.ts';

export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const SESSION_COOKIE = 'gh_console';
const BINDING_COOKIE = 'gh_console_signin';
const MAX_SESSIONS = 1000;
const MAX_FORM = 4096;

export interface ConsoleDeps {
  listen: string;
  config: string;
  stateDir: string;
  clock: Clock;
  log: Logger;
  monitor: () => MonitorConfig;
  topology: () => Topology;
  status: () => ControlStatus;
  events: (q: EventQuery) => Promise<SecurityEvent[]>;
  quarantines: () => Quarantine[];
  /** Releases a decision (false: none in force); `falsePositive` feeds the detector that made it. */
  release: (scope: QuarantineScope, value: string, by: string, falsePositive: boolean) => Promise<boolean>;
}

export interface ConsoleServer {
  url: string;
  close(): Promise<void>;
}

interface Session {
  operator: Operator;
  csrf: string;
  expires: number;
}

const NOTICES: Record<string, string> = {
  released: 'Released: every enforcement point gets the new bundle within seconds.',
  'released-fp': 'Released as a false positive: the detector that fired will not fire again for this key at that level for a day.',
  absent: 'That quarantine is no longer in force (it ended, or someone released it first).',
};
/** The notice a redirect names; only the ones above (never a property every object has: ?notice=constructor). */
const noticeOf = (key: string | null): string | undefined => (key !== null && Object.hasOwn(NOTICES, key) ? NOTICES[key] : undefined);

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

const same = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

export async function startConsole(d: ConsoleDeps): Promise<ConsoleServer> {
  const signIn = createSignIn({ stateDir: d.stateDir, clock: d.clock, console: () => d.monitor().console, log: d.log });
  const sessions = new Map<string, Session>();
  let origin = '';
  let hosts = new Set<string>();

  const session = (req: IncomingMessage): Session | undefined => {
    const id = cookies(req).get(SESSION_COOKIE);
    const s = id && /^[\w-]{43}$/.test(id) ? sessions.get(id) : undefined;
    if (!s) return undefined;
    // an operator removed from the topology loses the console at once
    if (s.expires <= d.clock.now() || !d.monitor().console.operators.includes(s.operator.username)) {
      sessions.delete(id!);
      return undefined;
    }
    return s;
  };

  const send = (res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string | string[]> = {}) => {
    res.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)), ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };
  const html = (res: ServerResponse, body: string, status = 200, headers: Record<string, string | string[]> = {}) => send(res, status, 'text/html; charset=utf-8', body, headers);
  const see = (res: ServerResponse, location: string, headers: Record<string, string | string[]> = {}) => {
    res.writeHead(303, { location, 'content-length': '0', ...headers });
    res.end();
  };

  async function rates(): Promise<Rates> {
    const now = d.clock.now();
    const start = Math.floor(now / 60_000) * 60_000 - 9 * 60_000;
    const minutes = Array.from({ length: 10 }, (_, i) => ({ at: new Date(start + i * 60_000).toISOString(), requests: 0, refused: 0, denied: 0 }));
    for (const type of ['traffic', 'request_refused', 'edge_denied'] as const)
      for (const e of await d.events({ since: start, type, limit: 10_000 })) {
        const m = minutes[Math.floor((Date.parse(e.received) - start) / 60_000)];
        if (!m) continue;
        if (type === 'traffic') m.requests += e.count ?? 0;
        else if (type === 'request_refused') m.refused++;
        else m.denied++;
      }
    return { minutes: minutes.reverse() };
  }

  async function form(req: IncomingMessage, s: Session): Promise<URLSearchParams> {
    // CSRF, first the browser's word on where the form came from, then the token
    const o = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    if (o !== undefined ? o !== origin : site !== undefined ? site !== 'same-origin' : true)
      throw new GatehouseError('forbidden', 'This form was not sent from the console.');
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') throw UnsupportedMediaType('Send the console\'s form (application/x-www-form-urlencoded).');
    const body = new URLSearchParams((await readBody(req, MAX_FORM)).toString('utf8'));
    const token = body.getAll('csrf');
    if (token.length !== 1 || !same(token[0], s.csrf)) throw new GatehouseError('forbidden', 'The form is out of date or not from this session; reload the page.');
    return body;
  }

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    res.setHeader('content-security-policy', CONSOLE_CSP);
    res.setHeader('x-frame-options', 'DENY');
    res.setHeader('x-content-type-options', 'nosniff');
    res.setHeader('referrer-policy', 'same-origin');
    res.setHeader('cross-origin-opener-policy', 'same-origin');
    res.setHeader('cross-origin-resource-policy', 'same-origin');
    res.setHeader('permissions-policy', 'camera=(), microphone=(), geolocation=(), interest-cohort=()');
    res.setHeader('cache-control', 'no-store');
    res.setHeader('x-request-id', requestId);
    // DNS rebinding: a page of another name that resolves here is not the console
    if (!hosts.has(String(req.headers.host ?? '').toLowerCase())) throw new GatehouseError('bad_request', 'This is not a host name of the console.');
    const url = new URL(req.url ?? '/', origin);
    const p = url.pathname;
    const get = req.method === 'GET' || req.method === 'HEAD';

    if (p === '/assets/console.css' || p === '/assets/console.js') {
      if (!get) throw MethodNotAllowed(['GET', 'HEAD']);
      res.setHeader('cache-control', 'no-cache');
      return send(res, 200, p.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8', p.endsWith('.css') ? STYLESHEET : SCRIPT);
    }
    if (p === '/favicon.ico') {
      if (!get) throw MethodNotAllowed(['GET', 'HEAD']);
      res.writeHead(204);
      return void res.end();
    }
    if (p === '/signin') {
      if (!get) throw MethodNotAllowed(['GET', 'HEAD']);
      if (session(req)) return see(res, '/');
      return html(res, signInPage());
    }
    if (p === '/login') {
      if (!get) throw MethodNotAllowed(['GET', 'HEAD']);
      const r = await signIn.start();
      return see(res, r.location, { 'set-cookie': `${BINDING_COOKIE}=${r.binding}; Path=/callback; Max-Age=600; HttpOnly; SameSite=Lax` });
    }
    if (p === '/callback') {
      if (!get) throw MethodNotAllowed(['GET', 'HEAD']);
      const clear = `${BINDING_COOKIE}=; Path=/callback; Max-Age=0; HttpOnly; SameSite=Lax`;
      let operator: Operator;
      try {
        operator = await signIn.finish(cookies(req).get(BINDING_COOKIE), url);
      } catch (error) {
        res.setHeader('set-cookie', clear);
        throw error;
      }
      const now = d.clock.now();
      for (const [k, v] of sessions) if (v.expires <= now) sessions.delete(k);
      if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value as string);
      const id = randomBytes(32).toString('base64url');
      const minutes = d.monitor().console.sessionMinutes;
      sessions.set(id, { operator, csrf: randomBytes(32).toString('base64url'), expires: now + minutes * 60_000 });
      d.log.info({ event: 'security', kind: 'console_signin', username: operator.username, sub: operator.sub }, 'operator signed in to the console');
      // a page of our own moves on: a Strict cookie set in a redirect from another site would not be sent on the next hop
      return html(res, `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/"><title>Signed in</title></head><body><p><a href="/">Continue to the console</a></p></body></html>`, 200, {
        'set-cookie': [`${SESSION_COOKIE}=${id}; Path=/; Max-Age=${minutes * 60}; HttpOnly; SameSite=Strict`, clear],
      });
    }

    const s = session(req);
    if (!s) {
      if (p.startsWith('/api/')) throw new GatehouseError('unauthorized', 'Sign in to the console first.');
      if (!get) throw new GatehouseError('unauthorized', 'Sign in to the console first.');
      return see(res, '/signin');
    }
    const layout = (title: string, path: string, notice?: string): Layout => ({ title, path, operator: s.operator.username, csrf: s.csrf, notice });

    if (p === '/logout') {
      if (req.method !== 'POST') throw MethodNotAllowed(['POST']);
      await form(req, s);
      for (const [k, v] of sessions) if (v === s) sessions.delete(k);
      return see(res, '/signin', { 'set-cookie': `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict` });
    }
    if (p === '/quarantines/release') {
      if (req.method !== 'POST') throw MethodNotAllowed(['POST']);
      const body = await form(req, s);
      const scope = body.get('scope') as QuarantineScope;
      const value = body.get('value') ?? '';
      if (!QUARANTINE_SCOPES.includes(scope) || value.length === 0 || value.length > 256) throw new GatehouseError('unprocessable', 'scope and value name a quarantine');
      const fp = body.get('falsePositive') === '1';
      const released = await d.release(scope, value, `console:${s.operator.username}`, fp);
      return see(res, `/quarantines?notice=${released ? (fp ? 'released-fp' : 'released') : 'absent'}`);
    }
    if (!get) throw MethodNotAllowed(['GET', 'HEAD']);
    if (p === '/') {
      const since = d.clock.now() - 3600_000;
      const counts: Record<string, number> = {};
      for (const t of ['request_refused', 'edge_denied', 'auth_failure', 'detection', 'quarantine'] as const) counts[t] = (await d.events({ since, type: t, limit: 10_000 })).length;
      return html(res, overviewPage(layout('Overview', '/'), d.status(), await rates(), counts, d.quarantines().length));
    }
    if (p === '/api/rates') return html(res, ratesTable(await rates()));
    if (p === '/topology') {
      const g = topologyGraph(d.topology(), await d.events({ since: d.clock.now() - 3600_000, type: 'edge_denied', limit: 10_000 }));
      return html(res, topologyPage(layout('Topology', '/topology'), g.svg, g.edges));
    }
    if (p === '/events') {
      const q = url.searchParams;
      const type = q.get('type') || undefined;
      if (type !== undefined && !(EVENT_TYPES as readonly string[]).includes(type)) throw new GatehouseError('unprocessable', `type must be one of ${EVENT_TYPES.join(', ')}`);
      const since = q.get('since') || '1h';
      if (!(SINCE as readonly string[]).includes(since)) throw new GatehouseError('unprocessable', `since must be one of ${SINCE.join(', ')}`);
      const source = (q.get('source') ?? '').slice(0, 64);
      const text = (q.get('text') ?? '').slice(0, 100).toLowerCase();
      const all = await d.events({ since: d.clock.now() - parseDuration(since), type: type as EventType | undefined, limit: 10_000 });
      const hits = all.filter((e) => (!source || e.source === source) && (!text || JSON.stringify(e).toLowerCase().includes(text)));
      return html(res, eventsPage(layout('Events', '/events'), EVENT_TYPES, { type, since, source, text }, hits.slice(-500), hits.length > 500));
    }
    if (p === '/quarantines') return html(res, quarantinesPage(layout('Quarantines', '/quarantines', noticeOf(url.searchParams.get('notice'))), d.quarantines()));
    if (p === '/audit') {
      let findings: Finding[] = [];
      let error: string | undefined;
      try {
        findings = auditTopology(loadTopology(d.config), d.config).findings;
      } catch {
        error = 'The topology file does not load now; run gatehouse audit for the details.';
      }
      return html(res, auditPage(layout('Audit', '/audit'), findings, error));
    }
    throw NotFound('No such page.');
  }

  const server = createServer({ maxHeaderSize: 16 * 1024, headersTimeout: 10_000, requestTimeout: 30_000 }, (req, res) => {
    const requestId = randomUUID();
    handle(req, res, requestId).catch((error) => {
      if (!(error instanceof GatehouseError)) d.log.error({ err: error, requestId }, 'console request failed');
      writeProblem(res, error, requestId, { baseHeaders: { 'content-security-policy': CONSOLE_CSP, 'x-frame-options': 'DENY' } });
    });
  });
  const bound = await listen(server, d.listen, 'http');
  origin = bound.url;
  const port = new URL(bound.url).port;
  const host = new URL(bound.url).hostname;
  hosts = new Set([`${host}:${port}`, ...(host === '127.0.0.1' || host === '[::1]' ? [`localhost:${port}`] : [])]);
  return {
    url: bound.url,
    async close() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
    },
  };
}
