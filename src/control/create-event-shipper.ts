// How a PEP sends its security events to the control plane: emit() only
// appends to a bounded buffer (a request never waits on it); a timer sends
// batches over mTLS (POST /v1/events). When the control plane is down the
// buffer fills, then new events are dropped and counted; nothing blocks.
// An event that carries a decision (token_revoked) is sent at once rather than
// at the next tick: the control plane publishes it to every gateway.
import https from 'node:https';
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
  const control = createControlAgent({ identity: o.identity, caBundle: o.caBundle, trustDomain: o.trustDomain });
  const url = new URL('/v1/events', o.url);
  let buffer: EventInput[] = [];
  const stats = { sent: 0, dropped: 0, failedBatches: 0 };
  let sending: Promise<void> | undefined;
  let closed = false;

  function post(batch: EventInput[]): Promise<number> {
    const body = JSON.stringify(batch);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        { method: 'POST', agent: control.agent(), headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 10_000 },
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
  // decisions go out on the next turn of the loop (a burst of them is one batch)
  let urgent: NodeJS.Immediate | undefined;
  const soon = () => {
    urgent ??= setImmediate(() => {
      urgent = undefined;
      // a send in flight takes the new events in its loop; a control plane that is down waits for the next tick
      void flush();
    });
  };
  timer.unref();

  return {
    emit(fields) {
      if (closed) return;
      if (buffer.length >= max) {
        stats.dropped++;
        return;
      }
      buffer.push({ schema: EVENT_SCHEMA, id: randomUUID(), time: new Date(clock.now()).toISOString(), ...boundedFields(fields) });
      if (fields.type === 'token_revoked') soon();
    },
    flush,
    stats: () => ({ ...stats, buffered: buffer.length }),
    async close() {
      closed = true;
      clearInterval(timer);
      if (urgent) clearImmediate(urgent);
      await Promise.race([flush(), new Promise((r) => setTimeout(r, 1000).unref())]);
      control.destroy();
    },
  };
}
