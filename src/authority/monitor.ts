// The authority's part of the monitor (issue 16). The authority of the zone
// named by `monitor.console.zone` registers the web console's sign-in client:
// a first-party authorization-code client `gatehouse-console` whose redirect
// URI is the running console's callback. The console's address is known only
// once the control plane listens (port 0), so it is read from
// <stateDir>/control/control.json every second, and the client is registered
// again when it moved; its secret goes to <stateDir>/control/console-client.json
// (owner-only, monitor/console-grant.ts), where the control plane reads it.
// A client by that name that is not the console's is never replaced: refused loudly.
//
// Every authority also (createAuthorityMonitor):
// - sends security events to the control plane: sign-in and client
//   authentication failures (auth_failure), lockouts, token exchanges (done or
//   refused), issued access tokens (token_issued, with the jti and where it was
//   obtained: the replay detector compares it with where gateways see it), and
//   refused token requests. An authority has no workload identity of the trust
//   domain yet, so they go to the control plane's loopback admin listener
//   (shipLocalEvents: one machine, as under `gatehouse up`); the buffer is
//   bounded and a request never waits on it.
// - follows the quarantines the control plane holds (its admin listener, every
//   second; the last list it read stays in force while the control plane is
//   away, and each decision ends at its `until`), and refuses the token,
//   authorization and pushed-authorization requests of a quarantined client:
//   it can obtain no new token (400 unauthorized_client, or the quarantined
//   problem at the authorization endpoint), and a token_refused event is sent.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { controlAdminUrl, shipLocalEvents, type EventShipper } from '../control/index.ts';
import type { EventFields } from '../monitor/index.ts';
import type { Quarantine } from '../policy/index.ts';
import { GatehouseError, PayloadTooLarge } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import type { Logger } from '../shared/logger.ts';
import type { AuthorityContext } from './context.ts';
import { compareClientSecret, FIRST_PARTY_PROPERTY } from './client-registry.ts';
import { CONSOLE_CALLBACK, CONSOLE_CLIENT_ID, readConsoleGrant, runningConsoleUrl, writeConsoleGrant } from '../monitor/console-grant.ts';

const POLL_MS = 1000;

/** Registers the console's client now and whenever the console moves; returns the stop. */
export function grantConsole(ctx: AuthorityContext, stateDir: string): () => void {
  if (ctx.loaded.topology.monitor.console.zone !== ctx.zone) return () => undefined;
  let running = false;
  let warned = '';
  const sync = async () => {
    const consoleUrl = runningConsoleUrl(stateDir);
    if (!consoleUrl) return;
    const redirect = `${consoleUrl}${CONSOLE_CALLBACK}`;
    const existing = await ctx.clients.find(CONSOLE_CLIENT_ID);
    if (existing) {
      const m = existing.metadata;
      const ours = m[FIRST_PARTY_PROPERTY] === true && JSON.stringify(m.grant_types) === JSON.stringify(['authorization_code']);
      if (!ours) {
        if (warned !== redirect) ctx.log.error({ clientId: CONSOLE_CLIENT_ID }, 'a client named gatehouse-console exists that is not the console\'s sign-in client; remove it');
        warned = redirect;
        return;
      }
      const held = readConsoleGrant(stateDir);
      const current =
        JSON.stringify(m.redirect_uris) === JSON.stringify([redirect]) &&
        held?.client_id === CONSOLE_CLIENT_ID &&
        held.redirect_uri === redirect &&
        held.zone === ctx.zone &&
        typeof existing.secretHash === 'string' &&
        compareClientSecret(ctx.secretHashKey, existing.secretHash, held.client_secret);
      if (current) {
        if (held.issuer !== ctx.issuer) writeConsoleGrant(stateDir, { ...held, issuer: ctx.issuer });
        return;
      }
      await ctx.clients.remove(CONSOLE_CLIENT_ID);
    }
    const created = await ctx.clients.add({
      clientId: CONSOLE_CLIENT_ID,
      name: 'Gatehouse console',
      grantTypes: ['authorization_code'],
      redirectUris: [redirect],
      scope: 'openid profile',
      authMethod: 'client_secret_basic',
      firstParty: true,
    });
    writeConsoleGrant(stateDir, { zone: ctx.zone, issuer: ctx.issuer, client_id: created.client_id, client_secret: created.client_secret!, redirect_uri: redirect });
    ctx.audit('client.added', { client_id: CONSOLE_CLIENT_ID, reason: `sign-in client of the console at ${consoleUrl}` });
  };
  const tick = () => {
    if (running) return;
    running = true;
    sync()
      .catch((err: unknown) => ctx.log.error({ err }, 'console client registration failed'))
      .finally(() => (running = false));
  };
  tick();
  const timer = setInterval(tick, POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Token requests are small: a body longer than this is left to the provider (which refuses past 56 KiB). */
const MAX_PEEK = 64 * 1024;

export interface AuthorityMonitor {
  /** The audit sink: the events worth a security event are sent. */
  audit(line: Record<string, unknown>): void;
  /** oidc-provider's `<kind>.issued` for a JWT access token. */
  tokenIssued(token: { jti?: unknown; clientId?: unknown; accountId?: unknown }): void;
  /** Runs the provider for `req` with its source address known to tokenIssued. */
  run(req: IncomingMessage, f: () => void): void;
  /** Answers `req` when it is a token request of a quarantined client (true), else leaves it untouched or its body read into req.body (false). */
  refuse(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<boolean>;
  /** The decision in force for client `id`, if any. */
  quarantined(id: string): Quarantine | undefined;
  stats(): { sent: number; dropped: number; decisions: number; lastPoll?: string };
  close(): Promise<void>;
}

const str = (v: unknown, max = 256): string | undefined => (typeof v === 'string' && v.length > 0 ? v.slice(0, max) : undefined);

/** The audit line as a security event, or undefined for audit events that are not one. */
export function securityEventOf(line: Record<string, unknown>): EventFields | undefined {
  const common = { source: str(line.source, 64), client: str(line.client_id) };
  const who = str(line.username, 128);
  switch (line.event) {
    case 'login.failure':
      return { type: 'auth_failure', code: 'login', ...common, subject: str(line.sub), account: who, detail: str(line.reason, 200) };
    case 'mfa.failure':
      return { type: 'auth_failure', code: 'mfa', ...common, subject: str(line.sub), detail: str(line.reason, 200) };
    case 'client.auth_failure':
      return { type: 'auth_failure', code: 'client', ...common, detail: str(line.reason, 200) };
    case 'federation.failure':
      return { type: 'auth_failure', code: 'federation', ...common, detail: str(line.reason, 200) };
    case 'webauthn.refused':
      return { type: 'auth_failure', code: 'passkey', ...common, subject: str(line.sub), detail: str(line.reason, 200) };
    case 'lockout':
      return { type: 'lockout', code: str(line.budget, 64) ?? 'lockout', ...common, account: who, detail: str(line.until) && `until ${line.until}` };
    case 'token.exchanged':
      return { type: 'token_exchange', code: 'exchanged', ...common, subject: str(line.sub), jti: str(line.jti, 128), detail: str(line.actor) && `actor ${line.actor}` };
    case 'token.exchange_refused':
      return { type: 'token_exchange', code: 'refused', ...common, subject: str(line.sub), detail: str(line.reason, 200) };
    case 'token.reuse_detected':
      return { type: 'auth_failure', code: 'refresh_reuse', ...common, subject: str(line.sub), detail: str(line.reason, 200) };
    default:
      return undefined;
  }
}

/** The client a token or authorization request names, without authenticating it (enough to refuse, never to admit). */
function clientIdOf(req: IncomingMessage, form: URLSearchParams | undefined): string | undefined {
  const auth = req.headers.authorization;
  if (auth && /^basic /i.test(auth)) {
    const raw = Buffer.from(auth.slice(6).trim(), 'base64').toString('utf8');
    const colon = raw.indexOf(':');
    if (colon > 0) {
      try {
        return decodeURIComponent(raw.slice(0, colon).replace(/\+/g, ' '));
      } catch {
        return raw.slice(0, colon);
      }
    }
  }
  const direct = form?.get('client_id');
  if (direct) return direct;
  const assertion = form?.get('client_assertion');
  if (assertion) {
    try {
      const payload = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown; iss?: unknown };
      return str(payload.sub) ?? str(payload.iss);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export function createAuthorityMonitor(o: { stateDir: string; zone: string; now: () => number; log: Logger; pollMs?: number; shipper?: EventShipper }): AuthorityMonitor {
  const shipper = o.shipper ?? shipLocalEvents({ stateDir: o.stateDir, component: `authority:${o.zone}` });
  const sources = new AsyncLocalStorage<string | undefined>();
  let decisions: Quarantine[] = [];
  let lastPoll: number | undefined;
  let polling = false;
  const poll = async () => {
    const admin = controlAdminUrl(o.stateDir);
    if (!admin) return;
    const res = await fetch(`${admin}/quarantines`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return void (await res.body?.cancel());
    const list = (await res.json()) as unknown;
    if (!Array.isArray(list)) return;
    decisions = list.filter((q): q is Quarantine => typeof q?.scope === 'string' && typeof q?.value === 'string' && !Number.isNaN(Date.parse(q?.until)));
    lastPoll = o.now();
  };
  const tick = () => {
    if (polling) return;
    polling = true;
    poll()
      .catch(() => undefined) // the control plane is away: the last list stays
      .finally(() => (polling = false));
  };
  tick();
  const timer = setInterval(tick, o.pollMs ?? 1000);
  timer.unref();

  const quarantined = (id: string) => {
    const now = o.now();
    return decisions.find((q) => q.scope === 'client' && q.value === id && Date.parse(q.until) > now);
  };
  const anyClientDecision = () => decisions.some((q) => q.scope === 'client' && Date.parse(q.until) > o.now());

  return {
    audit(line) {
      const e = securityEventOf(line);
      if (e) shipper.emit(e);
    },
    tokenIssued(t) {
      const jti = str(t.jti, 128);
      if (!jti) return;
      shipper.emit({ type: 'token_issued', code: 'issued', jti, client: str(t.clientId), subject: str(t.accountId), source: str(sources.getStore(), 64) });
    },
    run(req, f) {
      sources.run(req.socket.remoteAddress, f);
    },
    async refuse(req, res, requestId) {
      const pathname = (req.url ?? '/').split('?')[0];
      const tokenLike = req.method === 'POST' && (pathname === '/token' || pathname === '/request');
      const authorize = pathname === '/auth';
      if ((!tokenLike && !authorize) || !anyClientDecision()) return false;
      let form: URLSearchParams | undefined;
      if (authorize) form = new URL(req.url ?? '/', 'https://authority.invalid').searchParams;
      else if (!/^basic /i.test(req.headers.authorization ?? '') && /^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) {
        // the client is named in the body: read it once, and hand the provider what was read
        const declared = Number(req.headers['content-length'] ?? 0);
        if (declared > MAX_PEEK) return false;
        const chunks: Buffer[] = [];
        let total = 0;
        for await (const c of req) {
          total += (c as Buffer).length;
          if (total > MAX_PEEK) {
            writeProblem(res, PayloadTooLarge(MAX_PEEK), requestId);
            return true;
          }
          chunks.push(c as Buffer);
        }
        const body = Buffer.concat(chunks);
        (req as IncomingMessage & { body?: Buffer }).body = body;
        form = new URLSearchParams(body.toString('utf8'));
      }
      const client = clientIdOf(req, form);
      const q = client ? quarantined(client) : undefined;
      if (!q) return false;
      shipper.emit({ type: 'token_refused', code: 'quarantined', client, source: str(req.socket.remoteAddress, 64), detail: `${pathname}: ${q.reason}`.slice(0, 512) });
      o.log.warn({ event: 'security', kind: 'token_refused', client, until: q.until }, 'token request of a quarantined client refused');
      if (authorize) {
        writeProblem(res, new GatehouseError('quarantined', 'This application is quarantined; try again later.'), requestId);
        return true;
      }
      const body = JSON.stringify({ error: 'unauthorized_client', error_description: 'this client is quarantined' });
      res.writeHead(400, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
      res.end(body);
      return true;
    },
    quarantined,
    stats: () => {
      const s = shipper.stats();
      return { sent: s.sent, dropped: s.dropped, decisions: decisions.length, lastPoll: lastPoll === undefined ? undefined : new Date(lastPoll).toISOString() };
    },
    async close() {
      clearInterval(timer);
      await shipper.close();
    },
  };
}
