// What a test file starts, stopped after its last test in reverse order
// (a failure to stop one does not keep the others running), and a poll.
import { after } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

/** Registers `after()`; returns the function that adds a closer. */
export function closeAfterAll(): (close: () => unknown) => void {
  const closers: (() => unknown)[] = [];
  after(async () => {
    for (const c of closers.reverse()) await Promise.resolve().then(c).catch(() => undefined);
  });
  return (close) => void closers.push(close);
}

/** Polls `f` every 20 ms until `ok` says yes; throws with the last value after `ms`. */
export async function until<T>(what: string, f: () => Promise<T> | T, ok: (v: T) => boolean, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: still ${JSON.stringify(v)} after ${ms} ms`);
    await delay(20);
  }
}
