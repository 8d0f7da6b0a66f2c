import t from 'tap';
import { parseLinks, parseRoutes } from '../../src/daemon/host-network.js';
import {
  podInterfaceFor,
  resolvePodInterfaces,
  routeDevice,
  underlayInterfaces,
  type HostNetwork,
} from '../../src/daemon/pod-interfaces.js';
import { parseXfrmStat, xfrmStatDelta } from '../../src/daemon/xfrm-stat.js';

const hostNet: HostNetwork = {
  links: [
    { ifindex: 1, name: 'lo', kind: '', addresses: ['127.0.0.1', '::1'] },
    { ifindex: 2, name: 'eth0', kind: '', addresses: ['198.18.0.1'] },
    { ifindex: 5, name: 'veth-p1', kind: 'veth', addresses: [] },
    { ifindex: 6, name: 'veth-p2', kind: 'veth', addresses: [] },
    { ifindex: 7, name: 'cni0', kind: 'bridge', addresses: ['10.244.9.1'] },
    { ifindex: 8, name: 'vethb1', kind: 'veth', addresses: [] },
  ],
  routes: [
    { dst: 'default', dev: 'eth0', family: 4 },
    { dst: '198.18.0.0/24', dev: 'eth0', family: 4 },
    { dst: '10.244.1.10', dev: 'veth-p1', family: 4 },
    { dst: '10.244.1.11/32', dev: 'veth-p2', family: 4 },
    { dst: '10.244.9.0/24', dev: 'cni0', family: 4 },
    { dst: 'fd00:1::10', dev: 'veth-p1', family: 6 },
  ],
  neighbours: [{ dst: '10.244.9.5', dev: 'cni0', lladdr: 'AA:bb:cc:00:00:05' }],
  fdb: [
    { mac: 'aa:bb:cc:00:00:05', ifname: 'vethb1', master: 'cni0' },
    { mac: 'aa:bb:cc:00:00:05', ifname: 'cni0', master: '' },
  ],
};

t.test('longest prefix match picks the pod route', (t) => {
  t.equal(routeDevice(hostNet.routes, '10.244.1.10'), 'veth-p1');
  t.equal(routeDevice(hostNet.routes, '10.244.1.11'), 'veth-p2');
  t.equal(routeDevice(hostNet.routes, '198.18.0.7'), 'eth0');
  t.equal(routeDevice(hostNet.routes, '8.8.8.8'), 'eth0', 'default route');
  t.equal(routeDevice(hostNet.routes, 'fd00:1::10'), 'veth-p1');
  t.equal(routeDevice(hostNet.routes, 'fd00:2::1'), undefined, 'no v6 default');
  t.equal(routeDevice(hostNet.routes, 'not-an-ip'), undefined);
  t.end();
});

t.test('behind a bridge, the port that learned the pod MAC', (t) => {
  t.equal(podInterfaceFor(hostNet, '10.244.9.5')?.name, 'vethb1');
  t.equal(podInterfaceFor(hostNet, '10.244.9.6'), undefined, 'no neighbour entry yet');
  t.end();
});

t.test('resolvePodInterfaces groups pods per interface and reports the unresolved', (t) => {
  const r = resolvePodInterfaces({ ...hostNet, routes: hostNet.routes.filter((x) => x.dst !== 'default') }, [
    { namespace: 'd', name: 'p1', podIPs: ['10.244.1.10', 'fd00:1::10'] },
    { namespace: 'd', name: 'p2', podIPs: ['10.244.1.11'] },
    { namespace: 'd', name: 'gone', podIPs: ['10.99.0.1'] },
  ]);
  t.same(r.interfaces, [
    { pods: ['d/p1'], ifname: 'veth-p1', ifindex: 5 },
    { pods: ['d/p2'], ifname: 'veth-p2', ifindex: 6 },
  ]);
  t.same(r.unresolved, ['d/gone: no host interface routes to 10.99.0.1']);
  t.end();
});

t.test('underlay interfaces hold the InternalIPs', (t) => {
  t.same(
    underlayInterfaces(hostNet, ['198.18.0.1']).map((l) => l.name),
    ['eth0'],
  );
  t.same(underlayInterfaces(hostNet, ['192.0.2.1']), []);
  t.end();
});

t.test('iproute2 JSON parsing', (t) => {
  t.same(
    parseLinks([
      { ifindex: 2, ifname: 'eth0', mtu: 9001, addr_info: [{ local: '198.18.0.1' }, {}] },
      { ifindex: 3, ifname: 'v', linkinfo: { info_kind: 'veth' } },
      { ifname: 'broken' },
    ]),
    [
      { ifindex: 2, name: 'eth0', kind: '', addresses: ['198.18.0.1'], mtu: 9001 },
      { ifindex: 3, name: 'v', kind: 'veth', addresses: [] },
    ],
  );
  t.same(
    parseRoutes(
      [{ dst: '10.0.0.0/8', dev: 'eth0' }, { dst: '10.1.0.0/16', dev: 'x', type: 'blackhole' }, { dst: 'default' }],
      4,
    ),
    [{ dst: '10.0.0.0/8', dev: 'eth0', family: 4 }],
  );
  t.end();
});

t.test('xfrm_stat parsing and deltas', (t) => {
  const before = parseXfrmStat(
    'XfrmInError             \t0\nXfrmInNoStates          \t3\ngarbage\nXfrmOutPolBlock\t1\n',
  );
  t.same(before, { XfrmInError: 0, XfrmInNoStates: 3, XfrmOutPolBlock: 1 });
  const after = { XfrmInError: 0, XfrmInNoStates: 5, XfrmOutPolBlock: 1, XfrmNew: 2 };
  t.same(xfrmStatDelta(before, after), { XfrmInNoStates: 2, XfrmNew: 2 });
  t.end();
});
