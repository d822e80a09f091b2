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
// Every authority also (openAuthorityMonitor) is an enforcement point of the
// control plane, when it follows one (`control`: the bundles URL):
// - its workload identity spiffe://<td>/zone/<zone>/authority is issued from
//   the trust domain's CA in the state dir, as a gateway's is, and renewed at
//   half its lifetime;
// - it sends security events over mTLS with that identity (the shared event
//   shipper: bounded buffer, a request never waits on it), attributed by the
//   control plane to the verified certificate: sign-in and client
//   authentication failures (auth_failure), lockouts, token exchanges,
//   issued access tokens (token_issued, with the jti and where it was
//   obtained), refusals of quarantined clients and subjects (token_refused),
//   revoked access tokens (token_revoked, jti and exp: at once from the
//   RFC 7009 audit line, and from token_index every half second for every
//   other way a token is revoked — grants, consents, clients, exchanged tokens
//   (at start, every revoked token not yet expired is reported again: the
//   control plane takes a report twice as once);
//   the control plane lists them in every gateway's and authority's bundle
//   until they expire, so no gateway needs to poll a revocation feed);
// - it enforces its own signed policy bundle (long-poll; the last verified one
//   is kept on disk and stays in force while the control plane is away, until
//   it expires): a quarantined client obtains no token (400 unauthorized_client,
//   or the quarantined problem at the authorization endpoint); a quarantined
//   subject cannot sign in (interactions.ts) nor obtain a token by code,
//   refresh (provider.ts) or exchange (here: the subject token's sub); a
//   subject token whose jti is revoked is not exchanged; a revoked jti is
//   inactive at introspection and userinfo (access-token.ts isLive), whichever
//   replica or authority revoked it.
// With no valid bundle at all (none yet, or the last one expired) it fails
// closed like every PEP: sign-in, authorization and token requests are
// answered 503 until one arrives; discovery and JWKS are still served.
// An authority that follows no control plane enforces its topology only and
// sends no events.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createEventShipper, openPepBundles, type BundleClient, type EventShipper } from '../control/index.ts';
import { authoritySpiffeId } from '../pki/spiffe-id.ts';
import { bootstrapIdentity, createIdentityManager, issueWorkloadIdentity, trustBundlePath } from '../pki/index.ts';
import type { Topology } from '../topology/schema.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
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
  /** The authority's workload identity (absent: it follows no control plane). */
  spiffeId?: string;
  /** The audit sink: the events worth a security event are sent. */
  audit(line: Record<string, unknown>): void;
  /** oidc-provider's `<kind>.issued` for a JWT access token. */
  tokenIssued(token: { jti?: unknown; clientId?: unknown; accountId?: unknown }): void;
  /** Runs the provider for `req` with its source address known to tokenIssued. */
  run(req: IncomingMessage, f: () => void): void;
  /** True when `pathname` must be refused because no valid bundle is in force (fail closed). */
  unavailable(pathname: string): boolean;
  /** Answers `req` when it is a token request of a quarantined client or subject (true), else leaves it untouched or its body read into req.body (false). */
  refuse(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<boolean>;
  /** The decision in force for client `id`, if any. */
  quarantined(id: string): Quarantine | undefined;
  /** The decision in force for subject `sub`, if any. */
  subjectQuarantined(sub: string): Quarantine | undefined;
  /** True when the bundle in force lists `jti` among the revoked token ids. */
  tokenRevoked(jti: string): boolean;
  /**
   * Reports the tokens `read(since)` lists as revoked (token_revoked events),
   * polling every half second; returns the stop. Does nothing without a control plane.
   */
  followRevocations(read: (after: { at: number; jti: string }) => Promise<{ jti: string; exp: number; at: number }[]>): () => void;
  /** A quarantined subject was refused (sign-in, token): a token_refused event and a log line. */
  subjectRefused(r: { sub: string; username?: string; client?: string; source?: string; where: string; decision: Quarantine }): void;
  stats(): { sent: number; dropped: number; decisions: number; revision: number };
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
    case 'login.success':
      return { type: 'auth_success', code: 'login', ...common, subject: str(line.sub), account: who };
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
    case 'token.revoked': {
      const exp = typeof line.until === 'string' ? Math.floor(Date.parse(line.until) / 1000) : NaN;
      return { type: 'token_revoked', code: 'revoked', ...common, subject: str(line.sub), jti: str(line.jti, 128), exp: Number.isSafeInteger(exp) && exp > 0 ? exp : undefined };
    }
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

export interface AuthorityMonitorOptions {
  stateDir: string;
  zone: string;
  topology: Topology;
  now: () => number;
  clock?: Clock;
  log: Logger;
  /** The control plane's bundles URL (https://…/v1/bundles). Absent: the authority follows no control plane. */
  control?: string;
  /**
   * An authority that does not run beside the CA (a pod): its certificate from the CA server, with a
   * join token or a projected service-account token (GATEHOUSE_JOIN_TOKEN=file:…), renewed there.
   * Absent: issued from the CA in the state dir.
   */
  bootstrap?: { caUrl: string; joinToken: string };
  /** How long a start without a bundle on disk waits for the first one (default 5 s); then it serves, refusing sign-in and tokens. */
  firstWaitMs?: number;
  /** Replaces the mTLS shipper (tests). */
  shipper?: EventShipper;
}

/** Paths that need a policy: sign-in, authorization, tokens (revoking one needs none: it only takes access away). */
const GUARDED = /^\/(auth|token|request|interaction)(\/|$)/;
const UNGUARDED = /^\/token\/revocation$/;

export async function openAuthorityMonitor(o: AuthorityMonitorOptions): Promise<AuthorityMonitor> {
  const clock = o.clock ?? systemClock;
  const closers: (() => unknown)[] = [];
  let shipper: EventShipper | undefined = o.shipper;
  let pep: BundleClient | undefined;
  let spiffeId: string | undefined;
  if (o.control !== undefined) {
    const td = o.topology.trustDomain;
    if (!existsSync(trustBundlePath(o.stateDir)))
      throw new Error(`following the control plane needs the trust domain's CA in the state dir (the authority's identity); ${trustBundlePath(o.stateDir)} is missing`);
    const id = authoritySpiffeId(td, o.zone);
    spiffeId = id;
    const issue = () => issueWorkloadIdentity(o.stateDir, id, { topology: o.topology, clock });
    const manager = o.bootstrap
      ? createIdentityManager({
          initial: await bootstrapIdentity({ ...o.bootstrap, service: `authority:${o.zone}`, trustDomain: td, bundlePem: readFileSync(trustBundlePath(o.stateDir), 'utf8') }),
          caUrl: o.bootstrap.caUrl,
          trustDomain: td,
          clock,
        })
      : createIdentityManager({ initial: await issue(), renew: issue, clock });
    manager.on('alert', (info: unknown) => o.log.error({ spiffe_id: id, info }, 'authority certificate is close to expiry and could not be renewed'));
    manager.on('rotated', () => o.log.info({ spiffe_id: id }, 'authority certificate renewed'));
    closers.push(() => manager.close());
    const identity = () => {
      const c = manager.current();
      return { spiffeId: id, certPem: c.certPem, keyPem: c.keyPem };
    };
    const caBundle = manager.current().bundlePem;
    const ship = shipper ?? createEventShipper({ url: new URL(o.control).origin, identity, trustDomain: td, caBundle, clock });
    shipper = ship;
    try {
      pep = await openPepBundles({
        control: o.control,
        identity,
        trustDomain: td,
        caBundle,
        stateDir: path.join(o.stateDir, 'authority', o.zone),
        logger: o.log,
        firstWaitMs: o.firstWaitMs,
        onRefused: (code) => ship.emit({ type: 'bundle_refused', code }),
      });
    } catch (error) {
      manager.close();
      await ship.close();
      throw error;
    }
  }
  const emit = (e: EventFields) => shipper?.emit(e);
  const sources = new AsyncLocalStorage<string | undefined>();

  // revocations already sent (jti → exp), so the token_index follower sends each once
  const reported = new Map<string, number>();
  const decisions = () => pep?.current()?.bundle.decisions;
  // the revoked ids of a bundle as a set, built once per bundle (up to 100k of them)
  const revokedSets = new WeakMap<object, Set<string>>();
  const revokedIds = (): Set<string> | undefined => {
    const d = decisions();
    if (!d) return undefined;
    let set = revokedSets.get(d);
    if (!set) revokedSets.set(d, (set = new Set(d.revokedTokenIds)));
    return set;
  };
  const find = (scope: 'client' | 'subject', value: string) => {
    const now = o.now();
    return decisions()?.quarantines.find((q) => q.scope === scope && q.value === value && Date.parse(q.until) > now);
  };
  const anyDecision = () => {
    const d = decisions();
    return d !== undefined && (d.revokedTokenIds.length > 0 || d.quarantines.some((q) => (q.scope === 'client' || q.scope === 'subject') && Date.parse(q.until) > o.now()));
  };

  return {
    spiffeId,
    audit(line) {
      const e = securityEventOf(line);
      if (e?.type === 'token_revoked' && e.jti && e.exp) reported.set(e.jti, e.exp);
      if (e) emit(e);
    },
    tokenIssued(t) {
      const jti = str(t.jti, 128);
      if (!jti) return;
      emit({ type: 'token_issued', code: 'issued', jti, client: str(t.clientId), subject: str(t.accountId), source: str(sources.getStore(), 64) });
    },
    run(req, f) {
      sources.run(req.socket.remoteAddress, f);
    },
    unavailable: (pathname) => pep !== undefined && pep.current() === undefined && GUARDED.test(pathname) && !UNGUARDED.test(pathname),
    async refuse(req, res, requestId) {
      const pathname = (req.url ?? '/').split('?')[0];
      const tokenLike = req.method === 'POST' && (pathname === '/token' || pathname === '/request');
      const authorize = pathname === '/auth';
      if ((!tokenLike && !authorize) || !anyDecision()) return false;
      let form: URLSearchParams | undefined;
      if (authorize) form = new URL(req.url ?? '/', 'https://authority.invalid').searchParams;
      else if (/^application\/x-www-form-urlencoded/i.test(req.headers['content-type'] ?? '')) {
        // the client (or the subject token) is named in the body: read it once, and hand the provider what was read
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
      const source = str(req.socket.remoteAddress, 64);
      const oauthError = (error: string, description: string) => {
        const body = JSON.stringify({ error, error_description: description });
        res.writeHead(400, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'cache-control': 'no-store' });
        res.end(body);
        return true;
      };
      const q = client ? find('client', client) : undefined;
      if (q) {
        emit({ type: 'token_refused', code: 'quarantined', client, source, detail: `${pathname}: ${q.reason}`.slice(0, 512) });
        o.log.warn({ event: 'security', kind: 'token_refused', client, until: q.until }, 'token request of a quarantined client refused');
        if (authorize) {
          writeProblem(res, new GatehouseError('quarantined', 'This application is quarantined; try again later.'), requestId);
          return true;
        }
        return oauthError('unauthorized_client', 'this client is quarantined');
      }
      // a token exchange names its subject in the subject token: enough to refuse (never to admit)
      if (tokenLike && form?.get('grant_type') === TOKEN_EXCHANGE_GRANT) {
        const claims = unverifiedClaims(form.get('subject_token'));
        const sub = str(claims?.sub);
        const jti = str(claims?.jti, 128);
        const qs = sub ? find('subject', sub) : undefined;
        if (qs) {
          emit({ type: 'token_refused', code: 'quarantined', client, subject: sub, source, detail: `token exchange: ${qs.reason}`.slice(0, 512) });
          o.log.warn({ event: 'security', kind: 'token_refused', client, subject: sub, until: qs.until }, 'token exchange for a quarantined subject refused');
          return oauthError('invalid_grant', `the subject is quarantined until ${qs.until}`);
        }
        if (jti && revokedIds()?.has(jti)) {
          emit({ type: 'token_exchange', code: 'refused', client, subject: sub, jti, source, detail: 'the subject token is revoked' });
          return oauthError('invalid_grant', 'the subject token is revoked');
        }
      }
      return false;
    },
    quarantined: (id) => find('client', id),
    tokenRevoked: (jti) => revokedIds()?.has(jti) ?? false,
    followRevocations(read) {
      if (!shipper) return () => undefined;
      // a revocation committed by another replica a little after its revoked_at is still seen (overlap), and sent once
      const OVERLAP_MS = 5_000;
      const PAGE = 1000;
      let cursor = 0;
      let busy = false;
      const tick = async () => {
        const now = o.now();
        for (const [jti, exp] of reported) if (exp * 1000 < now) reported.delete(jti);
        let after = { at: Math.max(0, cursor - OVERLAP_MS), jti: '' };
        // at most 50 pages a tick: a mass revocation is sent over a few ticks (the shipper's buffer is bounded anyway)
        for (let page = 0; page < 50; page++) {
          const rows = await read(after);
          for (const r of rows) {
            cursor = Math.max(cursor, r.at);
            if (reported.has(r.jti)) continue;
            if (reported.size < 100_000) reported.set(r.jti, r.exp);
            emit({ type: 'token_revoked', code: 'revoked', jti: r.jti, exp: r.exp });
          }
          if (rows.length < PAGE) break;
          after = { at: rows[rows.length - 1].at, jti: rows[rows.length - 1].jti };
        }
      };
      const timer = setInterval(() => {
        if (busy) return;
        busy = true;
        tick()
          .catch((err: unknown) => o.log.error({ err }, 'reading revoked tokens for the control plane failed'))
          .finally(() => (busy = false));
      }, 500);
      timer.unref();
      return () => clearInterval(timer);
    },
    subjectQuarantined: (sub) => find('subject', sub),
    subjectRefused(r) {
      emit({ type: 'token_refused', code: 'quarantined', subject: r.sub, account: str(r.username, 128), client: str(r.client), source: str(r.source, 64), detail: `${r.where}: ${r.decision.reason}`.slice(0, 512) });
      o.log.warn({ event: 'security', kind: 'token_refused', subject: r.sub, client: r.client, where: r.where, until: r.decision.until }, 'a quarantined subject was refused');
    },
    stats: () => {
      const s = shipper?.stats();
      return { sent: s?.sent ?? 0, dropped: s?.dropped ?? 0, decisions: decisions()?.quarantines.length ?? 0, revision: pep?.revision() ?? 0 };
    },
    async close() {
      await pep?.close();
      await shipper?.close();
      for (const c of closers) c();
    },
  };
}

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** The payload of a JWT, unverified (to refuse, never to admit); undefined when it is not one. */
function unverifiedClaims(jwt: string | null | undefined): Record<string, unknown> | undefined {
  if (!jwt || jwt.length > 16 * 1024) return undefined;
  try {
    const v = JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as unknown;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
