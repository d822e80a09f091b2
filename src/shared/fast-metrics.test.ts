import { test } from 'node:test';
import assert from 'node:assert/strict';
import client from 'prom-client';
import { FastCounter, FastHistogram } from './fast-metrics.ts';

/** An exposition with each line's labels in name order (Prometheus does not care about their order). */
const canonical = (text: string) =>
  text
    .split('\n')
    .map((line) => line.replace(/\{([^}]*)\}/, (_, inner: string) => `{${inner.split(/,(?=[a-z_]+=")/).sort().join(',')}}`))
    .join('\n');

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVED: [string, number][] = [
  ['a', 0.0005],
  ['a', 0.001], // on a bound: counted in that bucket (le is "less or equal")
  ['a', 0.05],
  ['b', 3],
  ['a', 0.2],
  ['b', 0.00001],
];

test('renders exactly what prom-client renders for the same observations (buckets, +Inf, sum, count, default labels)', async () => {
  const ours = new client.Registry();
  const theirs = new client.Registry();
  for (const r of [ours, theirs]) r.setDefaultLabels({ zone: 'edge' });
  const fast = new FastHistogram({ name: 'x_seconds', help: 'help "text"', labelNames: ['route'] as const, buckets: BUCKETS, registers: [ours] });
  const reference = new client.Histogram({ name: 'x_seconds', help: 'help "text"', labelNames: ['route'] as const, buckets: BUCKETS, registers: [theirs] });
  const children = { a: fast.labels('a'), b: fast.labels('b') };
  for (const [route, v] of OBSERVED) {
    children[route as 'a' | 'b'].observe(v);
    reference.labels(route).observe(v);
  }
  assert.equal(canonical(await ours.metrics()), canonical(await theirs.metrics()));
});

test('a value that is not a number is not counted; labels(...) needs every label value', async () => {
  const registry = new client.Registry();
  const fast = new FastHistogram({ name: 'y_seconds', help: 'h', labelNames: ['route'] as const, buckets: BUCKETS, registers: [registry] });
  const child = fast.labels('r');
  child.observe(NaN);
  child.observe(Infinity);
  child.observe(0.5);
  assert.match(await registry.metrics(), /y_seconds_count\{route="r"\} 1\n/);
  assert.throws(() => fast.labels(), /1 label values expected/);
});

test('workers aggregate like prom-client histograms (the cluster primary sums them)', async () => {
  const workers = [new client.Registry(), new client.Registry()];
  for (const r of workers) new FastHistogram({ name: 'z_seconds', help: 'h', labelNames: ['route'] as const, buckets: BUCKETS, registers: [r] }).labels('r').observe(0.05);
  const merged = client.AggregatorRegistry.aggregate(await Promise.all(workers.map((r) => r.getMetricsAsJSON())));
  const text = await merged.metrics();
  assert.match(text, /z_seconds_bucket\{route="r",le="0.1"\} 2\n/);
  assert.match(text, /z_seconds_count\{route="r"\} 2\n/);
});

test('the counter renders exactly what prom-client renders (children and inc with labels), and workers sum', async () => {
  const ours = new client.Registry();
  const theirs = new client.Registry();
  for (const r of [ours, theirs]) r.setDefaultLabels({ zone: 'edge' });
  const labelNames = ['route', 'method'] as const;
  const fast = new FastCounter({ name: 'r_total', help: 'help', labelNames, registers: [ours] });
  const reference = new client.Counter({ name: 'r_total', help: 'help', labelNames, registers: [theirs] });
  const child = fast.labels('a', 'GET');
  child.inc();
  child.inc(2);
  reference.labels('a', 'GET').inc(3);
  fast.inc({ route: 'b', method: 'POST' });
  reference.inc({ route: 'b', method: 'POST' });
  assert.equal(canonical(await ours.metrics()), canonical(await theirs.metrics()));
  assert.throws(() => child.inc(-1), /only goes up/);
  assert.throws(() => child.inc(NaN), /only goes up/);
  assert.throws(() => fast.labels('a'), /2 label values expected/);
  const workers = [new client.Registry(), new client.Registry()];
  for (const r of workers) new FastCounter({ name: 'w_total', help: 'h', labelNames: ['route'] as const, registers: [r] }).labels('r').inc(2);
  const merged = client.AggregatorRegistry.aggregate(await Promise.all(workers.map((r) => r.getMetricsAsJSON())));
  assert.match(await merged.metrics(), /w_total\{route="r"\} 4\n/);
});
