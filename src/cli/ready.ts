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

/** Close `closers` once on SIGINT/SIGTERM (or when the parent goes away), then exit. */
export function closeOnSignals(close: () => Promise<void>): void {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
}
