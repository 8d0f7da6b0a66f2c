// Which MSS clamp the daemon asks for: --ipsec-mtu, or the smallest underlay MTU; off by flag; a one-line
// problem (and no clamp) when the MTU cannot be derived or is out of range.
import t from 'tap';
import { decideMssClamp } from '../../src/daemon/mss-clamp.js';
import type { HostLink } from '../../src/daemon/pod-interfaces.js';

const link = (name: string, mtu?: number): HostLink => ({
  ifindex: 2,
  name,
  kind: '',
  addresses: [],
  ...(mtu === undefined ? {} : { mtu }),
});

t.test('auto: the smallest MTU of the underlay interfaces', (t) => {
  t.same(decideMssClamp({ enabled: true, mtu: 'auto' }, [link('eth0', 9001), link('eth1', 1500)]), {
    clamp: { ipv4: 1406, ipv6: 1366 },
    status: { mtu: 1500, mtuSource: 'underlay', ipv4: 1406, ipv6: 1366 },
  });
  t.same(decideMssClamp({ enabled: true, mtu: 'auto' }, [link('eth0'), link('eth1', 9001)]).status.mtu, 9001);
  t.end();
});

t.test('--ipsec-mtu wins over the underlay', (t) => {
  t.same(decideMssClamp({ enabled: true, mtu: 1400 }, [link('eth0', 1500)]).status, {
    mtu: 1400,
    mtuSource: 'flag',
    ipv4: 1306,
    ipv6: 1266,
  });
  t.end();
});

t.test('off by flag: no clamp, no problem', (t) => {
  t.same(decideMssClamp({ enabled: false, mtu: 'auto' }, [link('eth0', 1500)]), {
    clamp: { ipv4: 0, ipv6: 0 },
    status: { mtu: 0, mtuSource: 'off', ipv4: 0, ipv6: 0 },
  });
  t.end();
});

t.test('not derivable: no clamp and a one-line problem', (t) => {
  const none = decideMssClamp({ enabled: true, mtu: 'auto' }, [link('eth0')]);
  t.same(none.clamp, { ipv4: 0, ipv6: 0 });
  t.match(none.problem, /^MSS clamp off: no underlay interface with a known MTU .*; pass --ipsec-mtu$/);
  const small = decideMssClamp({ enabled: true, mtu: 'auto' }, [link('eth0', 1000)]);
  t.equal(small.problem, 'MSS clamp off: the underlay MTU: IPsec MTU 1000 is outside 1280..65535; pass --ipsec-mtu');
  t.equal(small.status.mtuSource, 'off');
  t.end();
});
