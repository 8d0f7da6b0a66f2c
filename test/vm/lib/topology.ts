// Multi-node test topologies built from network namespaces, usable on the host (policy-only tests) and in
// the kernel-test VM (ESP). Layout for prefix P, N nodes, M pods per node (node index i = 0..N-1,
// pod index j = 0..M-1):
//   P + "ul"        underlay namespace with bridge br0 (198.18.0.0/24); port "n<i>" per node
//   P + "n<i>"      node namespace: eth0 = 198.18.0.(i+1)/24 on the underlay, ip_forward on,
//                   pod CIDR 10.244.i.0/24, host-side veth "vpod<j>" per pod (carrying 10.244.i.1/32,
//                   the pods' gateway), routes to every other node's pod CIDR via that node's underlay IP
//   P + "n<i>p<j>"  pod namespace: eth0 = 10.244.i.(j+2)/32, default route via 10.244.i.1
// Everything created is named from the caller's prefix; createTopology first removes leftovers with those
// exact names and destroy() removes them all (also after a failed setup). IPv6 is off in every namespace
// so captures hold only the test's traffic.
//
// Helpers for tests (re-exported here):
//   exec / execOk / spawnIn / stopBackground / stopAllBackground   run programs in a namespace (netns.ts)
//   startCapture / captureLines / captureContains                   tcpdump to a pcap file (capture.ts)
//   readXfrmStat / assertXfrmCountersUnchanged / xfrmCounterChanges XFRM error counters (xfrm-stat.ts)
//   ping / startUdpFlow                                             traffic, UDP with loss count (traffic.ts)
import { exec, execOk, stopAllBackground } from './netns.js';

export * from './netns.js';
export * from './capture.js';
export * from './xfrm-stat.js';
export * from './traffic.js';

export const UNDERLAY_BRIDGE = 'br0';
const NODE_UNDERLAY_DEV = 'eth0';
const POD_DEV = 'eth0';

export interface TopologyOptions {
  /** Name prefix of every namespace, e.g. `kmt-esp-`: lowercase letters, digits, '-' (at most 20). */
  prefix: string;
  nodes: number;
  podsPerNode: number;
}

export interface PodPlan {
  node: number;
  index: number;
  netns: string;
  ip: string;
  /** The pod's veth end in the node namespace. */
  hostVeth: string;
}

export interface NodePlan {
  index: number;
  netns: string;
  underlayIp: string;
  underlayDev: string;
  podCidr: string;
  /** Address of the host-side veths: the pods' default gateway. */
  podGateway: string;
  pods: PodPlan[];
}

export interface TopologyPlan {
  prefix: string;
  underlayNetns: string;
  nodes: NodePlan[];
}

/** Names and addresses of a topology (pure); throws naming the bad option. */
export function planTopology(options: TopologyOptions): TopologyPlan {
  const { prefix, nodes, podsPerNode } = options;
  if (!/^[a-z0-9][a-z0-9-]{0,19}$/.test(prefix)) {
    throw new Error(`topology prefix '${prefix}' must be 1-20 lowercase letters, digits or '-'`);
  }
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 200) throw new Error(`nodes must be 1..200, got ${nodes}`);
  if (!Number.isInteger(podsPerNode) || podsPerNode < 0 || podsPerNode > 200) {
    throw new Error(`podsPerNode must be 0..200, got ${podsPerNode}`);
  }
  return {
    prefix,
    underlayNetns: `${prefix}ul`,
    nodes: Array.from({ length: nodes }, (_, i) => ({
      index: i,
      netns: `${prefix}n${i}`,
      underlayIp: `198.18.0.${i + 1}`,
      underlayDev: NODE_UNDERLAY_DEV,
      podCidr: `10.244.${i}.0/24`,
      podGateway: `10.244.${i}.1`,
      pods: Array.from({ length: podsPerNode }, (_, j) => ({
        node: i,
        index: j,
        netns: `${prefix}n${i}p${j}`,
        ip: `10.244.${i}.${j + 2}`,
        hostVeth: `vpod${j}`,
      })),
    })),
  };
}

/** Every namespace of the plan, underlay first. */
export function planNamespaces(plan: TopologyPlan): string[] {
  return [plan.underlayNetns, ...plan.nodes.flatMap((n) => [n.netns, ...n.pods.map((p) => p.netns)])];
}

/** `ip -batch` lines run in the caller's namespace: namespaces and the veth pairs between them (pure). */
export function linkBatch(plan: TopologyPlan): string[] {
  const lines = planNamespaces(plan).map((ns) => `netns add ${ns}`);
  for (const node of plan.nodes) {
    lines.push(
      `link add n${node.index} netns ${plan.underlayNetns} type veth peer name ${node.underlayDev} netns ${node.netns}`,
    );
    for (const pod of node.pods) {
      lines.push(`link add ${pod.hostVeth} netns ${node.netns} type veth peer name ${POD_DEV} netns ${pod.netns}`);
    }
  }
  return lines;
}

/** `ip -batch` lines for the inside of each namespace, keyed by namespace (pure). */
export function addressBatches(plan: TopologyPlan): Map<string, string[]> {
  const batches = new Map<string, string[]>();
  const underlay = [`link add ${UNDERLAY_BRIDGE} type bridge`, `link set ${UNDERLAY_BRIDGE} up`, 'link set lo up'];
  for (const node of plan.nodes)
    underlay.push(`link set n${node.index} master ${UNDERLAY_BRIDGE}`, `link set n${node.index} up`);
  batches.set(plan.underlayNetns, underlay);
  for (const node of plan.nodes) {
    const lines = [
      'link set lo up',
      `addr add ${node.underlayIp}/24 dev ${node.underlayDev}`,
      `link set ${node.underlayDev} up`,
    ];
    for (const pod of node.pods) {
      lines.push(
        `addr add ${node.podGateway}/32 dev ${pod.hostVeth}`,
        `link set ${pod.hostVeth} up`,
        `route add ${pod.ip}/32 dev ${pod.hostVeth} src ${node.podGateway}`,
      );
    }
    for (const peer of plan.nodes) {
      if (peer.index !== node.index)
        lines.push(`route add ${peer.podCidr} via ${peer.underlayIp} dev ${node.underlayDev}`);
    }
    batches.set(node.netns, lines);
    for (const pod of node.pods) {
      batches.set(pod.netns, [
        'link set lo up',
        `addr add ${pod.ip}/32 dev ${POD_DEV}`,
        `link set ${POD_DEV} up`,
        `route add ${node.podGateway} dev ${POD_DEV} scope link`,
        `route add default via ${node.podGateway} dev ${POD_DEV}`,
      ]);
    }
  }
  return batches;
}

/** sysctl settings per namespace (pure): forwarding on nodes, no rp_filter, no IPv6 anywhere. */
export function sysctlSettings(plan: TopologyPlan, netns: string): string[] {
  const common = ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
  if (plan.nodes.some((n) => n.netns === netns)) {
    return [...common, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'];
  }
  return common;
}

export interface Topology {
  readonly plan: TopologyPlan;
  /** Removes every namespace of the topology after ending the helpers' background processes. */
  destroy(): Promise<void>;
}

async function removeNamespaces(names: string[]): Promise<void> {
  const existing = new Set(
    (await execOk(undefined, ['ip', 'netns', 'list']))
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n !== ''),
  );
  const ours = names.filter((n) => existing.has(n));
  if (ours.length === 0) return;
  await exec(undefined, ['ip', '-force', '-batch', '-'], {
    input: `${ours.map((n) => `netns del ${n}`).join('\n')}\n`,
  });
  const left = (await execOk(undefined, ['ip', 'netns', 'list'])).split('\n').map((l) => l.split(' ')[0]);
  const stuck = ours.filter((n) => left.includes(n));
  if (stuck.length > 0) throw new Error(`could not remove network namespaces: ${stuck.join(', ')}`);
}

/** Builds the topology; on any failure removes what it made and rethrows. */
export async function createTopology(options: TopologyOptions): Promise<Topology> {
  const plan = planTopology(options);
  const names = planNamespaces(plan);
  await removeNamespaces(names);
  const destroy = async (): Promise<void> => {
    await stopAllBackground();
    await removeNamespaces(names);
  };
  try {
    await execOk(undefined, ['ip', '-batch', '-'], { input: `${linkBatch(plan).join('\n')}\n` });
    await Promise.all(names.map((ns) => execOk(ns, ['sysctl', '-q', '-w', ...sysctlSettings(plan, ns)])));
    for (const [ns, lines] of addressBatches(plan)) {
      await execOk(undefined, ['ip', '-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
    }
  } catch (err) {
    await destroy().catch(() => undefined);
    throw err;
  }
  return { plan, destroy };
}
