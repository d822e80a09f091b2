// Supervision of the processes `gatehouse up` runs: each component is a child
// that is restarted when it fails, after an exponential backoff with jitter
// (0.5 s doubling to 30 s; back to 0.5 s once it has been healthy for 60 s).
// A component that fails before it ever answered (a bad config, a missing
// module) is retried a few times, then reported once and left failed; one
// that exits with code 2 (the CLI's usage/config error) is not retried at all.
// The rest keeps serving either way; `status()` says who is unhealthy.
//
// Shutdown goes tier by tier (lowest first: gateways, services, authorities,
// CA): SIGTERM, wait, and SIGKILL what is left at the tier's deadline, so the
// whole stop takes at most drainMs + graceMs.
//
// The unit knows nothing of processes: a component is a `spawn()` that returns
// a handle (ready, exited, kill). Time and randomness are injected.

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildHandle<R> {
  pid?: number;
  /** Resolves when the child answers; never rejects (a child that dies first simply never resolves it). */
  ready: Promise<R>;
  exited: Promise<ExitStatus>;
  kill(signal: NodeJS.Signals): void;
}

export interface ComponentSpec<R> {
  name: string;
  /** Stop order: lower tiers are stopped first, and wholly, before the next. */
  tier: number;
  /** Start one instance. Called again for every restart (so it can hand out fresh one-time credentials). */
  spawn(): ChildHandle<R>;
  /** Why an instance failed, for the report (e.g. the last lines of its log). Absent: the exit status. */
  describe?(exit: ExitStatus): string;
}

export interface Timers {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** in [0, 1) */
  random(): number;
}

export const systemTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  random: () => Math.random(),
};

export interface BackoffOptions {
  /** first delay before jitter; default 500 ms */
  initialMs?: number;
  /** ceiling before jitter; default 30 s */
  maxMs?: number;
}

/**
 * Delay before restart number `failures` (1 = first failure): the base doubles
 * from initialMs up to maxMs, and the delay is drawn uniformly from
 * [base / 2, base] ("equal jitter"), so components that failed together do not
 * come back in lockstep.
 */
export function backoffDelay(failures: number, random: () => number, o: BackoffOptions = {}): number {
  const initial = o.initialMs ?? 500;
  const max = o.maxMs ?? 30_000;
  const base = Math.min(max, initial * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  return Math.round(base / 2 + random() * (base / 2));
}

export type ComponentState = 'starting' | 'running' | 'backoff' | 'failed' | 'stopping' | 'stopped';

export interface ComponentStatus {
  name: string;
  state: ComponentState;
  healthy: boolean;
  pid?: number;
  /** restarts after a failure so far */
  restarts: number;
  /** why it last failed (absent: it never failed) */
  reason?: string;
  /** when it entered `state` (ms since the epoch) */
  since: number;
}

export type SupervisorEvent =
  | { type: 'ready'; name: string; restarts: number; value: unknown }
  /** An instance exited on its own; `restartInMs` absent: it is not restarted (see `failed`). */
  | { type: 'exited'; name: string; status: ExitStatus; reason: string; wasReady: boolean; everReady: boolean; restartInMs?: number }
  /** The component is given up on: failed at start too often, exited with code 2, or restart is off. */
  | { type: 'failed'; name: string; reason: string; everReady: boolean };

export interface SupervisorOptions extends BackoffOptions {
  timers?: Timers;
  /** false: an exit is final (`--fail-fast`; the caller stops everything). Default true. */
  restart?: boolean;
  /** healthy this long, the backoff starts over; default 60 s */
  resetAfterMs?: number;
  /** a component that never answered is given up on after this many failed starts; default 3 */
  startAttempts?: number;
  /** an instance that has not answered after this long is killed (a failed start); default 60 s */
  startTimeoutMs?: number;
  onEvent?(e: SupervisorEvent): void;
}

export interface StopResult {
  /** every instance exited by itself (code 0, or SIGTERM/SIGINT) before its deadline */
  clean: boolean;
  /** components that had to be killed */
  killed: string[];
  /** components this stop ended that exited otherwise than by themselves with code 0 (or on SIGTERM/SIGINT) */
  failed: string[];
  ms: number;
}

export class StoppedError extends Error {
  readonly code = 'stopped';
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: Error): void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const d: Deferred<T> = {
    settled: false,
    promise: new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
    resolve: (v) => {
      if (d.settled) return;
      d.settled = true;
      resolve(v);
    },
    reject: (e) => {
      if (d.settled) return;
      d.settled = true;
      reject(e);
    },
  };
  // a caller that never awaits the first start must not see an unhandled rejection
  d.promise.catch(() => {});
  return d;
}

interface Record_<R> {
  spec: ComponentSpec<R>;
  state: ComponentState;
  since: number;
  handle?: ChildHandle<R>;
  exited?: Promise<ExitStatus>;
  last?: ExitStatus;
  killed: boolean;
  everReady: boolean;
  readyAt: number;
  failures: number;
  startFailures: number;
  restarts: number;
  reason?: string;
  timer?: unknown;
  restartRequested: boolean;
  first: Deferred<R>;
}

export interface Supervisor {
  /** Start a component; resolves with its first ready value, rejects if it is given up on (or stopped) first. */
  add<R>(spec: ComponentSpec<R>): Promise<R>;
  /** Replace the running instance of `name` with a fresh one now (not counted as a failure). */
  restart(name: string): void;
  status(): ComponentStatus[];
  /** Stop everything, tier by tier. Idempotent: a second call returns the first call's promise. */
  stop(o?: { drainMs?: number; graceMs?: number }): Promise<StopResult>;
  readonly stopping: boolean;
}

export function createSupervisor(o: SupervisorOptions = {}): Supervisor {
  const t = o.timers ?? systemTimers;
  const restartOn = o.restart ?? true;
  const resetAfterMs = o.resetAfterMs ?? 60_000;
  const startAttempts = o.startAttempts ?? 3;
  const startTimeoutMs = o.startTimeoutMs ?? 60_000;
  const records = new Map<string, Record_<unknown>>();
  let stopping: Promise<StopResult> | undefined;
  const emit = (e: SupervisorEvent) => o.onEvent?.(e);
  const enter = (r: Record_<unknown>, state: ComponentState) => {
    r.state = state;
    r.since = t.now();
  };
  const describe = (r: Record_<unknown>, s: ExitStatus) =>
    r.spec.describe?.(s) ?? `exited (${s.signal ?? `code ${s.code}`})`;

  const launch = (r: Record_<unknown>) => {
    enter(r, 'starting');
    const h = r.spec.spawn();
    r.handle = h;
    r.killed = false;
    r.exited = h.exited;
    let isReady = false;
    let gone = false;
    const startTimer = t.setTimeout(() => {
      if (!isReady && !gone) {
        r.reason = `did not answer within ${startTimeoutMs} ms`;
        h.kill('SIGKILL');
      }
    }, startTimeoutMs);
    void h.ready.then((value) => {
      if (gone || r.handle !== h || stopping) return;
      isReady = true;
      t.clearTimeout(startTimer);
      enter(r, 'running');
      r.readyAt = t.now();
      r.everReady = true;
      r.startFailures = 0;
      r.reason = undefined;
      emit({ type: 'ready', name: r.spec.name, restarts: r.restarts, value });
      r.first.resolve(value);
    });
    void h.exited.then((status) => {
      gone = true;
      t.clearTimeout(startTimer);
      r.last = status;
      if (r.handle === h) r.handle = undefined;
      onExit(r, status, isReady);
    });
  };

  const giveUp = (r: Record_<unknown>, reason: string) => {
    enter(r, 'failed');
    r.reason = reason;
    emit({ type: 'failed', name: r.spec.name, reason, everReady: r.everReady });
    r.first.reject(new Error(`${r.spec.name}: ${reason}`));
  };

  const onExit = (r: Record_<unknown>, status: ExitStatus, wasReady: boolean) => {
    if (stopping || r.state === 'stopping') {
      enter(r, 'stopped');
      return;
    }
    if (r.restartRequested) {
      r.restartRequested = false;
      launch(r);
      return;
    }
    const reason = r.reason && !wasReady && status.signal === 'SIGKILL' ? r.reason : describe(r, status);
    if (!restartOn) {
      emit({ type: 'exited', name: r.spec.name, status, reason, wasReady, everReady: r.everReady });
      return giveUp(r, reason);
    }
    if (!wasReady) {
      r.startFailures++;
      // code 2: the CLI's usage/config error, the same on every try
      if (status.code === 2 || (!r.everReady && r.startFailures >= startAttempts)) {
        emit({ type: 'exited', name: r.spec.name, status, reason, wasReady, everReady: r.everReady });
        return giveUp(r, reason);
      }
    } else if (t.now() - r.readyAt >= resetAfterMs) r.failures = 0;
    r.failures++;
    const delay = backoffDelay(r.failures, t.random, o);
    enter(r, 'backoff');
    r.reason = reason;
    emit({ type: 'exited', name: r.spec.name, status, reason, wasReady, everReady: r.everReady, restartInMs: delay });
    r.timer = t.setTimeout(() => {
      r.timer = undefined;
      if (stopping || r.state !== 'backoff') return;
      r.restarts++;
      launch(r);
    }, delay);
  };

  const sleep = (ms: number) => new Promise<void>((resolve) => t.setTimeout(resolve, Math.max(0, ms)));

  const stopAll = async (drainMs: number, graceMs: number): Promise<StopResult> => {
    const started = t.now();
    const deadline = started + drainMs + graceMs;
    const killed: string[] = [];
    const live0 = [...records.values()].filter((r) => r.handle);
    for (const r of records.values()) {
      if (r.timer !== undefined) t.clearTimeout(r.timer);
      r.timer = undefined;
      if (!r.handle) enter(r, r.state === 'failed' ? 'failed' : 'stopped');
      r.first.reject(new StoppedError(`${r.spec.name}: stopped before it was ready`));
    }
    const tiers = [...new Set([...records.values()].map((r) => r.spec.tier))].sort((a, b) => a - b);
    for (const [i, tier] of tiers.entries()) {
      const live = [...records.values()].filter((r) => r.spec.tier === tier && r.handle);
      if (live.length === 0) continue;
      for (const r of live) {
        enter(r, 'stopping');
        r.handle!.kill('SIGTERM');
      }
      // the first tier (the gateways) drains for up to drainMs; the rest share what is left
      const tierDeadline = i === 0 ? Math.min(deadline, t.now() + drainMs) : deadline;
      const exits = Promise.all(live.map((r) => r.exited));
      let timer: unknown;
      const timedOut = await Promise.race([
        exits.then(() => false),
        new Promise<boolean>((resolve) => (timer = t.setTimeout(() => resolve(true), Math.max(0, tierDeadline - t.now())))),
      ]);
      t.clearTimeout(timer);
      if (timedOut) {
        for (const r of live)
          if (r.handle) {
            killed.push(r.spec.name);
            r.killed = true;
            r.handle.kill('SIGKILL');
          }
        await Promise.race([exits, sleep(500)]);
      }
    }
    // only the instances this stop ended count: one that crashed before (in its backoff now) does not make the stop unclean
    const failed = live0
      .filter((r) => !r.killed && !(r.last?.code === 0 || r.last?.signal === 'SIGTERM' || r.last?.signal === 'SIGINT'))
      .map((r) => r.spec.name);
    return { clean: killed.length === 0 && failed.length === 0, killed, failed, ms: t.now() - started };
  };

  return {
    get stopping() {
      return stopping !== undefined;
    },
    add<R>(spec: ComponentSpec<R>): Promise<R> {
      if (records.has(spec.name)) throw new Error(`component ${spec.name} is already supervised`);
      if (stopping) return Promise.reject(new StoppedError(`${spec.name}: the supervisor is stopping`));
      const r: Record_<R> = {
        spec,
        state: 'starting',
        since: t.now(),
        killed: false,
        everReady: false,
        readyAt: 0,
        failures: 0,
        startFailures: 0,
        restarts: 0,
        restartRequested: false,
        first: deferred<R>(),
      };
      records.set(spec.name, r as Record_<unknown>);
      launch(r as Record_<unknown>);
      return r.first.promise;
    },
    restart(name: string) {
      const r = records.get(name);
      if (!r || stopping) return;
      if (r.handle) {
        r.restartRequested = true;
        r.handle.kill('SIGTERM');
      } else if (r.state === 'backoff') {
        t.clearTimeout(r.timer);
        r.timer = undefined;
        r.restarts++;
        launch(r);
      }
    },
    status(): ComponentStatus[] {
      return [...records.values()].map((r) => ({
        name: r.spec.name,
        state: r.state,
        healthy: r.state === 'running',
        ...(r.handle?.pid !== undefined ? { pid: r.handle.pid } : {}),
        restarts: r.restarts,
        ...(r.reason !== undefined ? { reason: r.reason } : {}),
        since: r.since,
      }));
    },
    stop(s = {}) {
      stopping ??= stopAll(s.drainMs ?? 10_000, s.graceMs ?? 1_500);
      return stopping;
    },
  };
}
