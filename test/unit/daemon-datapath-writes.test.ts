// The datapath's maps have one writer fed by the step's own plan: a no-change step makes zero datapath writes
// (the mirror of the XFRM "no-op reconcile makes zero writes"), also with a dual-stack peer, whose second
// address must not flap in km_ipsec_peers, and km_ipsec_peers holds exactly the addresses the inbound SAs were
// planned for. Each step reads the cluster view once.
import t from 'tap';
import { DatapathAdapter } from '../../src/daemon/datapath-port.js';
import { IpsecAdapter } from '../../src/daemon/ipsec-port.js';
import { ReconcileLoop, type LoopLogger } from '../../src/daemon/loop.js';
import type { HostNetwork } from '../../src/daemon/pod-interfaces.js';
import type { NodeKeyStatus } from '../../src/model/node-key-status.js';
import type { ClusterSource, ClusterView } from '../../src/daemon/sources/source.js';
import { parseNodeInfo } from '../../src/ipsec/validate-peer.js';
import type { NodeInfo } from '../../src/model/node.js';
import { FakeDatapath } from '../fakes/fake-datapath.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import { makeKey } from '../fakes/ipsec-fixtures.js';

const BOOT = (n: number) => `550e8400-e29b-41d4-a716-44665544000${n}`;

function kmeshNodeInfo(name: string, spec: Omit<NodeInfo, 'name'>): unknown {
  return {
    metadata: { name, namespace: 'kmesh-system' },
    spec: { spi: spec.spi, addresses: spec.addresses, bootID: spec.bootID, podCIDRS: spec.podCIDRs },
  };
}

/** A cluster that does not change: this node (IPv4 only), and one peer with two IPv4 and one IPv6 address. */
class StillSource implements ClusterSource {
  readonly description = 'a cluster that does not change';
  views = 0;
  private own: unknown;

  constructor(private readonly peerAddresses: string[]) {}

  start(): Promise<void> {
    return Promise.resolve();
  }

  view(): ClusterView {
    this.views++;
    const peer = kmeshNodeInfo('node-2', {
      spi: 1,
      addresses: this.peerAddresses,
      bootID: BOOT(2),
      podCIDRs: ['10.244.2.0/24', 'fd00:10:244:2::/64'],
    });
    return {
      node: { name: 'node-1', uid: 'u1', addresses: ['198.18.0.1'], bootID: BOOT(1), podCIDRs: ['10.244.1.0/24'] },
      nodeInfos: [{ name: 'node-2', object: peer }, ...(this.own ? [{ name: 'node-1', object: this.own }] : [])],
      pods: [
        {
          namespace: 'default',
          name: 'pod-1',
          nodeName: 'node-1',
          podIPs: ['10.244.1.10'],
          labels: { 'istio.io/dataplane-mode': 'Kmesh' },
          hostNetwork: false,
          finished: false,
        },
      ],
      namespaces: [{ name: 'default', labels: {} }],
      problems: [],
      synced: true,
    };
  }

  publishNodeInfo(info: NodeInfo): Promise<void> {
    this.own = kmeshNodeInfo(info.name, info);
    return Promise.resolve();
  }

  publishNodeStatus(status: NodeKeyStatus): Promise<void> {
    if (this.own !== undefined) this.own = { ...(this.own as object), status };
    return Promise.resolve();
  }

  deleteNodeInfo(): Promise<boolean> {
    const existed = this.own !== undefined;
    this.own = undefined;
    return Promise.resolve(existed);
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}

const hostNetwork: HostNetwork = {
  links: [
    { ifindex: 2, name: 'eth0', kind: '', addresses: ['198.18.0.1'], mtu: 1500 },
    { ifindex: 10, name: 'veth-1', kind: 'veth', addresses: [] },
  ],
  routes: [
    { dst: '198.18.0.0/24', dev: 'eth0', family: 4 },
    { dst: '10.244.1.10', dev: 'veth-1', family: 4 },
  ],
  neighbours: [],
  fdb: [],
};

const quiet: LoopLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  debug: () => undefined,
};

const interfaces = hostNetwork.links.map((l) => ({ name: l.name, ifindex: l.ifindex }));

function node(peerAddresses: string[], dp = new FakeDatapath({ interfaces })) {
  const source = new StillSource(peerAddresses);
  const kernel = new FakeXfrmKernel();
  const ipsec = new IpsecAdapter(kernel, { graceMs: 60_000 });
  ipsec.addKey(makeKey(1));
  const loop = new ReconcileLoop({
    nodeName: 'node-1',
    source,
    ipsec,
    datapath: new DatapathAdapter(dp, '/sys/fs/bpf/node-1'),
    parseNodeInfo,
    hostNetwork: () => Promise.resolve(hostNetwork),
    xfrmStat: () => Promise.resolve({}),
    log: quiet,
    now: () => 1_000,
    resyncMs: 3_600_000,
  });
  const step = async (): Promise<void> => {
    loop.trigger('test');
    await loop.idle();
  };
  return { source, kernel, dp, loop, step };
}

for (const [what, addresses] of [
  ['a dual-stack peer', ['198.18.0.2', 'fd00:198:18::2']],
  ['a peer with two IPv4 addresses and one IPv6', ['198.18.0.2', '198.18.0.22', 'fd00:198:18::2']],
] as const) {
  t.test(`${what}: a no-change second step makes zero datapath writes`, async (t) => {
    const n = node([...addresses]);
    await n.step();
    await n.step(); // our KmeshNodeInfo is published now: nothing left to converge
    t.same(n.loop.currentStatus().problems, [], 'converged without problems');
    t.ok(n.dp.writes > 0, `the first steps wrote the datapath (${n.dp.writes} writes)`);
    t.same([...n.dp.peers], [['198.18.0.2', 1]], 'km_ipsec_peers = the address the inbound SA is for');
    t.same(
      n.kernel
        .listStates()
        .filter((s) => s.dst === '198.18.0.1')
        .map((s) => s.src),
      ['198.18.0.2'],
      'the inbound SA the decrypt mark serves',
    );
    const dpWrites = n.dp.writes;
    const xfrmWrites = n.kernel.writes;
    const views = n.source.views;
    await n.step();
    t.equal(n.dp.writes - dpWrites, 0, 'zero datapath writes');
    t.equal(n.kernel.writes - xfrmWrites, 0, 'zero XFRM writes');
    t.equal(n.source.views - views, 1, 'the step read the cluster view once');
    await n.loop.stop();
  });
}

t.test("a new peer's ids and pod CIDRs reach the decrypt program before its SAs and policies exist", async (t) => {
  // Written after them (as before), the peer's packets were dropped for the rest of the step: its ESP found no
  // SA without its peer-id mark, and what its SA decrypted lost 0xd0 (source not a remote pod CIDR yet) and
  // found no in/fwd policy (XfrmInNoPols in the VM).
  const n = node(['198.18.0.2']);
  const seen: string[] = [];
  const apply = n.kernel.apply.bind(n.kernel);
  n.kernel.apply = (ops) => {
    for (const op of ops) {
      const inbound = op.kind === 'addState' && op.state.src === '198.18.0.2';
      const inPolicy = op.kind === 'addPolicy' && op.policy.dir !== 'out' && op.policy.selector.src === '10.244.2.0/24';
      if (!inbound && !inPolicy) continue;
      seen.push(
        `${inbound ? 'inbound SA' : `${op.kind === 'addPolicy' ? op.policy.dir : ''} policy`}: ` +
          `peer id ${String(n.dp.peers.get('198.18.0.2'))}, ` +
          `remote CIDR ${String(n.dp.remoteCidrs.includes('10.244.2.0/24'))}`,
      );
    }
    return apply(ops);
  };
  await n.step();
  t.same(seen, [
    'inbound SA: peer id 1, remote CIDR true',
    'in policy: peer id 1, remote CIDR true',
    'fwd policy: peer id 1, remote CIDR true',
  ]);
  const writes = n.dp.writes;
  await n.step();
  await n.step();
  t.equal(n.dp.writes - writes, 0, 'later steps with nothing new write nothing');
  await n.loop.stop();
});

t.test('a datapath that cannot load does not hold the XFRM step back; the status says why', async (t) => {
  class UnloadableDatapath extends FakeDatapath {
    override load(): Promise<void> {
      return Promise.reject(new Error('bpffs is not mounted at /sys/fs/bpf'));
    }
  }
  const n = node(['198.18.0.2'], new UnloadableDatapath({ interfaces }));
  await n.step();
  t.ok(
    n.kernel.listStates().some((s) => s.src === '198.18.0.2'),
    "the peer's inbound SA is written although the datapath did not load",
  );
  t.match(n.loop.currentStatus().problems.join('\n'), /datapath: load: bpffs is not mounted/);
  await n.loop.stop();
});
