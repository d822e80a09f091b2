// The supervisor with a frozen clock: backoff and jitter bounds, the reset
// after a healthy minute, a component given up on (reported once), a restart
// cancelled by a stop, and the tier order of a stop. The children here are
// handles the test drives; test/faults.test.ts runs the real processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { backoffDelay, createSupervisor, type ChildHandle, type ExitStatus, type SupervisorEvent, type Timers } from './supervisor.ts';

function manualTimers(randoms: number[] = []) {
  let now = 1_000_000;
  let seq = 0;
  const queue = new Map<number, { at: number; fn: () => void }>();
  const timers: Timers & { advance(ms: number): Promise<void>; pending(): number[] } = {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      queue.set(id, { at: now + ms, fn });
      return id;
    },
    clearTimeout(h) {
      queue.delete(h as number);
    },
    random: () => randoms.shift() ?? 0.5,
    async advance(ms) {
      const until = now + ms;
      for (;;) {
        await new Promise((r) => setImmediate(r));
        const due = [...queue.entries()].filter(([, q]) => q.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        queue.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = until;
      await new Promise((r) => setImmediate(r));
    },
    pending: () => [...queue.values()].map((q) => q.at - now),
  };
  return timers;
}

interface Driven {
  handle: ChildHandle<string>;
  answer(): void;
  exit(s: Partial<ExitStatus>): void;
  signals: NodeJS.Signals[];
}

/** A child the test drives; it exits on SIGTERM (code 0) and SIGKILL unless told to ignore SIGTERM. */
function driven(o: { ignoreTerm?: boolean; log?: string[]; name?: string } = {}): Driven {
  let answer!: (v: string) => void;
  let exit!: (s: ExitStatus) => void;
  const signals: NodeJS.Signals[] = [];
  const exited = new Promise<ExitStatus>((r) => (exit = r));
  const d: Driven = {
    signals,
    handle: {
      ready: new Promise<string>((r) => (answer = r)),
      exited,
      kill(signal) {
        signals.push(signal);
        o.log?.push(`${o.name}:${signal}`);
        if (signal === 'SIGKILL') exit({ code: null, signal: 'SIGKILL' });
        else if (!o.ignoreTerm) setImmediate(() => exit({ code: 0, signal: null }));
      },
    },
    answer: () => answer('up'),
    exit: (s) => exit({ code: s.code ?? null, signal: s.signal ?? null }),
  };
  return d;
}

test('backoff: 0.5 s doubling to 30 s, jitter within [base/2, base]', () => {
  for (let n = 1; n <= 20; n++) {
    const base = Math.min(30_000, 500 * 2 ** (n - 1));
    const low = backoffDelay(n, () => 0);
    const high = backoffDelay(n, () => 0.999999);
    assert.equal(low, base / 2, `failure ${n}: the lowest delay`);
    assert.ok(high <= base && high >= base * 0.99, `failure ${n}: the highest delay ${high} ≤ ${base}`);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(n, Math.random);
      assert.ok(d >= base / 2 && d <= base, `failure ${n}: ${d} in [${base / 2}, ${base}]`);
    }
  }
  assert.equal(backoffDelay(1, () => 0.999999), 500);
  assert.equal(backoffDelay(100, () => 0.999999), 30_000, 'capped');
});

test('a crash after ready is restarted with growing jittered delays; 60 s healthy resets the backoff', async () => {
  const timers = manualTimers([0, 0.999999, 0.5, 0]);
  const children: Driven[] = [];
  const events: SupervisorEvent[] = [];
  const sup = createSupervisor({ timers, onEvent: (e) => events.push(e) });
  const first = sup.add({
    name: 'svc',
    tier: 0,
    spawn: () => {
      const c = driven();
      children.push(c);
      return c.handle;
    },
  });
  children[0].answer();
  assert.equal(await first, 'up');
  assert.deepEqual(sup.status().map((s) => [s.state, s.healthy]), [['running', true]]);

  const delays: number[] = [];
  for (let i = 0; i < 3; i++) {
    children.at(-1)!.exit({ signal: 'SIGKILL' });
    await timers.advance(0);
    const e = events.at(-1)!;
    assert.equal(e.type, 'exited');
    delays.push((e as { restartInMs: number }).restartInMs);
    assert.equal(sup.status()[0].state, 'backoff');
    assert.equal(sup.status()[0].healthy, false);
    const before = children.length;
    await timers.advance(delays.at(-1)! - 1);
    assert.equal(children.length, before, 'not restarted before the delay');
    await timers.advance(1);
    assert.equal(children.length, before + 1, 'restarted at the delay');
    children.at(-1)!.answer();
    await timers.advance(0);
    assert.equal(sup.status()[0].state, 'running');
  }
  // random 0 → base/2; 0.999999 → base; 0.5 → 3/4 base
  assert.deepEqual(delays, [250, 1000, 1500]);
  assert.equal(sup.status()[0].restarts, 3);
  // healthy for a minute: the next failure starts from 0.5 s again (random 0 → 250 ms)
  await timers.advance(60_000);
  children.at(-1)!.exit({ code: 1 });
  await timers.advance(0);
  assert.equal((events.at(-1) as { restartInMs: number }).restartInMs, 250);
  const result = await sup.stop({ drainMs: 1000, graceMs: 500 });
  await timers.advance(10_000);
  assert.equal(children.length, 4, 'a stop during the backoff cancels the restart');
  assert.equal(sup.status()[0].state, 'stopped');
  assert.deepEqual(result.killed, []);
  assert.equal(result.clean, true, 'a crash before the stop does not make the stop unclean');
});

test('a component that never answers is tried 3 times, then reported once and left alone; code 2 is not retried', async () => {
  const timers = manualTimers();
  const spawned: Record<string, number> = { bad: 0, config: 0, good: 0 };
  const events: SupervisorEvent[] = [];
  const sup = createSupervisor({ timers, onEvent: (e) => events.push(e) });
  const make = (name: string, behave: (c: Driven) => void) => ({
    name,
    tier: 0,
    spawn: () => {
      spawned[name]++;
      const c = driven();
      setImmediate(() => behave(c));
      return c.handle;
    },
    describe: (s: ExitStatus) => `${name} said no (code ${s.code})`,
  });
  const bad = sup.add(make('bad', (c) => c.exit({ code: 1 })));
  const config = sup.add(make('config', (c) => c.exit({ code: 2 })));
  const good = sup.add(make('good', (c) => c.answer()));
  await timers.advance(0);
  await assert.rejects(config, /config said no \(code 2\)/);
  assert.equal(spawned.config, 1, 'exit code 2 is not retried');
  await timers.advance(600_000);
  await assert.rejects(bad, /bad said no \(code 1\)/);
  assert.equal(await good, 'up');
  assert.equal(spawned.bad, 3);
  assert.equal(events.filter((e) => e.type === 'failed' && e.name === 'bad').length, 1, 'reported once');
  const st = Object.fromEntries(sup.status().map((s) => [s.name, s]));
  assert.equal(st.bad.state, 'failed');
  assert.equal(st.bad.reason, 'bad said no (code 1)');
  assert.equal(st.good.healthy, true);
  await sup.stop();
});

test('a start that never answers is killed after startTimeoutMs and counts as a failed start', async () => {
  const timers = manualTimers();
  const children: Driven[] = [];
  const sup = createSupervisor({ timers, startTimeoutMs: 5_000, startAttempts: 2 });
  const first = sup.add({
    name: 'hung',
    tier: 0,
    spawn: () => {
      const c = driven();
      children.push(c);
      return c.handle;
    },
  });
  await timers.advance(4_999);
  assert.deepEqual(children[0].signals, []);
  await timers.advance(1);
  assert.deepEqual(children[0].signals, ['SIGKILL']);
  await timers.advance(60_000);
  await assert.rejects(first, /did not answer within 5000 ms/);
  assert.equal(children.length, 2);
});

test('stop: tier by tier, each tier wholly stopped before the next; a straggler is killed at its deadline', async () => {
  const timers = manualTimers();
  const log: string[] = [];
  const sup = createSupervisor({ timers });
  const children: Record<string, Driven> = {};
  const add = (name: string, tier: number, ignoreTerm = false) =>
    sup.add({
      name,
      tier,
      spawn: () => {
        const c = driven({ log, name, ignoreTerm });
        children[name] = c;
        c.handle.exited.then(() => log.push(`${name}:exit`));
        setImmediate(() => c.answer());
        return c.handle;
      },
    });
  await Promise.all([add('ca', 4), add('authority', 3), add('service', 2), add('gateway', 0, true)]);
  const stopped = sup.stop({ drainMs: 10_000, graceMs: 1_500 });
  assert.equal(sup.stop(), stopped, 'a second stop is the same stop');
  await timers.advance(9_999);
  assert.deepEqual(log, ['gateway:SIGTERM'], 'nothing else is signalled while the gateway drains');
  await timers.advance(1);
  const result = await stopped;
  assert.deepEqual(log, [
    'gateway:SIGTERM',
    'gateway:SIGKILL',
    'gateway:exit',
    'service:SIGTERM',
    'service:exit',
    'authority:SIGTERM',
    'authority:exit',
    'ca:SIGTERM',
    'ca:exit',
  ]);
  assert.deepEqual(result.killed, ['gateway']);
  assert.equal(result.clean, false);
  assert.ok(result.ms <= 11_500);
});

test('a real child process that crashes is restarted; stop ends it', async () => {
  let spawned = 0;
  const events: SupervisorEvent[] = [];
  const sup = createSupervisor({ onEvent: (e) => events.push(e), initialMs: 100 });
  const pids: number[] = [];
  await sup.add({
    name: 'node',
    tier: 0,
    spawn() {
      spawned++;
      // the first instance crashes right after answering; the second stays
      const code = spawned === 1 ? `process.send('ok'); setTimeout(() => process.exit(3), 50)` : `process.send('ok'); setInterval(() => {}, 1000)`;
      const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      pids.push(child.pid!);
      return {
        pid: child.pid,
        ready: new Promise<string>((r) => child.once('message', () => r('ok'))),
        exited: new Promise<ExitStatus>((r) => child.once('exit', (code, signal) => r({ code, signal }))),
        kill: (s) => child.kill(s),
      };
    },
  });
  for (let i = 0; i < 100 && !(spawned === 2 && sup.status()[0].healthy); i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(spawned, 2);
  assert.ok(sup.status()[0].healthy);
  const crash = events.find((e) => e.type === 'exited')!;
  assert.deepEqual((crash as { status: ExitStatus }).status, { code: 3, signal: null });
  const result = await sup.stop({ drainMs: 2_000 });
  assert.equal(result.clean, true, JSON.stringify(result));
  assert.throws(() => process.kill(pids[1], 0), /ESRCH/, 'the instance is gone');
});
