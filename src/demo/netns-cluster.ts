// A simulated multi-node cluster in network namespaces, for the demo and the end-to-end suites: an underlay
// bridge in its own namespace (<prefix>-ul), one namespace per node (<prefix>-nI, eth0 = 198.18.0.I/24 on
// the underlay, pod CIDR 10.244.I.0/24 routed to the other nodes through their underlay address), and one
// namespace per pod (<prefix>-nI-pN, eth0 = 10.244.I.(10+N)/32 behind host-side veth vpN, calico-style
// routing with proxy ARP). Only names with the given prefix are created, and destroy() removes them all.
import { randomUUID } from 'node:crypto';
import { run, runOk } from './shell.js';

export interface SimPod {
  name: string;
  /** Namespace (Kubernetes) the pod is put in. */
  namespace: string;
  netns: string;
  ip: string;
  /** Host-side veth in the node namespace. */
  hostIf: string;
}

export interface SimNode {
  index: number;
  name: string;
  netns: string;
  underlayIp: string;
  podCidr: string;
  bootID: string;
  pods: SimPod[];
}

export interface NetnsClusterOptions {
  /** Prefix of every namespace and link created (≤ 5 characters keeps names within 15). */
  prefix: string;
  nodes: number;
  podsPerNode: number;
  /** Kubernetes namespace of pod N (default: "default" for all). */
  podNamespace?: (podIndex: number) => string;
}

export class NetnsCluster {
  readonly nodes: SimNode[];
  readonly underlayNetns: string;

  constructor(private readonly opts: NetnsClusterOptions) {
    if (opts.prefix.length > 5) throw new Error(`netns prefix "${opts.prefix}" is longer than 5 characters`);
    this.underlayNetns = `${opts.prefix}-ul`;
    this.nodes = Array.from({ length: opts.nodes }, (_, k) => {
      const i = k + 1;
      const netns = `${opts.prefix}-n${i}`;
      return {
        index: i,
        name: `node-${i}`,
        netns,
        underlayIp: `198.18.0.${i}`,
        podCidr: `10.244.${i}.0/24`,
        bootID: randomUUID(),
        pods: Array.from({ length: opts.podsPerNode }, (_, n) => ({
          name: `pod-${i}-${n}`,
          namespace: opts.podNamespace?.(n) ?? 'default',
          netns: `${netns}-p${n}`,
          ip: `10.244.${i}.${10 + n}`,
          hostIf: `vp${n}`,
        })),
      };
    });
  }

  /** Every namespace this cluster owns. */
  allNetns(): string[] {
    return [this.underlayNetns, ...this.nodes.flatMap((n) => [n.netns, ...n.pods.map((p) => p.netns)])];
  }

  async create(): Promise<void> {
    await this.destroy();
    const ul = this.underlayNetns;
    await runOk('ip', ['netns', 'add', ul]);
    await runOk('ip', ['-n', ul, 'link', 'add', 'br0', 'type', 'bridge']);
    await runOk('ip', ['-n', ul, 'link', 'set', 'br0', 'up']);
    for (const node of this.nodes) {
      const ns = node.netns;
      await runOk('ip', ['netns', 'add', ns]);
      await runOk('ip', [
        'link',
        'add',
        `ul${node.index}`,
        'netns',
        ul,
        'type',
        'veth',
        'peer',
        'name',
        'eth0',
        'netns',
        ns,
      ]);
      await runOk('ip', ['-n', ul, 'link', 'set', `ul${node.index}`, 'master', 'br0', 'up']);
      await runOk('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
      await runOk('ip', ['-n', ns, 'addr', 'add', `${node.underlayIp}/24`, 'dev', 'eth0']);
      await runOk('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      for (const [key, value] of [
        ['net.ipv4.ip_forward', '1'],
        ['net.ipv4.conf.all.rp_filter', '0'],
        ['net.ipv4.conf.default.rp_filter', '0'],
      ] as const) {
        await runOk('sysctl', ['-qw', `${key}=${value}`], { netns: ns });
      }
      // Proxy ARP answers for the pods' gateway 169.254.1.1 only if the node routes it elsewhere.
      await runOk('ip', ['-n', ns, 'route', 'add', '169.254.1.1/32', 'dev', 'eth0']);
      for (const pod of node.pods) {
        await runOk('ip', ['netns', 'add', pod.netns]);
        await runOk('ip', [
          'link',
          'add',
          pod.hostIf,
          'netns',
          ns,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          pod.netns,
        ]);
        await runOk('ip', ['-n', pod.netns, 'link', 'set', 'lo', 'up']);
        await runOk('ip', ['-n', pod.netns, 'addr', 'add', `${pod.ip}/32`, 'dev', 'eth0']);
        await runOk('ip', ['-n', pod.netns, 'link', 'set', 'eth0', 'up']);
        await runOk('ip', ['-n', pod.netns, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
        await runOk('ip', ['-n', pod.netns, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
        await runOk('ip', ['-n', ns, 'link', 'set', pod.hostIf, 'up']);
        await runOk('sysctl', ['-qw', `net.ipv4.conf.${pod.hostIf}.proxy_arp=1`], { netns: ns });
        await runOk('sysctl', ['-qw', `net.ipv4.conf.${pod.hostIf}.rp_filter=0`], { netns: ns });
        await runOk('ip', ['-n', ns, 'route', 'add', `${pod.ip}/32`, 'dev', pod.hostIf]);
      }
      for (const other of this.nodes) {
        if (other === node) continue;
        await runOk('ip', ['-n', ns, 'route', 'add', other.podCidr, 'via', other.underlayIp, 'dev', 'eth0']);
      }
    }
  }

  /** Deletes every namespace of this cluster (their links, XFRM states and TC filters go with them). */
  async destroy(): Promise<void> {
    const existing = (await run('ip', ['netns', 'list'])).stdout
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n !== '');
    for (const ns of this.allNetns().reverse()) {
      if (existing.includes(ns)) await run('ip', ['netns', 'del', ns]);
    }
  }

  node(i: number): SimNode {
    const n = this.nodes[i - 1];
    if (!n) throw new Error(`no node ${i}`);
    return n;
  }

  /** Kubernetes-shaped objects for the store: Node, Namespace, Pod. */
  nodeObject(node: SimNode): Record<string, unknown> {
    return {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: node.name },
      spec: { podCIDR: node.podCidr, podCIDRs: [node.podCidr] },
      status: {
        addresses: [
          { type: 'InternalIP', address: node.underlayIp },
          { type: 'Hostname', address: node.name },
        ],
        nodeInfo: { bootID: node.bootID },
      },
    };
  }

  podObject(node: SimNode, pod: SimPod): Record<string, unknown> {
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod.name, namespace: pod.namespace },
      spec: { nodeName: node.name },
      status: { phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }] },
    };
  }
}

/** Pod `i` of a node; throws when the node has fewer pods. */
export function podOf(node: SimNode, i: number): SimPod {
  const p = node.pods[i];
  if (!p) throw new Error(`${node.name} has no pod ${i}`);
  return p;
}

/** Element `i` of a per-node list; throws when it is missing. */
export function nth<T>(list: readonly T[], i: number): T {
  const v = list[i];
  if (v === undefined) throw new Error(`no element ${i}`);
  return v;
}
