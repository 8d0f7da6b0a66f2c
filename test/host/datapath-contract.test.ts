// Host kernel (root): the datapath contract (test/fakes/datapath-contract.ts). The same script of Datapath calls
// runs through BpfDatapath on veths in a namespace of ours and through FakeDatapath; every outcome and the
// attachments after every call must be the same, so the daemon's unit tests run on a double that behaves like
// the datapath. This kernel has TCX; the VM datapath suite runs the same contract on 6.1 (clsact only).
import os from 'node:os';
import t from 'tap';
import { runDatapathContract } from './lib/datapath-contract-run.js';
import { kernelSkipReason } from './lib/kernel.js';

t.test('FakeDatapath agrees with BpfDatapath call by call', { skip: kernelSkipReason() }, async (t) => {
  const { tcx, real, fake } = await runDatapathContract('ct');
  t.comment(`kernel ${os.release()}: TCX ${tcx ? 'available' : 'absent'}`);
  for (const [i, step] of real.entries()) t.same(fake[i], step, step.what);
});
