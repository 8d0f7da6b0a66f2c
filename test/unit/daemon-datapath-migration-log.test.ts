// The daemon hears of pinned maps replaced at load: DatapathAdapter hands its log to Datapath.load (whose real
// implementation calls it once per migrated map, test/host/datapath-map-migration.test.ts).
import t from 'tap';

import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import type { LoadOptions } from '../../src/datapath/datapath.js';
import { FakeDatapath } from '../fakes/fake-datapath.js';

class LoadRecorder extends FakeDatapath {
  readonly loads: LoadOptions[] = [];

  override load(opts: LoadOptions = {}): Promise<void> {
    this.loads.push(opts);
    return super.load(opts);
  }
}

t.test('the adapter loads the datapath with its log', async (t) => {
  const dp = new LoadRecorder();
  const heard: string[] = [];
  const log = (msg: string): void => {
    heard.push(msg);
  };
  const adapter = new DatapathAdapter(dp, '/sys/fs/bpf/kmt-unit', log);
  await adapter.sync({ encrypt: [], decrypt: [], remoteCidrs: [], peerIds: new Map() });
  t.equal(dp.loads.length, 1);
  t.equal(dp.loads[0]?.bpffsRoot, '/sys/fs/bpf/kmt-unit');
  t.equal(dp.loads[0]?.log, log);
  dp.loads[0]?.log?.('pinned BPF map km_ipsec_peers has a different definition', {});
  t.same(heard, ['pinned BPF map km_ipsec_peers has a different definition']);
});
