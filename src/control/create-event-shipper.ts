// How a PEP sends its security events to the control plane: emit() only
// appends to a bounded buffer (a request never waits on it); a timer sends
// batches over mTLS (POST /v1/events). When the control plane is down the
// buffer fills, then new events are dropped and counted; nothing blocks.
import https from 'node:https';
import http from 'node:http';
import { controlAdminUrl } from './control-admin-url.ts';
import { randomUUID } from 'node:crypto';
import { createControlAgent, type PepIdentity } from './lib/control-agent.ts';
import { EVENT_SCHEMA, MAX_BATCH_EVENTS, boundedFields, type EventFields, type EventInput } from '../monitor/event.ts';
import type { Clock } from '../shared/clock.ts';
import { systemClock } from '../shared/clock.ts';

export interface EventShipperOptions {
  /** The control plane's base URL (https://host:port). */
  url: string;
  identity: () => PepIdentity;
  trustDomain: string;
  caBundle: string;
  /**
   * Another way to deliver a batch (answers the HTTP status, 0 when unreachable):
   * a component without a workload identity on the control plane's machine posts
   * to its loopback admin listener (shipLocalEvents). Absent: mTLS to `url`.
   */
  post?: (body: string) => Promise<number>;
  /** Events kept while the control plane is unreachable (default 10 000); beyond, new ones are dropped. */
  maxBuffer?: number;
  /** How often a batch is sent (default 1 s). */
  flushMs?: number;
  clock?: Clock;
}

export interface EventShipperStats {
  sent: number;
  dropped: number;
  failedBatches: number;
  buffered: number;
}

export interface EventShipper {
  emit(fields: EventFields): void;
  /** Sends what is buffered now (tests, shutdown). */
  flush(): Promise<void>;
  stats(): EventShipperStats;
  close(): Promise<void>;
}

export function createEventShipper(o: EventShipperOptions): EventShipper {
  const clock = o.clock ?? systemClock;
  const max = o.maxBuffer ?? 10_000;
  const control = o.post ? undefined : createControlAgent({ identity: o.identity, caBundle: o.caBundle, trustDomain: o.trustDomain });
  const url = o.post ? undefined : new URL('/v1/events', o.url);
  let buffer: EventInput[] = [];
  const stats = { sent: 0, dropped: 0, failedBatches: 0 };
  let sending: Promise<void> | undefined;
  let closed = false;

  function post(batch: EventInput[]): Promise<number> {
    const body = JSON.stringify(batch);
    if (o.post) return o.post(body);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url!,
        { method: 'POST', agent: control!.agent(), headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 10_000 },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  async function sendAll(): Promise<void> {
    while (buffer.length > 0) {
      const batch = buffer.slice(0, MAX_BATCH_EVENTS);
      const status = await post(batch).catch(() => 0);
      if (status === 202) {
        buffer = buffer.slice(batch.length);
        stats.sent += batch.length;
        continue;
      }
      stats.failedBatches++;
      // a batch the control plane refuses as such (4xx but 429) would be refused again: dropped, counted
      if (status >= 400 && status < 500 && status !== 429) {
        buffer = buffer.slice(batch.length);
        stats.dropped += batch.length;
        continue;
      }
      return; // unreachable or busy: kept for the next round
    }
  }

  const flush = (): Promise<void> => {
    sending ??= sendAll().finally(() => (sending = undefined));
    return sending;
  };
  const timer = setInterval(() => void flush(), o.flushMs ?? 1000);
  timer.unref();

  return {
    emit(fields) {
      if (closed) return;
      if (buffer.length >= max) {
        stats.dropped++;
        return;
      }
      buffer.push({ schema: EVENT_SCHEMA, id: randomUUID(), time: new Date(clock.now()).toISOString(), ...boundedFields(fields) });
    },
    flush,
    stats: () => ({ ...stats, buffered: buffer.length }),
    async close() {
      closed = true;
      clearInterval(timer);
      await Promise.race([flush(), new Promise((r) => setTimeout(r, 1000).unref())]);
      control?.destroy();
    },
  };
}

/** The header naming a local component on the admin listener's POST /events. */
export const LOCAL_COMPONENT_HEADER = 'gatehouse-component';

/**
 * A shipper for a component on the control plane's machine that has no workload
 * identity (a zone authority): batches go to the loopback admin listener
 * (POST /events), found in <stateDir>/control/control.json on every send (the
 * control plane may restart elsewhere). Its events are attributed to
 * `local:<component>`: what any process of this machine could claim, as it can
 * use the admin API at all.
 */
export function shipLocalEvents(o: { stateDir: string; component: string; maxBuffer?: number; flushMs?: number; clock?: Clock }): EventShipper {
  return createEventShipper({
    url: 'http://127.0.0.1',
    identity: () => {
      throw new Error('local events have no identity');
    },
    trustDomain: '',
    caBundle: '',
    maxBuffer: o.maxBuffer,
    flushMs: o.flushMs,
    clock: o.clock,
    async post(body) {
      const admin = controlAdminUrl(o.stateDir);
      if (!admin) return 0;
      return new Promise<number>((resolve) => {
        const req = http.request(
          `${admin}/events`,
          { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), [LOCAL_COMPONENT_HEADER]: o.component }, timeout: 10_000 },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.on('error', () => resolve(0));
        req.end(body);
      });
    },
  });
}
