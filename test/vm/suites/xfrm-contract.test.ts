// VM suite (guest kernel with ESP + AEAD): the whole XFRM contract (test/fakes/xfrm-contract.ts). The state and
// the policy steps run through FakeXfrmKernel and through NetlinkXfrmKernel in a namespace of our own; every
// op's errno and every dump must agree, so the fake the unit tests run on behaves as the kernel does.
import t from 'tap';
import { checkXfrmContract, POLICY_STEPS, STATE_STEPS } from '../../fakes/xfrm-contract.js';
import { ipAddEspStateArgs } from '../../fakes/xfrm-objects.js';
import { addNetns, delNetns, ipFails } from '../../host/xfrm-oracle.js';

const NS = `kmt-xfrm-vmct-${process.pid}`;

const skip = ((): string | false => {
  if (process.getuid?.() !== 0) return 'needs root (netns + NETLINK_XFRM)';
  const probe = `kmt-xfrm-vmctp-${process.pid}`;
  addNetns(probe);
  try {
    const err = ipFails(ipAddEspStateArgs('198.18.0.1', '198.18.0.2', 1, 0x11).slice(1), probe);
    return err === '' ? false : `kernel lacks ESP/AEAD (${err.trim()}); run this suite in the VM`;
  } finally {
    delNetns(probe);
  }
})();

t.test('states and policies: the fake kernel agrees with the netlink kernel op by op', { skip }, async (t) => {
  addNetns(NS);
  t.teardown(() => delNetns(NS));
  await checkXfrmContract(t, NS, [...STATE_STEPS, ...POLICY_STEPS], 'states');
});
