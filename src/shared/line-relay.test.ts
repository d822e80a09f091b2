import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { openSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createLineRelay, needsRelay } from './line-relay.ts';

/** An output that records each write it gets, and says it is full after `highWaterMark` bytes until drained. */
function output(highWaterMark = 1 << 20): { stream: Writable; writes: Buffer[] } {
  const writes: Buffer[] = [];
  const stream = new Writable({
    highWaterMark,
    write(chunk: Buffer, _encoding, callback) {
      if (chunk.length > 0) writes.push(Buffer.from(chunk));
      setImmediate(callback);
    },
  });
  return { stream, writes };
}

/** A relay into a recording output, and two writers added to it. */
function twoWriters() {
  const out = output();
  const relay = createLineRelay(out.stream);
  const a = new PassThrough();
  const b = new PassThrough();
  relay.add(a);
  relay.add(b);
  return { out, relay, a, b };
}

test('lines cut anywhere by two writers reach the output whole and in order, never one inside the other', async () => {
  const { out, relay, a, b } = twoWriters();
  const lines = (who: string) => Array.from({ length: 200 }, (_, i) => JSON.stringify({ who, i, pad: 'x'.repeat(i * 7) }) + '\n').join('');
  const textA = Buffer.from(lines('a'));
  const textB = Buffer.from(lines('b'));
  // both writers' bytes in pieces that cut lines (and multi-byte characters) anywhere, alternating
  for (let offset = 0; offset < Math.max(textA.length, textB.length); offset += 997) {
    a.write(textA.subarray(offset, offset + 997));
    b.write(textB.subarray(offset, offset + 997));
  }
  a.end();
  b.end();
  await relay.drained(5_000);
  const got = Buffer.concat(out.writes).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { who: string; i: number });
  assert.deepEqual(got.filter((l) => l.who === 'a').map((l) => l.i), [...Array(200).keys()]);
  assert.deepEqual(got.filter((l) => l.who === 'b').map((l) => l.i), [...Array(200).keys()]);
});

test('a writer that ends in the middle of a line: that line is ended, and the next writer\'s lines stay whole', async () => {
  const { out, relay, a, b } = twoWriters();
  a.write('{"who":"a","i":0}\n{"who":"a","i":1,"cut');
  a.end();
  b.write('{"who":"b","i":0}\n');
  b.end();
  await relay.drained(5_000);
  const lines = Buffer.concat(out.writes).toString('utf8').split('\n');
  assert.deepEqual(lines.filter(Boolean).sort(), ['{"who":"a","i":0}', '{"who":"a","i":1,"cut', '{"who":"b","i":0}'].sort());
  assert.equal(lines.at(-1), '', 'the output ends with a newline');
});

test('an output that is behind pauses every writer until it drains, and loses nothing', async () => {
  const out = output(64);
  const relay = createLineRelay(out.stream);
  const a = new PassThrough({ highWaterMark: 256 });
  relay.add(a);
  const line = Buffer.from('y'.repeat(99) + '\n');
  let refused = 0;
  for (let i = 0; i < 500; i++) if (!a.write(line)) refused++;
  assert.ok(refused > 0, 'the writer is told to wait once the relay stopped reading');
  a.end();
  await relay.drained(5_000);
  assert.equal(Buffer.concat(out.writes).length, 500 * line.length);
});

test('a line longer than the relay holds is passed on rather than kept in memory', async () => {
  const out = output();
  const relay = createLineRelay(out.stream);
  const a = new PassThrough();
  relay.add(a);
  a.write(Buffer.alloc(3 * 1024 * 1024, 0x7a));
  a.end('\n');
  await relay.drained(5_000);
  assert.equal(Buffer.concat(out.writes).length, 3 * 1024 * 1024 + 1);
  assert.ok(out.writes.length > 1);
});

test('a writer that never closes does not hold the shutdown past its bound, and what it wrote is out', async () => {
  const out = output();
  const relay = createLineRelay(out.stream);
  const a = new PassThrough();
  relay.add(a);
  a.write('{"i":0}\n');
  const started = performance.now();
  await relay.drained(100);
  assert.ok(performance.now() - started < 2_000);
  assert.equal(Buffer.concat(out.writes).toString(), '{"i":0}\n');
  a.destroy();
});

test('a regular file needs no relay; anything else (a pipe, a terminal, a device) gets one', () => {
  const file = path.join(tmpdir(), `line-relay-${process.pid}.log`);
  for (const [name, expected] of [[file, false], ['/dev/null', true]] as const) {
    const fd = openSync(name, 'a');
    try {
      assert.equal(needsRelay(fd), expected, name);
    } finally {
      closeSync(fd);
    }
  }
  assert.equal(needsRelay(987654), false, 'a closed descriptor: nothing to relay');
});
