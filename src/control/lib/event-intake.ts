// The control plane's side of security events: a batch from a PEP (POST
// /v1/events over mTLS) is parsed, each event checked against the schema,
// attributed to the PEP's verified SPIFFE ID (whatever the event says), its
// time corrected when the sender's clock is off, stored, and shown to the
// detectors; a detector that fires quarantines the source. Each PEP may send
// a bounded rate (a flood is answered 429 and counted, never stored).
// A `token_revoked` event is a decision, not only a record: admitted from an
// authority's identity alone (any other sender's is refused and counted as
// forged), it puts the jti on every bundle's revoked token ids until the
// token's exp (revoked-tokens.ts), and the bundles are published at once.
import { GatehouseError } from '../../shared/errors.ts';
import type { Clock } from '../../shared/clock.ts';
import type { Logger } from '../../shared/logger.ts';
import type { MonitorConfig } from '../../topology/schema-monitor.ts';
import {
  EventInput,
  EVENT_SCHEMA,
  EVENTS_BY_SENDER,
  MAX_BATCH_EVENTS,
  createDetectors,
  openEventStore,
  type Detection,
  type EventQuery,
  type EventType,
  type QuarantineStore,
  type SecurityEvent,
} from '../../monitor/index.ts';
import type { Quarantine } from '../../policy/index.ts';
import { randomUUID } from 'node:crypto';
import { caSpiffeId, parseSpiffeId, vaultSpiffeId } from '../../pki/spiffe-id.ts';
import type { RevokedTokens } from './revoked-tokens.ts';

/** Events a PEP may send per second, and at once (a token bucket per PEP). */
const RATE_PER_SECOND = 2_000;
const BURST = 10_000;
const SKEW_MS = 5 * 60_000;

export interface EventIntakeStats {
  stored: number;
  rejected: number;
  throttled: number;
  /** token_revoked events from a workload that is not an authority, certificate events from one that is not the CA: refused. */
  forged: number;
  /** token_revoked events of an authority refused as unusable (bad jti, no exp, exp past). */
  revocationsRefused: number;
}

export interface EventIntake {
  /** A batch from `pep` (its verified SPIFFE ID); throws a GatehouseError for a batch refused as a whole. */
  /** Throws 429 when `pep` has no budget left: asked before its batch is even read. */
  admit(pep: string): void;
  ingest(pep: string, raw: Buffer): Promise<{ accepted: number; rejected: number }>;
  query(q: EventQuery): Promise<SecurityEvent[]>;
  /** An event of the control plane itself (quarantines, detections). */
  record(fields: Pick<SecurityEvent, 'type' | 'code'> & Partial<SecurityEvent>): void;
  /** A detector's decision was released as a false positive: the detector learns (true when one made it). */
  falsePositive(q: Quarantine): boolean;
  stats(): EventIntakeStats;
  close(): Promise<void>;
}

export async function createEventIntake(o: {
  stateDir: string;
  clock: Clock;
  log: Logger;
  monitor: () => MonitorConfig;
  quarantines: QuarantineStore;
  /** Publish the bundles (a detector added a quarantine); `why` names it in the config_change event. */
  publish: (why: string) => Promise<unknown>;
  /** The control plane's own SPIFFE ID (the `pep` of its own events). */
  selfId: string;
  /** Where token_revoked events go (absent: they are refused like forged ones). */
  revokedTokens?: RevokedTokens;
  /** The longest an access token of the authority `pep` can live (ms), or undefined when `pep` is no authority of the topology. */
  authorityLifetime?: (pep: string) => number | undefined;
  /** Publish the bundles for new revocations (coalesced by the caller's chain). */
  publishRevocations?: (why: string) => void;
}): Promise<EventIntake> {
  // where events are kept is read once, at start (monitor.storage)
  const store = await openEventStore({ stateDir: o.stateDir, clock: o.clock, storage: o.monitor().storage });
  const detectors = createDetectors(o.monitor, new URL(o.selfId).host);
  const trustDomain = new URL(o.selfId).host;
  const caId = caSpiffeId(trustDomain);
  const vaultId = vaultSpiffeId(trustDomain);
  /** The event types `pep` sends, by its kind; undefined: none (not a workload of this trust domain). */
  const sendsOf = (pep: string): ReadonlySet<EventType> | undefined => {
    if (pep === caId) return EVENTS_BY_SENDER.ca;
    if (pep === vaultId) return EVENTS_BY_SENDER.vault;
    const id = parseSpiffeId(pep, trustDomain);
    return id === null || id.kind === 'ca' ? undefined : EVENTS_BY_SENDER[id.kind];
  };
  const buckets = new Map<string, { tokens: number; at: number }>();
  const stats: EventIntakeStats = { stored: 0, rejected: 0, throttled: 0, forged: 0, revocationsRefused: 0 };

  const prune = () => void store.prune(o.clock.now() - o.monitor().retentionHours * 3600_000).catch((err: unknown) => o.log.error({ err }, 'pruning security events failed'));
  prune();
  const pruneTimer = setInterval(prune, 10 * 60_000);
  pruneTimer.unref();

  function take(pep: string, n: number): boolean {
    const now = o.clock.now();
    const b = buckets.get(pep) ?? { tokens: BURST, at: now };
    b.tokens = Math.min(BURST, b.tokens + ((now - b.at) / 1000) * RATE_PER_SECOND);
    b.at = now;
    buckets.set(pep, b);
    if (b.tokens < Math.max(n, 1)) return false;
    b.tokens -= n;
    return true;
  }

  function record(fields: Pick<SecurityEvent, 'type' | 'code'> & Partial<SecurityEvent>): void {
    const now = new Date(o.clock.now()).toISOString();
    const e = { schema: EVENT_SCHEMA, id: randomUUID(), time: now, received: now, pep: o.selfId, ...fields } as SecurityEvent;
    void store.add([e]).catch((err: unknown) => o.log.error({ err, type: e.type }, 'an event of the control plane could not be stored'));
  }

  // a burst of detections is one publish
  let publishing: string[] | undefined;
  const publishSoon = (why: string) => {
    if (publishing) return void publishing.push(why);
    publishing = [why];
    setImmediate(() => {
      const all = publishing!;
      publishing = undefined;
      void o.publish(all.length === 1 ? all[0] : `${all.length} detections: ${all.slice(0, 5).join('; ')}`).catch(() => undefined);
    });
  };

  // the fields an event names the quarantined one by
  const about = (d: Detection): Partial<SecurityEvent> => {
    const f: Partial<SecurityEvent> = d.source ? { source: d.source } : {};
    if (d.scope === 'source') f.source = d.value;
    else if (d.scope === 'service') f.peer = d.value;
    else f[d.scope] = d.value;
    return f;
  };

  function act(d: Detection): void {
    record({ type: 'detection', code: d.detector, ...about(d), count: d.count, detail: d.shadow ? `shadow: ${d.reason}` : d.reason });
    if (d.shadow) return o.log.info({ event: 'security', kind: 'detection', ...d }, 'detector would quarantine (shadow)');
    try {
      const q = o.quarantines.add({ scope: d.scope, value: d.value, forMs: d.quarantineForMs, reason: d.reason.slice(0, 500), origin: `detector:${d.detector}` });
      o.log.warn({ event: 'security', kind: 'quarantine_added', ...q }, `detector quarantined a ${d.scope}`);
      record({ type: 'quarantine', code: 'added', ...about(d), detail: d.reason });
      publishSoon(`quarantine of ${q.scope} ${q.value} added by ${q.origin}`);
    } catch (error) {
      o.log.error({ err: error, scope: d.scope, value: d.value }, 'detector could not quarantine');
    }
  }

  return {
    admit(pep) {
      if (take(pep, 0)) return;
      stats.throttled++;
      throw new GatehouseError('too_many_requests', 'Too many events from this workload; retry later.');
    },
    async ingest(pep, raw) {
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        throw new GatehouseError('bad_request', 'The batch is not JSON.');
      }
      if (!Array.isArray(body)) throw new GatehouseError('unprocessable', 'A batch is a JSON array of events.');
      if (body.length > MAX_BATCH_EVENTS) throw new GatehouseError('payload_too_large', `At most ${MAX_BATCH_EVENTS} events per batch.`);
      if (!take(pep, body.length)) {
        stats.throttled += body.length;
        throw new GatehouseError('too_many_requests', 'Too many events from this workload; retry later.');
      }
      const now = o.clock.now();
      const received = new Date(now).toISOString();
      const good: SecurityEvent[] = [];
      let rejected = 0;
      let revoked = 0;
      const lifetime = o.authorityLifetime?.(pep);
      const sends = sendsOf(pep);
      for (const item of body) {
        const parsed = EventInput.safeParse(item);
        if (!parsed.success) {
          rejected++;
          continue;
        }
        // each kind of workload says only what it sees (a gateway its refusals, an authority its sign-ins,
        // the CA what it issued …); the control plane's own events and certificate_revoked come from nobody
        if (sends === undefined || !sends.has(parsed.data.type)) {
          rejected++;
          stats.forged++;
          o.log.warn({ event: 'security', kind: 'forged_event', pep, type: parsed.data.type }, 'an event its sender does not send was refused');
          continue;
        }
        if (parsed.data.type === 'token_revoked') {
          // only an authority takes a token away; from anyone else it is a forgery, refused and counted
          if (lifetime === undefined || !o.revokedTokens) {
            rejected++;
            stats.forged++;
            o.log.warn({ event: 'security', kind: 'forged_revocation', pep }, 'a token_revoked event from a workload that is not an authority was refused');
            continue;
          }
          const r = o.revokedTokens.add(parsed.data.jti, parsed.data.exp, lifetime);
          if (typeof r === 'string') {
            rejected++;
            stats.revocationsRefused++;
            continue;
          }
          if (r) revoked++;
        }
        const e: SecurityEvent = { ...parsed.data, pep, received };
        if (Math.abs(Date.parse(e.time) - now) > SKEW_MS) Object.assign(e, { time: received, skewed: true as const });
        good.push(e);
      }
      if (revoked > 0) o.publishRevocations?.(`${revoked} access token(s) revoked by ${pep}`);
      const added = await store.add(good);
      stats.stored += added;
      stats.rejected += rejected;
      // each event is seen by the detectors once (a retried batch is not counted twice)
      if (added > 0)
        for (const e of good) {
          const d = detectors.observe(e, now);
          if (d) act(d);
        }
      return { accepted: good.length, rejected };
    },
    query: (q) => store.query(q),
    record,
    falsePositive: (q) => detectors.falsePositive(q, o.clock.now()),
    stats: () => ({ ...stats }),
    async close() {
      clearInterval(pruneTimer);
      await store.close();
    },
  };
}
