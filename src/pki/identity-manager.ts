// Keeps a workload identity fresh: renews at half its lifetime, retries with
// backoff, and raises an alert (event `alert`, log line, metric) once less than
// `alertFraction` of the lifetime remains without a successful renewal — well
// before expiry. Listeners of `rotated` swap the new key and certificate into
// live TLS contexts (setSecureContext), so open connections are not dropped.
import { EventEmitter } from 'node:events';
import { systemClock, type Clock } from '../shared/clock.ts';
import type { WorkloadIdentity } from './workload-identity.ts';
import { renewIdentity } from './bootstrap-identity.ts';

export interface IdentityManager extends EventEmitter {
  current(): WorkloadIdentity;
  /** Renew now (also used by the timer). */
  renewNow(): Promise<WorkloadIdentity>;
  close(): void;
}

export interface IdentityManagerOptions {
  initial: WorkloadIdentity;
  /** How to get a new identity; default: the CA's /v1/renew with the current certificate. */
  renew?: (current: WorkloadIdentity) => Promise<WorkloadIdentity>;
  caUrl?: string;
  trustDomain?: string;
  /** Renew at this fraction of the lifetime (default 0.5). */
  renewAt?: number;
  /** Alert when less than this fraction remains and renewal has not succeeded (default 0.25). */
  alertFraction?: number;
  clock?: Clock;
}

export function createIdentityManager(options: IdentityManagerOptions): IdentityManager {
  const clock = options.clock ?? systemClock;
  const renewAt = options.renewAt ?? 0.5;
  const alertFraction = options.alertFraction ?? 0.25;
  const renewFn =
    options.renew ??
    ((current: WorkloadIdentity) => {
      if (!options.caUrl || !options.trustDomain) throw new Error('renewal needs caUrl and trustDomain (or a renew function)');
      return renewIdentity({ caUrl: options.caUrl, trustDomain: options.trustDomain, current });
    });
  const emitter = new EventEmitter();
  let identity = options.initial;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let failures = 0;
  let inflight: Promise<WorkloadIdentity> | undefined;

  const lifetime = () => identity.notAfter.getTime() - identity.notBefore.getTime();
  const schedule = () => {
    if (closed) return;
    const now = clock.now();
    const due = identity.notBefore.getTime() + lifetime() * renewAt;
    // After a failure: retry after a tenth of what remains, between 1 s and 60 s.
    const remaining = identity.notAfter.getTime() - now;
    const delay = failures === 0 ? Math.max(0, due - now) : Math.min(60_000, Math.max(1000, remaining / 10));
    clearTimeout(timer);
    timer = setTimeout(() => void renewNow().catch(() => {}), Math.min(delay, 2 ** 31 - 1));
    timer.unref();
  };

  const checkAlert = () => {
    const remaining = identity.notAfter.getTime() - clock.now();
    if (remaining < lifetime() * alertFraction)
      emitter.emit('alert', {
        kind: remaining <= 0 ? 'certificate_expired' : 'certificate_expiring',
        spiffeId: identity.spiffeId,
        serial: identity.serial,
        notAfter: identity.notAfter,
        remainingMs: remaining,
      });
  };

  async function renewNow(): Promise<WorkloadIdentity> {
    if (inflight) return inflight;
    inflight = (async () => {
      try {
        const next = await renewFn(identity);
        const previous = identity;
        identity = next;
        failures = 0;
        emitter.emit('rotated', next, previous);
        return next;
      } catch (error) {
        failures++;
        emitter.emit('renewal_failed', error);
        checkAlert();
        throw error;
      } finally {
        inflight = undefined;
        schedule();
      }
    })();
    return inflight;
  }

  schedule();
  return Object.assign(emitter, {
    current: () => identity,
    renewNow,
    close() {
      closed = true;
      clearTimeout(timer);
    },
  }) as IdentityManager;
}
