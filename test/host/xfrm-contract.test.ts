// Host kernel (root): the policy half of the XFRM contract (test/fakes/xfrm-contract.ts). One op script runs
// through FakeXfrmKernel and through NetlinkXfrmKernel in a namespace of our own (kmt-xfrm-ct-*); every op's
// errno and every dump must agree. The state half needs ESP and runs in the VM suite xfrm-contract.
import t from 'tap';
import { checkXfrmContract, POLICY_STEPS } from '../fakes/xfrm-contract.js';
import { addNetns, delNetns } from './xfrm-oracle.js';

const NS = `kmt-xfrm-ct-${process.pid}`;
const skip = process.getuid?.() === 0 ? false : 'needs root (netns + NETLINK_XFRM)';

t.test('policies: the fake kernel agrees with the netlink kernel op by op', { skip }, async (t) => {
  addNetns(NS);
  t.teardown(() => delNetns(NS));
  await checkXfrmContract(t, NS, POLICY_STEPS, 'policies');
});
