// Labelled gauges written from a full list each update (the per-peer series of DaemonMetrics): between begin()
// and end() the caller sets every series that exists now; one not set this time is removed. The series live
// here only, one row each, and the gauges registered for them read the rows when the registry is scraped.
// prom-client's own Gauge keeps, per gauge and series, a label-hash string and an entry besides the label
// object: at 5,000 peers ~2.3 MiB held for four gauges (and a fresh table per update with reset() and set()).
// The exposition is the same: prom-client formats what the gauges' get() hands it, series in the order they
// first appeared.
import type { LabelValues, Metric, Registry } from 'prom-client';

interface Row<L extends string> {
  labels: LabelValues<L>;
  values: number[];
  update: number;
}

/** A gauge's name and help text. */
export interface SeriesGaugeDef {
  name: string;
  help: string;
}

export class GaugeSeries<L extends string> {
  private readonly rows = new Map<string, Row<L>>();
  private update = 0;
  private readonly count: number;

  /** Gauges of these names in `registry` (one value each per series), all with the same labels. */
  constructor(registry: Registry, gauges: readonly SeriesGaugeDef[]) {
    this.count = gauges.length;
    gauges.forEach((def, i) => registry.registerMetric(this.gauge(def, i)));
  }

  begin(): void {
    this.update++;
  }

  /**
   * The values of the series `key` (one per gauge, in order); `labels` is asked only for a new series. Keys
   * must name series one to one (the label values, joined unambiguously).
   */
  set(key: string, labels: () => LabelValues<L>, ...values: number[]): void {
    if (values.length !== this.count) {
      throw new Error(`gauge series ${key}: ${values.length} values for ${this.count} gauges`);
    }
    const row = this.rows.get(key);
    if (row === undefined) {
      this.rows.set(key, { labels: labels(), values, update: this.update });
      return;
    }
    row.update = this.update;
    for (let i = 0; i < values.length; i++) row.values[i] = values[i] as number;
  }

  /** Removes the series not set since begin(). */
  end(): void {
    for (const [key, row] of this.rows) if (row.update !== this.update) this.rows.delete(key);
  }

  /** Number of series held. */
  get size(): number {
    return this.rows.size;
  }

  /** What the registry reads of gauge `index`: its values of every series, at scrape time. */
  private gauge(def: SeriesGaugeDef, index: number): Metric {
    const get = (): Promise<object> => {
      const values: { value: number; labels: LabelValues<L> }[] = [];
      for (const row of this.rows.values()) values.push({ value: row.values[index] as number, labels: row.labels });
      return Promise.resolve({ name: def.name, help: def.help, type: 'gauge', aggregator: 'sum', values });
    };
    // The registry reads a metric's name, get() (exposition, JSON) and reset() (resetMetrics), which has nothing
    // to clear here: the next update writes every series. prom-client's typings declare more than it reads.
    return { name: def.name, help: def.help, get, reset: () => undefined } as unknown as Metric;
  }
}
