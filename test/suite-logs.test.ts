// The end-of-suite log scan (support/suite-logs.ts) finds what it exists for:
// a secret in clear in any log or audit line, with its file and line; clean
// lines (the masked forms included) pass; only logs are kept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { keepLogs, scanLogs, SUITE_LOGS_ENV } from './support/suite-logs.ts';

test('a card number, a JWT or a bearer credential in clear is found with file and line; masked and ordinary lines are not', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gh-scan-'));
  try {
    mkdirSync(path.join(dir, 'logs'));
    mkdirSync(path.join(dir, 'authority', 'public'), { recursive: true });
    const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2ln';
    writeFileSync(
      path.join(dir, 'logs', 'gateway-public.log'),
      [
        '{"level":"info","msg":"ready","port":8443}',
        '{"level":"info","path":"/api/orders/[CARD]","status":200}',
        `{"level":"warn","msg":"upstream said","detail":"Authorization: Bearer ${jwt}"}`,
        '{"level":"info","path":"/api/catalog","status":200}',
      ].join('\n'),
    );
    writeFileSync(path.join(dir, 'authority', 'public', 'audit.jsonl'), '{"event":"login.failure","card":"4111 1111 1111 1111"}\n');
    writeFileSync(path.join(dir, 'logs', 'notes.txt'), `not a log: ${jwt}\n`);
    const r = scanLogs(dir);
    assert.equal(r.files, 2);
    assert.equal(r.lines, 5);
    assert.deepEqual(r.findings.map((f) => f.slice(0, f.indexOf(': '))).sort(), ['authority/public/audit.jsonl:1', 'logs/gateway-public.log:3']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keepLogs copies the logs and audit trails of a state dir, nothing else, only while a scan is set up', () => {
  const state = mkdtempSync(path.join(tmpdir(), 'gh-state-'));
  const into = mkdtempSync(path.join(tmpdir(), 'gh-kept-'));
  const before = process.env[SUITE_LOGS_ENV];
  try {
    mkdirSync(path.join(state, 'logs'));
    writeFileSync(path.join(state, 'logs', 'ca.log'), '{"msg":"x"}\n');
    writeFileSync(path.join(state, 'dev-credentials.json'), '{"secret":"never copied"}\n');
    delete process.env[SUITE_LOGS_ENV];
    keepLogs(state, 'off');
    assert.deepEqual(readdirSync(into), []);
    process.env[SUITE_LOGS_ENV] = into;
    keepLogs(state, 'on');
    const [copy] = readdirSync(into);
    assert.match(copy, /^on-\d+-[0-9a-f]{8}$/);
    assert.deepEqual(readdirSync(path.join(into, copy)), ['logs']);
    assert.deepEqual(readdirSync(path.join(into, copy, 'logs')), ['ca.log']);
  } finally {
    if (before === undefined) delete process.env[SUITE_LOGS_ENV];
    else process.env[SUITE_LOGS_ENV] = before;
    rmSync(state, { recursive: true, force: true });
    rmSync(into, { recursive: true, force: true });
  }
});
