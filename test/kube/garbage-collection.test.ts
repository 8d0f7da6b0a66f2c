// Two node daemons (the whole daemon above the kernel adapters: Kubernetes source, validation, controller,
// loop, publishing; in-memory XFRM kernel and datapath) against a real control plane with
// kube-controller-manager, each authorised only by deploy/rbac.yaml. They publish their KmeshNodeInfo, build
// SAs to each other, and when one Node is deleted, Kubernetes' garbage collector removes its KmeshNodeInfo
// (ownerReference) and the surviving daemon removes that node's SAs and policies.
import path from 'node:path';
import t from 'tap';
import { FakeDatapath } from '../fakes/fake-datapath.js';
import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import { IpsecAdapter } from '../../src/daemon/ipsec-port.js';
import { ReconcileLoop, type LoopLogger } from '../../src/daemon/loop.js';
import type { HostNetwork } from '../../src/daemon/pod-interfaces.js';
import { KubeSource } from '../../src/daemon/sources/kube-source.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';
import { loadKubeConfig } from '../../src/kube/client.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import { controlPlaneSkip, startControlPlaneForTest } from '../fixtures/control-plane.js';
import {
  applyManifests,
  createNamespace,
  createNode,
  createPod,
  NODE_INFO_PATH,
  waitFor,
} from '../fixtures/kube-cluster.js';

const quiet: LoopLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
};

function hostNetwork(i: number): HostNetwork {
  return {
    links: [
      { ifindex: 2, name: 'eth0', kind: '', addresses: [`198.18.0.${i}`], mtu: 1500 },
      { ifindex: 10, name: 'veth-1', kind: 'veth', addresses: [] },
    ],
    routes: [
      { dst: '198.18.0.0/24', dev: 'eth0', family: 4 },
      { dst: `10.244.${i}.10`, dev: 'veth-1', family: 4 },
    ],
    neighbours: [],
    fdb: [],
  };
}

const KEY = { spi: 1, aeadKeyName: 'rfc4106(gcm(aes))', key: Buffer.alloc(36, 0x5a), icvBits: 128 };

// A control plane starts in 5–30 s on a loaded two-core machine; every step is a real request.
t.setTimeout(600_000);
t.test('deleting a Node garbage-collects its KmeshNodeInfo; peers drop its SAs', controlPlaneSkip(), async (t) => {
  const cp = await startControlPlaneForTest(t, { name: 'kmesh-gc', controllerManager: true });
  await applyManifests(cp);
  await createNamespace(cp, 'mesh', { 'istio.io/dataplane-mode': 'Kmesh' });
  for (const i of [1, 2]) {
    await createNode(cp, `node-${i}`, `198.18.0.${i}`, `10.244.${i}.0/24`);
    await createPod(cp, 'mesh', `pod-${i}`, `node-${i}`, `10.244.${i}.10`);
  }
  const token = await cp.serviceAccountToken('kmesh-system', 'kmesh-ipsec-daemon');
  const kubeconfig = cp.kubeconfigForToken(token, path.join(cp.dir, 'daemon.kubeconfig'));

  const daemons = [1, 2].map((i) => {
    const name = `node-${i}`;
    const source = new KubeSource(loadKubeConfig({ kubeconfig, env: {} }).config, name, {
      minBackoffMs: 50,
      maxBackoffMs: 500,
    });
    const kernel = new FakeXfrmKernel();
    const dp = new FakeDatapath({
      interfaces: hostNetwork(i).links.map((l) => ({ name: l.name, ifindex: l.ifindex })),
    });
    const loop = new ReconcileLoop({
      nodeName: name,
      source,
      ipsec: new IpsecAdapter(kernel, { graceMs: 10_000 }),
      datapath: new DatapathAdapter(dp, `/sys/fs/bpf/${name}`),
      parseNodeInfo,
      hostNetwork: () => Promise.resolve(hostNetwork(i)),
      xfrmStat: () => Promise.resolve({ XfrmInError: 0 }),
      log: quiet,
      resyncMs: 3_600_000,
      retryMs: 200,
    });
    return { name, source, kernel, loop };
  });
  t.teardown(async () => {
    for (const d of daemons) {
      await d.loop.stop();
      await d.source.stop();
    }
  });
  for (const d of daemons) {
    await d.source.start(() => d.loop.trigger('change'));
    d.loop.start();
    d.loop.keyEvent({ kind: 'key', key: KEY });
  }
  const [one, two] = daemons as [(typeof daemons)[0], (typeof daemons)[0]];
  const saPeers = (d: typeof one) =>
    [
      ...new Set(
        d.kernel
          .listStates()
          .filter((s) => s.proto === 50)
          .flatMap((s) => [s.src, s.dst]),
      ),
    ].sort();
  await waitFor(
    'both nodes encrypt to each other',
    () => saPeers(one).includes('198.18.0.2') && saPeers(two).includes('198.18.0.1'),
    60_000,
  );
  const infos = (await cp.call('GET', NODE_INFO_PATH)) as { items: { metadata: { name: string } }[] };
  t.same(infos.items.map((i) => i.metadata.name).sort(), ['node-1', 'node-2'], 'both published');
  t.ok(
    one.kernel.listPolicies().some((p) => JSON.stringify(p).includes('10.244.2.0')),
    'node-1 has policies to node-2',
  );

  // node-2 goes away: its daemon stops, then its Node object is deleted.
  await two.loop.stop();
  await two.source.stop();
  await cp.call('DELETE', '/api/v1/nodes/node-2');
  await waitFor(
    'the garbage collector to delete node-2 KmeshNodeInfo',
    async () => (await cp.request('GET', `${NODE_INFO_PATH}/node-2`)).status === 404,
    90_000,
  );
  t.pass('KmeshNodeInfo node-2 garbage-collected through its ownerReference');
  await waitFor('node-1 to drop node-2', () => !saPeers(one).includes('198.18.0.2'), 30_000);
  t.same(
    one.kernel.listStates().filter((s) => s.proto === 50),
    [],
    'node-1 holds no SA to or from node-2',
  );
  t.notOk(
    one.kernel.listPolicies().some((p) => JSON.stringify(p).includes('10.244.2.0')),
    'and no policy for node-2 pod CIDR',
  );
  t.equal((await cp.request('GET', `${NODE_INFO_PATH}/node-1`)).status, 200, 'node-1 object untouched');
});
