import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createAccessLogger } from './logger.ts';

/** A destination that keeps every chunk it is handed (as the bytes were at that moment). */
function sink() {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { stream, chunks, lines: () => Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

test('every line is one JSON object: level, pid, name, time, then the entry — non-ASCII, quotes and an empty entry included', async () => {
  const s = sink();
  const log = createAccessLogger('edge', s.stream as never, 0);
  log.info({ request_id: 'r1', path: '/café/ü"x\\', status: 200 });
  log.info({});
  log.info({ path: '🙂'.repeat(3), client: '::1' });
  await new Promise<void>((r) => log.flush(() => r()));
  const lines = s.lines();
  assert.equal(lines.length, 3);
  for (const l of lines) {
    assert.equal(l.level, 'info');
    assert.equal(l.name, 'access.edge');
    assert.equal(l.pid, process.pid);
    assert.ok(!Number.isNaN(Date.parse(l.time)));
  }
  assert.deepEqual({ ...lines[0], time: undefined, pid: undefined }, { level: 'info', name: 'access.edge', time: undefined, pid: undefined, request_id: 'r1', path: '/café/ü"x\\', status: 200 });
  assert.equal(lines[2].path, '🙂🙂🙂');
});

test('lines are handed over in batches of bufferBytes; flush hands over the rest; nothing is lost or rewritten', async () => {
  const s = sink();
  const log = createAccessLogger('edge', s.stream as never, 4096);
  const n = 2000; // several slabs' worth (64 KiB each)
  for (let i = 0; i < n; i++) log.info({ i, path: `/p/${'x'.repeat(i % 300)}` });
  const before = s.chunks.length;
  assert.ok(before > 10, `handed over in batches while logging (${before})`);
  await new Promise<void>((r) => log.flush(() => r()));
  // a batch ends at bufferBytes, or earlier only where a 64 KiB slab runs out
  const total = s.chunks.reduce((a, c) => a + c.length, 0);
  assert.ok(s.chunks.length <= Math.ceil(total / 4096) + Math.ceil(total / 65536) + 1, `${s.chunks.length} hand-overs for ${total} bytes`);
  const lines = s.lines();
  assert.equal(lines.length, n);
  lines.forEach((l, i) => {
    assert.equal(l.i, i);
    assert.equal(l.path.length, 3 + (i % 300));
  });
});

test('an entry larger than a slab is written whole', async () => {
  const s = sink();
  const log = createAccessLogger('edge', s.stream as never);
  log.info({ a: 1 });
  log.info({ big: 'é'.repeat(200_000) });
  log.info({ b: 2 });
  await new Promise<void>((r) => log.flush(() => r()));
  const lines = s.lines();
  assert.deepEqual(lines.map((l) => l.a ?? l.b ?? l.big.length), [1, 200_000, 2]);
});
