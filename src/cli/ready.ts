// How a component started by a CLI verb tells `gatehouse up` (its parent
// process, over the IPC channel) that it answers, and where.

export interface ReadyMessage {
  type: 'gatehouse:ready';
  component: string;
  zone?: string;
  service?: string;
  /** URLs this component serves, e.g. { gateway, admin } or { authority }. */
  endpoints: Record<string, string>;
  /** Dev mode only: seeded demo identities of this zone (see DESIGN.md). */
  devCredentials?: unknown;
  /** Dev mode only: the zone gateway's revocation-feed client (over IPC only, never logged). */
  devFeedClient?: { client_id: string; client_secret: string };
}

export function announceReady(message: Omit<ReadyMessage, 'type'>): void {
  const full: ReadyMessage = { type: 'gatehouse:ready', ...message };
  if (process.send) process.send(full);
  const where = Object.entries(message.endpoints)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  process.stderr.write(`gatehouse ${message.component}${message.zone ? ` (${message.zone})` : ''}: ready: ${where}\n`);
}

/**
 * The drain a component gets on SIGTERM before it exits anyway: `gatehouse up
 * --drain-timeout` hands it down in GATEHOUSE_DRAIN_TIMEOUT_MS; absent: 10 s.
 */
export function drainTimeoutMs(): number {
  const v = Number(process.env.GATEHOUSE_DRAIN_TIMEOUT_MS);
  return Number.isFinite(v) && v > 0 ? v : 10_000;
}

/** How long a component whose parent is gone may take to close before it exits anyway. */
const ORPHAN_EXIT_MS = 1_500;

let closing: ((why: 'signal' | 'parent') => void) | undefined;

// A component that `gatehouse up` supervises must never outlive it, even when
// `up` is killed with SIGKILL: its IPC channel then closes. A component that is
// still starting (no closer registered yet) exits at once; one that serves
// closes (below). The channel is polled too, so a 'disconnect' that fired
// before anyone listened is not missed; the poll keeps nothing alive.
if (process.env.GATEHOUSE_SUPERVISED === '1' && typeof process.send === 'function') {
  const parentGone = () => {
    if (closing) closing('parent');
    else process.exit(1);
  };
  const watch = setInterval(() => {
    if (!process.connected) parentGone();
  }, 250);
  watch.unref();
}

/** Close `closers` once on SIGINT/SIGTERM (or when the parent goes away), then exit. */
export function closeOnSignals(close: () => Promise<void>): void {
  let started = false;
  const stop = (why: 'signal' | 'parent') => {
    if (started) {
      if (why === 'parent') setTimeout(() => process.exit(1), ORPHAN_EXIT_MS).unref();
      return;
    }
    started = true;
    // a signal: drain up to the drain timeout; the parent gone: nobody waits, be quick
    const force = setTimeout(() => process.exit(1), why === 'parent' ? ORPHAN_EXIT_MS : drainTimeoutMs());
    force.unref();
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  closing = stop;
  process.on('SIGINT', () => stop('signal'));
  process.on('SIGTERM', () => stop('signal'));
  process.on('disconnect', () => stop('parent'));
  if (typeof process.send === 'function' && !process.connected) stop('parent');
}
