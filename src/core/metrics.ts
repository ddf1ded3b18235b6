/**
 * A small Prometheus registry: counters and histograms with labels, snapshots that can be merged across
 * worker processes, and the text exposition format.
 */
export interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly buckets?: readonly number[];
  /** label string (`a="x",b="y"`) → value, or for histograms → [bucket counts…, sum, count] */
  readonly values: Record<string, number | number[]>;
}

function labelKey(labels: Record<string, string>): string {
  let key = '';
  for (const k in labels) {
    const raw = labels[k]!;
    const v = /[\\"\n]/.test(raw) ? raw.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : raw;
    key += (key ? ',' : '') + `${k}="${v}"`;
  }
  return key;
}

export class Counter {
  readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' = 'counter',
  ) {}
  inc(labels: Record<string, string> = {}, by = 1): void {
    const key = labelKey(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  /** `inc` for one set of labels, their key made once: for a hot path that counts the same series again and again. */
  adder(labels: Record<string, string>): (by: number) => void {
    const key = labelKey(labels);
    return (by) => void this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
  set(labels: Record<string, string>, value: number): void {
    this.values.set(labelKey(labels), value);
  }
  snapshot(): MetricSnapshot {
    return { name: this.name, help: this.help, type: this.type, values: Object.fromEntries(this.values) };
  }
}

export class Histogram {
  readonly values = new Map<string, number[]>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}
  observe(labels: Record<string, string>, value: number): void {
    const key = labelKey(labels);
    let v = this.values.get(key);
    if (!v) {
      v = new Array<number>(this.buckets.length + 2).fill(0);
      this.values.set(key, v);
    }
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]!) v[i]!++;
    v[this.buckets.length]! += value;
    v[this.buckets.length + 1]!++;
  }
  snapshot(): MetricSnapshot {
    return { name: this.name, help: this.help, type: 'histogram', buckets: this.buckets, values: Object.fromEntries(this.values) };
  }
}

export class Registry {
  readonly #metrics: Array<Counter | Histogram> = [];
  counter(name: string, help: string): Counter {
    const c = new Counter(name, help);
    this.#metrics.push(c);
    return c;
  }
  gauge(name: string, help: string): Counter {
    const c = new Counter(name, help, 'gauge');
    this.#metrics.push(c);
    return c;
  }
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    const h = new Histogram(name, help, buckets);
    this.#metrics.push(h);
    return h;
  }
  snapshot(): MetricSnapshot[] {
    return this.#metrics.map((m) => m.snapshot());
  }
}

/** Adds snapshots from several processes together (counters, gauges and histograms alike). */
export function mergeSnapshots(all: readonly (readonly MetricSnapshot[])[]): MetricSnapshot[] {
  const merged = new Map<string, { snap: MetricSnapshot; values: Record<string, number | number[]> }>();
  for (const list of all) {
    for (const s of list) {
      let m = merged.get(s.name);
      if (!m) {
        m = { snap: s, values: {} };
        merged.set(s.name, m);
      }
      for (const [k, v] of Object.entries(s.values)) {
        const prev = m.values[k];
        if (prev === undefined) m.values[k] = Array.isArray(v) ? [...v] : v;
        else if (Array.isArray(prev) && Array.isArray(v)) m.values[k] = prev.map((p, i) => p + (v[i] ?? 0));
        else m.values[k] = (prev as number) + (v as number);
      }
    }
  }
  return [...merged.values()].map(({ snap, values }) => ({ ...snap, values }));
}

export function formatPrometheus(snaps: readonly MetricSnapshot[]): string {
  let out = '';
  for (const s of snaps) {
    out += `# HELP ${s.name} ${s.help}\n# TYPE ${s.name} ${s.type}\n`;
    for (const [labels, v] of Object.entries(s.values)) {
      if (Array.isArray(v)) {
        const buckets = s.buckets ?? [];
        const sep = labels ? ',' : '';
        buckets.forEach((b, i) => (out += `${s.name}_bucket{${labels}${sep}le="${b}"} ${v[i]}\n`));
        out += `${s.name}_bucket{${labels}${sep}le="+Inf"} ${v[buckets.length + 1]}\n`;
        out += `${s.name}_sum${labels ? `{${labels}}` : ''} ${v[buckets.length]}\n`;
        out += `${s.name}_count${labels ? `{${labels}}` : ''} ${v[buckets.length + 1]}\n`;
      } else {
        out += `${s.name}${labels ? `{${labels}}` : ''} ${v}\n`;
      }
    }
  }
  return out;
}
