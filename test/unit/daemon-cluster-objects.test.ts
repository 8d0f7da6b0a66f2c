import t from 'tap';
import { isPodManaged, managedPods } from '../../src/daemon/managed-pods.js';
import {
  namespaceFacts,
  nodeFacts,
  nodeFactsGap,
  nodeInfoObject,
  nodeInfoUpToDate,
  podFacts,
} from '../../src/daemon/sources/objects.js';
import type { PodFacts } from '../../src/daemon/sources/source.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';

const BOOT = '550e8400-e29b-41d4-a716-446655440000';

function pod(name: string, ns: string, extra: Partial<PodFacts> = {}): PodFacts {
  return {
    namespace: ns,
    name,
    nodeName: 'n1',
    podIPs: ['10.244.1.5'],
    labels: {},
    hostNetwork: false,
    finished: false,
    ...extra,
  };
}

t.test('a pod is managed by its namespace label or its own label; none opts out', (t) => {
  const kmesh = { 'istio.io/dataplane-mode': 'Kmesh' };
  t.equal(isPodManaged(pod('a', 'x'), kmesh), true);
  t.equal(isPodManaged(pod('a', 'x'), {}), false);
  t.equal(isPodManaged(pod('a', 'x'), undefined), false);
  t.equal(isPodManaged(pod('a', 'x', { labels: kmesh }), {}), true);
  t.equal(isPodManaged(pod('a', 'x', { labels: { 'istio.io/dataplane-mode': 'none' } }), kmesh), false);
  t.equal(isPodManaged(pod('a', 'x'), { 'istio.io/dataplane-mode': 'kmesh' }), false, 'label value is case-sensitive');
  t.end();
});

t.test('managedPods filters node, host network, finished and IP-less pods', (t) => {
  const namespaces = [
    { name: 'default', labels: { 'istio.io/dataplane-mode': 'Kmesh' } },
    { name: 'plain', labels: {} as Record<string, string> },
  ];
  const pods = [
    pod('b', 'default'),
    pod('a', 'default', { podIPs: ['10.244.1.6', 'fd00::6'] }),
    pod('other-node', 'default', { nodeName: 'n2' }),
    pod('host', 'default', { hostNetwork: true }),
    pod('done', 'default', { finished: true }),
    pod('pending', 'default', { podIPs: [] }),
    pod('unlabelled', 'plain'),
    pod('opted-in', 'plain', { labels: { 'istio.io/dataplane-mode': 'Kmesh' } }),
  ];
  t.same(managedPods(pods, namespaces, 'n1'), [
    { namespace: 'default', name: 'a', podIPs: ['10.244.1.6', 'fd00::6'] },
    { namespace: 'default', name: 'b', podIPs: ['10.244.1.5'] },
    { namespace: 'plain', name: 'opted-in', podIPs: ['10.244.1.5'] },
  ]);
  t.end();
});

t.test('node facts come from InternalIPs, bootID and podCIDRs', (t) => {
  const node = {
    metadata: { name: 'n1', uid: 'u-1' },
    spec: { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:1::/64'] },
    status: {
      addresses: [
        { type: 'Hostname', address: 'n1' },
        { type: 'InternalIP', address: '198.18.0.1' },
        { type: 'ExternalIP', address: '203.0.113.1' },
      ],
      nodeInfo: { bootID: BOOT },
    },
  };
  t.same(nodeFacts(node), {
    name: 'n1',
    uid: 'u-1',
    addresses: ['198.18.0.1'],
    bootID: BOOT,
    podCIDRs: ['10.244.1.0/24', 'fd00:1::/64'],
  });
  t.same(nodeFacts({ metadata: { name: 'old' }, spec: { podCIDR: '10.1.0.0/24' } }).podCIDRs, ['10.1.0.0/24']);
  t.equal(nodeFactsGap(nodeFacts(node)), '');
  t.equal(
    nodeFactsGap(nodeFacts({ metadata: { name: 'bare' } })),
    'no InternalIP in status.addresses, no status.nodeInfo.bootID, no spec.podCIDRs',
  );
  t.throws(() => nodeFacts({}), /Node object has no metadata.name/);
  t.end();
});

t.test('pod and namespace facts', (t) => {
  const p = podFacts({
    metadata: { name: 'p', namespace: 'default', labels: { app: 'x', n: 1 } },
    spec: { nodeName: 'n1' },
    status: { phase: 'Running', podIP: '10.244.1.5', podIPs: [{ ip: '10.244.1.5' }, { ip: 'fd00::5' }] },
  });
  t.same(p, {
    namespace: 'default',
    name: 'p',
    nodeName: 'n1',
    podIPs: ['10.244.1.5', 'fd00::5'],
    labels: { app: 'x' },
    hostNetwork: false,
    finished: false,
  });
  t.same(podFacts({ metadata: { name: 'q', namespace: 'd' }, status: { podIP: '10.0.0.1' } }).podIPs, ['10.0.0.1']);
  t.equal(podFacts({ metadata: { name: 'q', namespace: 'd' }, status: { phase: 'Succeeded' } }).finished, true);
  t.equal(
    podFacts({ metadata: { name: 'q', namespace: 'd', deletionTimestamp: '2024-01-01T00:00:00Z' } }).finished,
    true,
  );
  t.equal(podFacts({ metadata: { name: 'q', namespace: 'd' }, spec: { hostNetwork: true } }).hostNetwork, true);
  t.throws(() => podFacts({ metadata: { name: 'q' } }), /lacks metadata.name\/namespace/);
  t.same(namespaceFacts({ metadata: { name: 'default', labels: { a: 'b' } } }), {
    name: 'default',
    labels: { a: 'b' },
  });
  t.throws(() => namespaceFacts({}), /no metadata.name/);
  t.end();
});

t.test('the published KmeshNodeInfo is what Kmesh writes and what peers accept', (t) => {
  const info = { name: 'n1', spi: 3, addresses: ['198.18.0.1'], bootID: BOOT, podCIDRs: ['10.244.1.0/24'] };
  const obj = nodeInfoObject(info, 'u-1');
  t.same(obj, {
    apiVersion: 'kmesh.net/v1alpha1',
    kind: 'KmeshNodeInfo',
    metadata: {
      name: 'n1',
      namespace: 'kmesh-system',
      ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u-1' }],
    },
    spec: { spi: 3, addresses: ['198.18.0.1'], bootID: BOOT, podCIDRS: ['10.244.1.0/24'] },
  });
  t.same(parseNodeInfo(obj), { ok: info }, 'a peer parses our object back into the same NodeInfo');
  t.notOk('ownerReferences' in (nodeInfoObject(info, '').metadata as object), 'no owner without a Node uid');
  t.ok(nodeInfoUpToDate(obj, info));
  t.notOk(nodeInfoUpToDate(obj, { ...info, spi: 4 }));
  t.end();
});
