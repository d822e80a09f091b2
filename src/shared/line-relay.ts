// Several processes' output into one stream, a whole line at a time. Gateway
// workers that shared the primary's stdout pipe tore each other's lines: a
// write into a pipe is atomic only up to PIPE_BUF (4 KiB), and an access-log
// batch is 64 KiB. With this relay each worker writes into a pipe of its own
// and the primary, the one writer of its stdout, copies complete lines only.
import { fstatSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';

/** A line longer than this is passed on in pieces rather than held (none of Gatehouse's come near it). */
const MAX_HELD = 1024 * 1024;
const NEWLINE = 0x0a;

export interface LineRelay {
  /** Copy `source` into the output from now on, whole lines at a time. */
  add(source: Readable): void;
  /**
   * Resolves once every source added so far has ended and everything read from
   * them was written, or after `withinMs` (a source whose writer never closes
   * must not hold a shutdown).
   */
  drained(withinMs: number): Promise<void>;
}

/**
 * Writes sharing a regular file are whole (the kernel serialises them); a
 * pipe, a socket or a terminal can interleave. Is `fd` one that needs a relay?
 */
export function needsRelay(fd: number): boolean {
  try {
    return !fstatSync(fd).isFile();
  } catch {
    return false; // closed: nothing will be read from it anyway
  }
}

export function createLineRelay(out: Writable = process.stdout): LineRelay {
  const sources = new Set<Readable>();
  const ended: Promise<void>[] = [];
  let paused = false;
  const resume = () => {
    paused = false;
    for (const s of sources) s.resume();
  };
  const write = (bytes: Buffer) => {
    if (out.write(bytes)) return;
    if (paused) return;
    // the output is behind: stop reading until it caught up (the sources' writers then wait on their pipes)
    paused = true;
    for (const s of sources) s.pause();
    out.once('drain', resume);
  };
  return {
    add(source) {
      sources.add(source);
      let held: Buffer | undefined;
      source.on('data', (chunk: Buffer) => {
        const end = chunk.lastIndexOf(NEWLINE);
        if (end === -1) {
          held = held === undefined ? Buffer.from(chunk) : Buffer.concat([held, chunk]);
          // a line longer than any Gatehouse writes: passed on in pieces rather than held
          if (held.length >= MAX_HELD) {
            write(held);
            held = undefined;
          }
          return;
        }
        // the held start of a line and this chunk up to its last newline go out together (one writev, no copy)
        const whole = chunk.subarray(0, end + 1);
        if (held === undefined) write(whole);
        else {
          const before = held;
          out.cork();
          out.write(before);
          write(whole);
          out.uncork();
        }
        // copied: a view would keep the whole chunk alive until the line is complete
        held = end + 1 < chunk.length ? Buffer.from(chunk.subarray(end + 1)) : undefined;
      });
      if (paused) source.pause();
      ended.push(
        new Promise<void>((resolve) => {
          const done = () => {
            sources.delete(source);
            // a writer that stopped in the middle of a line: the line is ended so the next one stays whole
            if (held !== undefined) write(Buffer.concat([held, Buffer.from('\n')]));
            held = undefined;
            resolve();
          };
          source.once('end', done);
          source.once('close', done);
          source.once('error', done);
        }),
      );
    },
    async drained(withinMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, withinMs)));
      const all = Promise.all(ended).then(() => new Promise<void>((resolve) => out.write(EMPTY, () => resolve())));
      await Promise.race([all, late]);
      clearTimeout(timer);
    },
  };
}

const EMPTY = Buffer.alloc(0);
