// /proc/net/xfrm_stat lines are kernel counters: the daemon exports them as Prometheus counters
// (kmesh_xfrm_stat_total), fed by the growth between steps, surviving a kernel counter reset.
import t from 'tap';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { emptyStatus } from '../../src/daemon/status.js';

async function sample(m: DaemonMetrics, counter: string): Promise<{ type: string; value: number | undefined }> {
  const metric = (await m.registry.getMetricsAsJSON()).find((x) => x.name === 'kmesh_xfrm_stat_total');
  const value = (metric?.values as { value: number; labels: Record<string, string> }[] | undefined)?.find(
    (v) => v.labels.counter === counter,
  )?.value;
  return { type: String(metric?.type), value };
}

t.test('xfrm_stat is a counter that follows the kernel and survives its reset', async (t) => {
  const m = new DaemonMetrics();
  const status = (n: number) => ({ ...emptyStatus('n1', 'dir:/s', true), xfrmStat: { XfrmInNoStates: n } });
  m.update(status(5));
  t.same(await sample(m, 'XfrmInNoStates'), { type: 'counter', value: 5 });
  m.update(status(5));
  m.update(status(9));
  t.equal((await sample(m, 'XfrmInNoStates')).value, 9, 'grows with the kernel counter');
  m.update(status(2));
  t.equal((await sample(m, 'XfrmInNoStates')).value, 11, 'a kernel reset adds the new count, never decreases');
  const text = await m.registry.metrics();
  t.match(text, /# TYPE kmesh_xfrm_stat_total counter/);
});
