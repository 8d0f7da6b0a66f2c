// A dual-stack ESP mesh for VM suites: the IPv4 topology of topology.ts with IPv6 turned on and added (underlay
// fd00:198:18::(i+1)/64, pod CIDR fd00:10:244:i::/64, pod j at fd00:10:244:i::(j+2), gateway ::1 on the host
// veths), tunnel-mode SAs and policies per family installed by hand (manual-esp.ts, one inbound SA per peer and
// family, the peer's id in its mark), and the project's TC programs doing the marking: tc_mark_decrypt on
// every node's underlay, tc_mark_encrypt on the host veth of each pod the caller calls managed. One
// BpfDatapath per node (its own bpffs root), all removed by destroy().
import { BpfDatapath } from '../../../src/datapath/bpf-datapath.js';
import { OBJ_DIR, privateBpffsRoot } from '../../host/lib/kernel.js';
import { manualXfrmBatch, randomPairKeys } from './manual-esp.js';
import { createTopology, execOk, UNDERLAY_BRIDGE, type PodPlan, type TopologyPlan } from './topology.js';

export const ESP_SPI = 1;

export interface DualStackEsp {
  v4: TopologyPlan;
  v6: TopologyPlan;
  /** Per node (same order as the plans' nodes). */
  datapaths: BpfDatapath[];
  destroy(): Promise<void>;
}

/** The IPv6 side of the IPv4 topology plan: same namespaces and devices, fd00: addresses (pure). */
export function ipv6Plan(plan: TopologyPlan): TopologyPlan {
  return {
    ...plan,
    nodes: plan.nodes.map((n) => ({
      ...n,
      underlayIp: `fd00:198:18::${n.index + 1}`,
      podCidr: `fd00:10:244:${n.index}::/64`,
      podGateway: `fd00:10:244:${n.index}::1`,
      pods: n.pods.map((p) => ({ ...p, ip: `fd00:10:244:${n.index}::${p.index + 2}` })),
    })),
  };
}

/** Turns IPv6 on in every namespace of the topology and gives nodes and pods their IPv6 addresses and routes. */
async function addIpv6(v6: TopologyPlan): Promise<void> {
  await execOk(v6.underlayNetns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=0']);
  await execOk(undefined, [
    'ip',
    '-n',
    v6.underlayNetns,
    'link',
    'set',
    UNDERLAY_BRIDGE,
    'type',
    'bridge',
    'mcast_snooping',
    '0',
  ]);
  for (const node of v6.nodes) {
    const on = ['net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.default.disable_ipv6=0'];
    await execOk(node.netns, ['sysctl', '-q', '-w', ...on, 'net.ipv6.conf.all.forwarding=1']);
    const lines = [`addr add ${node.underlayIp}/64 dev ${node.underlayDev} nodad`];
    for (const pod of node.pods) {
      await execOk(pod.netns, ['sysctl', '-q', '-w', ...on]);
      lines.push(
        `addr add ${node.podGateway}/128 dev ${pod.hostVeth} nodad`,
        `route add ${pod.ip}/128 dev ${pod.hostVeth}`,
      );
      await execOk(undefined, ['ip', '-n', pod.netns, '-batch', '-'], {
        input:
          [
            `addr add ${pod.ip}/128 dev eth0 nodad`,
            `route add ${node.podGateway} dev eth0`,
            `route add default via ${node.podGateway} dev eth0`,
          ].join('\n') + '\n',
      });
    }
    for (const peer of v6.nodes) {
      if (peer !== node) lines.push(`route add ${peer.podCidr} via ${peer.underlayIp} dev ${node.underlayDev}`);
    }
    await execOk(undefined, ['ip', '-n', node.netns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  }
}

/**
 * Builds the mesh: `nodes` nodes with `podsPerNode` pods each; `managed(pod)` says which pods get
 * tc_mark_encrypt (and go into km_local_pods). Every node's datapath knows its peers' pod CIDRs of both
 * families, their underlay addresses and their peer ids (index + 1, the same for both families).
 */
export async function buildDualStackEsp(options: {
  prefix: string;
  nodes: number;
  podsPerNode: number;
  managed?: (pod: PodPlan) => boolean;
  tag: string;
}): Promise<DualStackEsp> {
  const topo = await createTopology({ prefix: options.prefix, nodes: options.nodes, podsPerNode: options.podsPerNode });
  const datapaths: BpfDatapath[] = [];
  const destroy = async (): Promise<void> => {
    for (const dp of datapaths) await dp.uninstall().catch(() => undefined);
    await topo.destroy();
  };
  try {
    const v4 = topo.plan;
    const v6 = ipv6Plan(v4);
    await addIpv6(v6);
    const keys4 = randomPairKeys(v4);
    const keys6 = randomPairKeys(v6);
    const managed = options.managed ?? (() => true);
    for (const [i, node] of v4.nodes.entries()) {
      const node6 = v6.nodes[i]!;
      const batch = [
        ...manualXfrmBatch(v4, node, { spi: ESP_SPI, keys: keys4, decryptMark: true }),
        ...manualXfrmBatch(v6, node6, { spi: ESP_SPI, keys: keys6, decryptMark: true }),
      ];
      await execOk(undefined, ['ip', '-n', node.netns, '-batch', '-'], { input: `${batch.join('\n')}\n` });
      const dp = new BpfDatapath();
      datapaths.push(dp);
      await dp.load({ bpffsRoot: privateBpffsRoot(`${options.tag}${i}`), objDir: OBJ_DIR });
      const peers = v4.nodes.filter((p) => p !== node);
      const peer6 = (p: (typeof peers)[number]) => v6.nodes[p.index]!;
      await dp.setRemoteCidrs(peers.flatMap((p) => [p.podCidr, peer6(p).podCidr]));
      // The same peer id for both families: each family has its own inbound SA with that id in its mark.
      await dp.setPeers(
        new Map(
          peers.flatMap((p) => [[p.underlayIp, p.index + 1] as const, [peer6(p).underlayIp, p.index + 1] as const]),
        ),
      );
      await dp.setPodPeers(
        new Map(peers.flatMap((p) => [[p.podCidr, p.index + 1] as const, [peer6(p).podCidr, p.index + 1] as const])),
      );
      const ours = node.pods.filter(managed);
      await dp.setLocalPods(ours.flatMap((p) => [p.ip, node6.pods[p.index]!.ip]));
      const netns = `/run/netns/${node.netns}`;
      await dp.attach('decrypt', node.underlayDev, { netns });
      for (const pod of ours) await dp.attach('encrypt', pod.hostVeth, { netns });
    }
    return { v4, v6, datapaths, destroy };
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }
}
