// Prometheus metrics for the request path: a histogram and a counter.
//
// The histogram: A labelled child is found once
// (`labels(...)`, kept by the caller) and then observes with an add and a
// short loop: counts per bucket in a Float64Array. prom-client's Histogram
// re-hashes the labels and keys its buckets by the bound's string on every
// observation, even on a child; this one renders the same exposition (cumulative
// `_bucket` with `le`, `_sum`, `_count`) and registers in a prom-client Registry
// like any metric, cluster aggregation included (aggregator `sum`).
import type { Registry } from 'prom-client';

interface Series {
  labels: Record<string, string>;
  /** observations per bucket (not cumulative); the last slot is +Inf only */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** The series of these label values (in `labelNames` order), made on first use. */
function seriesOf<S>(series: Map<string, S>, name: string, labelNames: readonly string[], values: string[], make: (labels: Record<string, string>) => S): S {
  if (values.length !== labelNames.length) throw new TypeError(`${name}: ${labelNames.length} label values expected`);
  const key = values.join('\u0000');
  let s = series.get(key);
  if (s === undefined) {
    const labels: Record<string, string> = {};
    labelNames.forEach((n, i) => (labels[n] = values[i]));
    series.set(key, (s = make(labels)));
  }
  return s;
}

export interface HistogramChild {
  observe(value: number): void;
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName: string;
}

export class FastHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #labelNames: readonly L[];
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, Series>();

  constructor(o: { name: string; help: string; labelNames: readonly L[]; buckets: readonly number[]; registers: Registry[] }) {
    this.name = o.name;
    this.help = o.help;
    this.#labelNames = o.labelNames;
    this.#bounds = [...o.buckets].sort((a, b) => a - b);
    for (const r of o.registers) r.registerMetric(this as never);
  }

  /** The series of these label values (in `labelNames` order); keep it and observe on it. */
  labels(...values: string[]): HistogramChild {
    const s = seriesOf(this.#series, this.name, this.#labelNames, values, (labels) => ({ labels, counts: new Float64Array(this.#bounds.length + 1), sum: 0, count: 0 }));
    const bounds = this.#bounds;
    return {
      observe(value: number): void {
        if (!Number.isFinite(value)) return; // a clock gone wrong is not an observation
        s.sum += value;
        s.count++;
        let i = 0;
        while (i < bounds.length && value > bounds[i]) i++;
        s.counts[i]++;
      },
    };
  }

  observe(labels: Record<L, string>, value: number): void {
    this.labels(...this.#labelNames.map((n) => labels[n])).observe(value);
  }

  reset(): void {
    this.#series.clear();
  }

  /** The values in prom-client's shape (what a Registry renders and aggregates). */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricValue[] }> {
    const values: MetricValue[] = [];
    for (const s of this.#series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += s.counts[i];
        values.push({ labels: { ...s.labels, le: this.#bounds[i] }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export interface CounterChild {
  inc(value?: number): void;
}

/**
 * A Prometheus counter for the request path: a labelled child is found once and
 * then counts with an add. prom-client's Counter.inc hashes the labels into a
 * fresh string on every call, even on a child. Renders and aggregates as
 * prom-client's counter does.
 */
export class FastCounter<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'counter';
  readonly aggregator = 'sum';
  readonly #labelNames: readonly L[];
  readonly #series = new Map<string, { labels: Record<string, string>; value: number }>();

  constructor(o: { name: string; help: string; labelNames: readonly L[]; registers: Registry[] }) {
    this.name = o.name;
    this.help = o.help;
    this.#labelNames = o.labelNames;
    for (const r of o.registers) r.registerMetric(this as never);
  }

  /** The series of these label values (in `labelNames` order); keep it and count on it. */
  labels(...values: string[]): CounterChild {
    const s = seriesOf(this.#series, this.name, this.#labelNames, values, (labels) => ({ labels, value: 0 }));
    return {
      inc(value = 1): void {
        if (!(value >= 0) || !Number.isFinite(value)) throw new TypeError(`a counter only goes up by a finite amount`);
        s.value += value;
      },
    };
  }

  inc(labels: Record<L, string>, value = 1): void {
    this.labels(...this.#labelNames.map((n) => labels[n])).inc(value);
  }

  reset(): void {
    this.#series.clear();
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: MetricValue[] }> {
    const values: MetricValue[] = [];
    for (const s of this.#series.values()) values.push({ labels: s.labels, value: s.value, metricName: this.name });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
