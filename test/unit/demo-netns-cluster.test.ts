// The simulated cluster's plan per address family (no namespaces are created here): addresses, pod CIDRs and
// the Kubernetes objects the suites publish for it.
import t from 'tap';
import { NetnsCluster } from '../../src/demo/netns-cluster.js';

t.test('IPv4 by default', (t) => {
  const c = new NetnsCluster({ prefix: 'x', nodes: 2, podsPerNode: 1 });
  const n2 = c.node(2);
  t.same([n2.underlayIp, n2.podCidr, n2.pods[0]?.ip], ['198.18.0.2', '10.244.2.0/24', '10.244.2.10']);
  t.same(n2.underlayIps, ['198.18.0.2']);
  t.end();
});

t.test('dual-stack: one address per family, the first family primary, both in the objects', (t) => {
  const c = new NetnsCluster({ prefix: 'x', nodes: 3, podsPerNode: 2, families: [6, 4] });
  const n3 = c.node(3);
  t.same(n3.underlayIps, ['fd00:198:18::3', '198.18.0.3']);
  t.same(n3.podCidrs, ['fd00:10:244:3::/64', '10.244.3.0/24']);
  t.equal(n3.underlayIp, 'fd00:198:18::3');
  t.same(n3.pods[1]?.ips, ['fd00:10:244:3::11', '10.244.3.11']);
  const node = c.nodeObject(n3) as {
    spec: { podCIDR: string; podCIDRs: string[] };
    status: { addresses: { type: string; address: string }[] };
  };
  t.same(node.spec, { podCIDR: 'fd00:10:244:3::/64', podCIDRs: ['fd00:10:244:3::/64', '10.244.3.0/24'] });
  t.same(
    node.status.addresses.filter((a) => a.type === 'InternalIP').map((a) => a.address),
    ['fd00:198:18::3', '198.18.0.3'],
  );
  const pod = c.podObject(n3, n3.pods[0]!) as { status: { podIP: string; podIPs: { ip: string }[] } };
  t.same(pod.status.podIPs, [{ ip: 'fd00:10:244:3::10' }, { ip: '10.244.3.10' }]);
  t.end();
});

t.test('families are named once each', (t) => {
  t.throws(() => new NetnsCluster({ prefix: 'x', nodes: 1, podsPerNode: 0, families: [] }), /families must name/);
  t.throws(() => new NetnsCluster({ prefix: 'x', nodes: 1, podsPerNode: 0, families: [6, 6] }), /families must name/);
  t.end();
});
