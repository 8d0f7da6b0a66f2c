// Labelled gauges written from a full list each update (the per-peer series of DaemonMetrics): between begin()
// and end() the caller sets every series that exists now; a series whose values are unchanged is not written
// again, one not set this time is removed. What it replaces, reset() and a set() per series, gave prom-client
// a fresh table, a fresh label object and a fresh entry per series and update: at 5,000 peers, four tables of
// 5,000 entries per step, which lived a whole step and so ended in V8's old space as garbage.
import type { Gauge, LabelValues } from 'prom-client';

interface Row<L extends string> {
  labels: LabelValues<L>;
  values: number[];
  update: number;
}

export class GaugeSeries<L extends string> {
  private readonly rows = new Map<string, Row<L>>();
  private update = 0;

  /** Series of `gauges` (one value each per series), all with the same labels. */
  constructor(private readonly gauges: readonly Gauge<L>[]) {}

  begin(): void {
    this.update++;
  }

  /**
   * The values of the series `key` (one per gauge, in order); `labels` is asked only for a new series. Keys
   * must name series one to one (the label values, joined unambiguously).
   */
  set(key: string, labels: () => LabelValues<L>, ...values: number[]): void {
    if (values.length !== this.gauges.length) {
      throw new Error(`gauge series ${key}: ${values.length} values for ${this.gauges.length} gauges`);
    }
    const row = this.rows.get(key);
    if (row === undefined) {
      const created = { labels: labels(), values, update: this.update };
      this.rows.set(key, created);
      this.gauges.forEach((g, i) => g.set(created.labels, values[i] as number));
      return;
    }
    row.update = this.update;
    for (let i = 0; i < values.length; i++) {
      const v = values[i] as number;
      if (row.values[i] === v) continue;
      row.values[i] = v;
      (this.gauges[i] as Gauge<L>).set(row.labels, v);
    }
  }

  /** Removes the series not set since begin(). */
  end(): void {
    for (const [key, row] of this.rows) {
      if (row.update === this.update) continue;
      for (const g of this.gauges) g.remove(row.labels);
      this.rows.delete(key);
    }
  }
}
