// The per-account failure ratio detector (credential cracking spread over many
// sources): scripted auth_failure / auth_success events, first straight into
// the detectors (the decision each sequence leads to), then end to end through
// the control plane's intake from the zone authority's identity: the subject
// is quarantined and the authority's bundle carries it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { createDetectors } from '../src/monitor/detectors.ts';
import type { SecurityEvent } from '../src/monitor/event.ts';
import { MonitorConfig } from '../src/topology/schema-monitor.ts';
import { initCa } from '../src/pki/index.ts';
import { authoritySpiffeId } from '../src/pki/spiffe-id.ts';
import { startControlServer } from '../src/control/index.ts';
import { loadTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { tempDir } from './support/gateway-fixture.ts';
import { closeAfterAll, until } from './support/closers.ts';
import { sendEvents } from './support/monitor-events.ts';

const T0 = Date.parse('2026-11-27T12:00:00.000Z');
const AUTH = 'spiffe://ratio.test/zone/public/authority';
let n = 0;
function ev(type: 'auth_failure' | 'auth_success', o: Partial<SecurityEvent>): SecurityEvent {
  const time = new Date(T0 + n++ * 1000).toISOString();
  return { schema: 'gatehouse.event/v1', id: randomUUID(), time, received: time, pep: AUTH, type, code: 'login', ...o } as SecurityEvent;
}
const detectorsWith = (ratio: Record<string, unknown>) => {
  const config = MonitorConfig.parse({ detectors: { ratio, stuffing: { enabled: false } } });
  return createDetectors(() => config, 'ratio.test');
};
/** Feeds events one a second; answers the detections. */
function run(d: ReturnType<typeof createDetectors>, events: SecurityEvent[]) {
  return events.map((e, i) => d.observe(e, T0 + i * 1000)).filter((x) => x !== undefined);
}
const source = (i: number) => `203.0.113.${i % 250}`;

test('defaults: on, shadow (anyone who knows a username could lock its owner out), 10 failures at 90 % in 10 minutes', () => {
  const c = MonitorConfig.parse({}).detectors.ratio;
  assert.deepEqual(c, { enabled: true, shadow: true, threshold: 10, windowSeconds: 600, quarantineFor: '15m', failureRatio: 0.9 });
  const d = createDetectors(() => MonitorConfig.parse({}), 'ratio.test');
  const hits = run(d, [ev('auth_success', { account: 'alice', subject: 'sub-alice', source: '10.0.0.1' }), ...Array.from({ length: 10 }, (_, i) => ev('auth_failure', { account: 'alice', source: source(i) }))]);
  assert.equal(hits.length, 1);
  assert.equal(hits[0].shadow, true);
});

test('one account failing from ten sources is its subject quarantined; the failures of each source alone would not be', () => {
  const d = detectorsWith({ shadow: false });
  const hits = run(d, [
    ev('auth_success', { account: 'Alice', subject: 'sub-alice', source: '10.0.0.1' }),
    ...Array.from({ length: 10 }, (_, i) => ev('auth_failure', { account: 'alice', source: source(i) })),
  ]);
  assert.equal(hits.length, 1);
  assert.deepEqual([hits[0].detector, hits[0].scope, hits[0].value, hits[0].count, hits[0].shadow], ['ratio', 'subject', 'sub-alice', 10, false]);
  assert.match(hits[0].reason, /10 failed sign-ins of account:alice \(91% of its attempts\) within 600 s/);
});

test('an owner who signs in now and then keeps the ratio below; failures out of the window do not count', () => {
  const d = detectorsWith({ shadow: false });
  const mixed = [ev('auth_success', { account: 'bob', subject: 'sub-bob' }), ev('auth_success', { account: 'bob', subject: 'sub-bob' })];
  for (let i = 0; i < 12; i++) mixed.push(ev('auth_failure', { account: 'bob', source: source(i) }));
  assert.deepEqual(run(d, mixed), [], '12 of 14 is 86 %');
  const slow = detectorsWith({ shadow: false, windowSeconds: 5 });
  assert.deepEqual(run(slow, Array.from({ length: 20 }, (_, i) => ev('auth_failure', { account: 'carol', source: source(i) }))), [], 'one failure a second: never 10 within 5 s');
});

test('a username nobody signed in as is recorded only (no subject to protect); second-factor failures count by subject', () => {
  const d = detectorsWith({ shadow: false, threshold: 5 });
  const ghost = run(d, Array.from({ length: 5 }, (_, i) => ev('auth_failure', { account: 'no-such-user', source: source(i) })));
  assert.equal(ghost.length, 1);
  assert.deepEqual([ghost[0].value, ghost[0].shadow], ['account:no-such-user', true]);
  const mfa = run(d, Array.from({ length: 5 }, (_, i) => ev('auth_failure', { code: 'mfa', subject: 'sub-dave', source: source(i) })));
  assert.deepEqual(mfa.map((h) => [h.scope, h.value, h.shadow]), [['subject', 'sub-dave', false]]);
  // client secret failures are no account's
  assert.deepEqual(run(d, Array.from({ length: 6 }, (_, i) => ev('auth_failure', { code: 'client', client: 'svc', source: source(i) }))), []);
});

test('released as a false positive: that account needs twice the failures for a day', () => {
  const d = detectorsWith({ shadow: false, threshold: 4, failureRatio: 0.5 });
  const burst = (failures: number) => [ev('auth_success', { account: 'erin', subject: 'sub-erin' }), ...Array.from({ length: failures }, (_, i) => ev('auth_failure', { account: 'erin', source: source(i) }))];
  const first = run(d, burst(4));
  assert.equal(first.length, 1);
  assert.equal(d.falsePositive({ scope: 'subject', value: 'sub-erin', until: '', reason: '', origin: 'detector:ratio' }, T0), true);
  assert.deepEqual(run(d, burst(7)), [], '7 failures no longer reach the doubled threshold of 8');
});

test('end to end: the authority reports failed sign-ins of one account from many sources; the control plane quarantines its subject and publishes', async () => {
  const quiet = createLogger({ name: 'test', level: 'silent' });
  const closer = closeAfterAll();
  const dir = tempDir('gh-monitor-ratio-');
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(
    file,
    `version: 1
trustDomain: ratio.test
zones:
  public:
    authority: { listen: 127.0.0.1:0 }
monitor:
  detectors:
    ratio: { shadow: false, threshold: 6, windowSeconds: 60, quarantineFor: 5m }
`,
  );
  await initCa({ stateDir: dir, topology: loadTopology(file).topology, passphrase: 'correct horse battery staple' });
  const control = await startControlServer({ config: file, stateDir: dir, watchMs: 50, logger: quiet });
  closer(() => control.close());
  const from = authoritySpiffeId('ratio.test', 'public');
  const before = control.revision();
  const events = [
    { type: 'auth_success', code: 'login', account: 'frank', subject: 'sub-frank', source: '10.0.0.7' },
    // the ninth failure is 90 % of frank's attempts
    ...Array.from({ length: 9 }, (_, i) => ({ type: 'auth_failure', code: 'login', account: 'frank', source: source(i), detail: 'bad credentials' })),
  ];
  assert.equal(await sendEvents(dir, control.url, from, events), 202);
  const list = await until(
    'subject quarantined',
    async () => (await (await request(`${control.adminUrl}/quarantines`)).body.json()) as { scope: string; value: string; origin: string }[],
    (l) => l.some((q) => q.scope === 'subject' && q.value === 'sub-frank'),
  );
  assert.equal(list.find((q) => q.value === 'sub-frank')?.origin, 'detector:ratio');
  assert.equal(list.length, 1, 'no source was quarantined: each failed once');
  await until('published', async () => control.revision(), (r) => r > before);
});
