// Detectors the control plane runs on the events it receives (CrowdSec's
// leaky buckets, fail2ban's maxretry/findtime, GuardDuty's "credentials used
// from elsewhere", Cloudflare API Shield's per-identity baselines):
//   scan         distinct paths refused 400/404/405 from one source
//   stuffing     refused credentials from one source: gateway 401s and the
//                authority's auth_failure events; or distinct usernames
//                whose sign-in failed from one source (distinctAccounts)
//   ratio        failed sign-ins of one account (the username as typed, else
//                the subject) from any sources, when failures are at least
//                failureRatio of its attempts (auth_failure vs auth_success):
//                a distributed cracking run; quarantines the account's subject
//                (a username nobody has signed in as is only recorded: there is
//                no subject to protect, the name may not exist)
//   enumeration  distinct object paths answered 403/404 on one route for one
//                identity (subject, else client, else source)
//   replay       one token id (jti) seen from distinct networks (IPv4 /24,
//                IPv6 /64) or TLS fingerprints within the window (its lifetime):
//                where the authority issued it and where gateways saw it
//   lateral      one workload refused by distinct peers it has no edge to
//                (mesh services, and the vault for a key it holds no grant of)
//   volumetric   requests of one identity on one route per interval against
//                its own EWMA baseline (traffic events)
// A detector that fires names whom to quarantine (scope and value) for its
// `quarantineFor`, or in shadow mode only what it would have done; its key
// starts again. Sources in `exempt` are never counted. A decision released as
// a false positive feeds back: that key's threshold is doubled (volumetric:
// its baseline raised to the level that fired) for a day.
import { networkOf } from './network.ts';
import { compileCidrs } from '../shared/address.ts';
import { parseSpiffeId } from '../pki/index.ts';
import type { MonitorConfig } from '../topology/schema-monitor.ts';
import type { Quarantine } from '../policy/index.ts';
import type { SecurityEvent } from './event.ts';
import { parseDuration } from './quarantine-store.ts';

export const DETECTORS = ['scan', 'stuffing', 'ratio', 'enumeration', 'replay', 'lateral', 'volumetric'] as const;
export type DetectorName = (typeof DETECTORS)[number];

export interface Detection {
  detector: DetectorName;
  /** whom to quarantine */
  scope: Quarantine['scope'];
  value: string;
  /** what was counted (distinct keys, or requests in the interval) */
  count: number;
  windowSeconds: number;
  shadow: boolean;
  quarantineForMs: number;
  /** what happened, for the decision and the event */
  reason: string;
  /** the event's source, when it has one */
  source?: string;
}

/** Keys tracked per detector, at most (the oldest are forgotten first). */
const MAX_KEYS = 50_000;
const FEEDBACK_MS = 24 * 3600_000;

export { networkOf };

export interface Detectors {
  observe(event: SecurityEvent, now: number): Detection | undefined;
  /** A decision a detector made was a false positive: its key becomes less sensitive for a day. */
  falsePositive(q: Quarantine, now: number): boolean;
}

class Windows {
  readonly keys = new Map<string, Map<string, number>>();
  /** key → until (ms): threshold doubled (a released false positive) */
  readonly relaxed = new Map<string, number>();

  bump(key: string, item: string, now: number, windowSeconds: number): number {
    let seen = this.keys.get(key);
    if (!seen) {
      if (this.keys.size >= MAX_KEYS) this.keys.delete(this.keys.keys().next().value as string);
      this.keys.set(key, (seen = new Map()));
    }
    seen.delete(item);
    seen.set(item, now);
    const oldest = now - windowSeconds * 1000;
    for (const [k, t] of seen) {
      if (t >= oldest) break; // insertion order is time order
      seen.delete(k);
    }
    return seen.size;
  }

  /** Items of `key` still within the window (nothing added). */
  count(key: string, now: number, windowSeconds: number): number {
    const seen = this.keys.get(key);
    if (!seen) return 0;
    const oldest = now - windowSeconds * 1000;
    for (const [k, t] of seen) {
      if (t >= oldest) break;
      seen.delete(k);
    }
    return seen.size;
  }

  /** The threshold of `key`, doubled while its identity (the part before '|') is relaxed. */
  threshold(key: string, threshold: number, now: number): number {
    const who = key.split('|')[0];
    const until = this.relaxed.get(who);
    if (until === undefined) return threshold;
    if (until <= now) {
      this.relaxed.delete(who);
      return threshold;
    }
    return threshold * 2;
  }

  relax(key: string, now: number): void {
    if (this.relaxed.size >= MAX_KEYS) this.relaxed.delete(this.relaxed.keys().next().value as string);
    this.relaxed.set(key, now + FEEDBACK_MS);
  }
}

interface Baseline {
  start: number;
  count: number;
  ewma: number;
  intervals: number;
  fired: boolean;
}

/** `trustDomain`: a mesh peer of another trust domain is no workload to quarantine. */
export function createDetectors(config: () => MonitorConfig, trustDomain: string): Detectors {
  const windows = Object.fromEntries(DETECTORS.map((d) => [d, new Windows()])) as Record<DetectorName, Windows>;
  const baselines = new Map<string, Baseline>();
  let exemptFor: readonly string[] | undefined;
  let exempt: (a: string) => boolean = () => false;

  /** Who an event is about, most specific first: the identity where there is one (per identity rather than per IP). */
  const identity = (e: SecurityEvent): { scope: Quarantine['scope']; value: string } | undefined =>
    e.subject ? { scope: 'subject', value: e.subject } : e.client ? { scope: 'client', value: e.client } : e.source ? { scope: 'source', value: e.source } : undefined;

  function windowed(
    name: Exclude<DetectorName, 'volumetric'>,
    who: { scope: Quarantine['scope']; value: string },
    key: string,
    item: string,
    now: number,
    what: string,
    e: SecurityEvent,
  ): Detection | undefined {
    const d = config().detectors[name];
    if (!d.enabled) return undefined;
    const w = windows[name];
    const n = w.bump(key, item, now, d.windowSeconds);
    if (n < w.threshold(key, d.threshold, now)) return undefined;
    w.keys.delete(key); // it fired: the window starts again
    return {
      detector: name,
      scope: who.scope,
      value: who.value,
      count: n,
      windowSeconds: d.windowSeconds,
      shadow: d.shadow,
      quarantineForMs: parseDuration(d.quarantineFor),
      reason: `detector ${name}: ${n} ${what} within ${d.windowSeconds} s`,
      source: e.source,
    };
  }

  // ratio: the subject an account (username) was last seen signing in as
  const subjects = new Map<string, string>();
  const accountKey = (e: SecurityEvent) => (e.account ? `account:${e.account.toLowerCase()}` : e.subject ? `subject:${e.subject}` : undefined);

  function ratio(e: SecurityEvent, now: number): Detection | undefined {
    const r = config().detectors.ratio;
    const account = accountKey(e);
    if (!r.enabled || !account) return undefined;
    const w = windows.ratio;
    if (e.subject && e.account) {
      if (subjects.size >= MAX_KEYS && !subjects.has(account)) subjects.delete(subjects.keys().next().value as string);
      subjects.set(account, e.subject);
    }
    if (e.type === 'auth_success') {
      w.bump(`${account}|ok`, e.id, now, r.windowSeconds);
      return undefined;
    }
    const failed = w.bump(`${account}|fail`, e.id, now, r.windowSeconds);
    const succeeded = w.count(`${account}|ok`, now, r.windowSeconds);
    if (failed < w.threshold(`${account}|fail`, r.threshold, now) || failed / (failed + succeeded) < r.failureRatio) return undefined;
    w.keys.delete(`${account}|fail`);
    w.keys.delete(`${account}|ok`);
    const subject = e.subject ?? subjects.get(account);
    const share = Math.round((100 * failed) / (failed + succeeded));
    return {
      detector: 'ratio',
      scope: 'subject',
      value: subject ?? account,
      count: failed,
      windowSeconds: r.windowSeconds,
      // a username nobody signed in as has no subject to protect: recorded only
      shadow: r.shadow || subject === undefined,
      quarantineForMs: parseDuration(r.quarantineFor),
      reason: `detector ratio: ${failed} failed sign-ins of ${account} (${share}% of its attempts) within ${r.windowSeconds} s`,
      source: e.source,
    };
  }

  function volumetric(e: SecurityEvent, now: number): Detection | undefined {
    const v = config().detectors.volumetric;
    const who = identity(e);
    if (!v.enabled || !who || !e.route || !e.count) return undefined;
    const key = `${who.scope}:${who.value}|${e.route}`;
    const ms = v.intervalSeconds * 1000;
    let b = baselines.get(key);
    if (!b) {
      if (baselines.size >= MAX_KEYS) baselines.delete(baselines.keys().next().value as string);
      baselines.set(key, (b = { start: Math.floor(now / ms) * ms, count: 0, ewma: 0, intervals: 0, fired: false }));
    }
    // close the intervals that ended (an interval that fired is kept out of the baseline; quiet ones count as 0, ten at most)
    for (let closed = 0; now >= b.start + ms && closed < 10; closed++) {
      if (!b.fired) {
        b.ewma = b.intervals === 0 ? b.count : v.alpha * b.count + (1 - v.alpha) * b.ewma;
        b.intervals++;
      }
      b.start += ms;
      b.count = 0;
      b.fired = false;
    }
    if (now >= b.start + ms) b.start = Math.floor(now / ms) * ms;
    b.count += e.count;
    if (b.fired || b.intervals < v.warmupIntervals) return undefined;
    const limit = Math.max(v.minRequests, v.factor * b.ewma);
    if (b.count <= limit) return undefined;
    b.fired = true;
    return {
      detector: 'volumetric',
      scope: who.scope,
      value: who.value,
      count: b.count,
      windowSeconds: v.intervalSeconds,
      shadow: v.shadow,
      quarantineForMs: parseDuration(v.quarantineFor),
      reason: `detector volumetric: ${b.count} requests on route ${e.route} within ${v.intervalSeconds} s, baseline ${b.ewma.toFixed(1)}`,
      source: e.source,
    };
  }

  return {
    observe(e, now) {
      const c = config();
      if (exemptFor !== c.exempt) {
        exemptFor = c.exempt;
        exempt = compileCidrs(c.exempt);
      }
      if (e.source && exempt(e.source)) return undefined;
      switch (e.type) {
        case 'request_refused':
        case 'upstream_status': {
          if (!e.source && !e.subject && !e.client) return undefined;
          // enumeration: object paths of one route refused for one identity
          if ((e.status === 403 || e.status === 404) && e.route && e.path) {
            const who = identity(e)!;
            const hit = windowed('enumeration', who, `${who.scope}:${who.value}|${e.route}`, e.path, now, `distinct object paths refused on route ${e.route}`, e);
            if (hit || e.type === 'upstream_status') return hit;
          }
          if (e.type !== 'request_refused' || !e.source) return undefined;
          if ((e.status === 404 || e.status === 400 || e.status === 405) && e.path)
            return windowed('scan', { scope: 'source', value: e.source }, e.source, e.path, now, 'distinct refused paths', e);
          // each refused credential counts once: the event id is the key
          if (e.status === 401) return windowed('stuffing', { scope: 'source', value: e.source }, e.source, e.id, now, 'refused credentials', e);
          return undefined;
        }
        case 'auth_success':
          return ratio(e, now);
        case 'auth_failure': {
          // an account failing from everywhere (the sources may be many)
          const cracked = e.code === 'login' || e.code === 'mfa' || e.code === 'passkey' ? ratio(e, now) : undefined;
          if (!e.source) return cracked;
          // many accounts from one source (stuffing), before many failures in all (cracking one account)
          const s = c.detectors.stuffing;
          if (e.account && s.enabled) {
            const w = windows.stuffing;
            const key = `${e.source}|accounts`;
            const n = w.bump(key, e.account, now, s.windowSeconds);
            if (n >= w.threshold(key, s.distinctAccounts, now)) {
              w.keys.delete(key);
              w.keys.delete(e.source);
              return {
                detector: 'stuffing' as const,
                scope: 'source',
                value: e.source,
                count: n,
                windowSeconds: s.windowSeconds,
                shadow: s.shadow,
                quarantineForMs: parseDuration(s.quarantineFor),
                reason: `detector stuffing: ${n} distinct usernames refused within ${s.windowSeconds} s`,
                source: e.source,
              };
            }
          }
          return windowed('stuffing', { scope: 'source', value: e.source }, e.source, e.id, now, 'refused credentials', e) ?? cracked;
        }
        case 'token_issued':
        case 'token_use': {
          if (!e.jti || !e.source) return undefined;
          const who = e.subject ? { scope: 'subject' as const, value: e.subject } : e.client ? { scope: 'client' as const, value: e.client } : { scope: 'source' as const, value: e.source };
          const id = `${who.scope}:${who.value}`;
          const net = windowed('replay', who, `${id}|net|${e.jti}`, networkOf(e.source), now, `networks using token ${e.jti}`, e);
          if (net || !e.tls) return net;
          return windowed('replay', who, `${id}|tls|${e.jti}`, e.tls, now, `TLS fingerprints using token ${e.jti}`, e);
        }
        case 'edge_denied':
        case 'vault_denied': {
          // the vault is one more peer that refused it
          const peer = e.peer ? parseSpiffeId(e.peer, trustDomain) : null;
          if (peer?.kind !== 'service') return undefined;
          return windowed('lateral', { scope: 'service', value: peer.service }, peer.service, e.pep, now, 'distinct peers refused it (no edge)', e);
        }
        case 'traffic':
          return volumetric(e, now);
        default:
          return undefined;
      }
    },

    falsePositive(q, now) {
      const m = /^detector:([a-z]+)$/.exec(q.origin ?? '');
      const name = m?.[1] as DetectorName | undefined;
      if (!name || !(DETECTORS as readonly string[]).includes(name)) return false;
      if (name === 'volumetric') {
        // the level that fired becomes the baseline of that identity's routes
        let any = false;
        for (const [key, b] of baselines)
          if (key.startsWith(`${q.scope}:${q.value}|`)) {
            b.ewma = Math.max(b.ewma, b.count, (b.ewma * config().detectors.volumetric.factor) / 2);
            b.fired = false;
            any = true;
          }
        return any;
      }
      if (name === 'ratio') {
        // the accounts that signed in as this subject, and the subject itself
        for (const [account, sub] of subjects) if (sub === q.value) windows.ratio.relax(account, now);
        windows.ratio.relax(`subject:${q.value}`, now);
        return true;
      }
      // scan, stuffing and lateral count by the value itself; the others by scope:value (and a route or token after '|')
      windows[name].relax(name === 'scan' || name === 'stuffing' || name === 'lateral' ? q.value : `${q.scope}:${q.value}`, now);
      return true;
    },
  };
}
