// A simulated multi-node cluster in network namespaces, for the demo and the end-to-end suites: an underlay
// bridge in its own namespace (<prefix>-ul), one namespace per node (<prefix>-nI) and one per pod
// (<prefix>-nI-pN, behind host-side veth vpN, calico-style routing). Per address family (IPv4 by default;
// IPv6 only, or both, with `families`):
//   IPv4  node eth0 198.18.0.I/24, pod CIDR 10.244.I.0/24, pod 10.244.I.(10+N)/32, gateway 169.254.1.1 by
//         proxy ARP
//   IPv6  node eth0 fd00:198:18::I/64, pod CIDR fd00:10:244:I::/64, pod fd00:10:244:I::(10+N)/128, gateway
//         fe80::1 on every host-side veth; duplicate address detection off so addresses work at once
// Each node routes every other node's pod CIDR of a family through that node's underlay address of the same
// family. Only names with the given prefix are created, and destroy() removes them all.
import { randomUUID } from 'node:crypto';
import type { Family } from '../model/ip-address.js';
import { run, runOk } from './shell.js';

export interface SimPod {
  name: string;
  /** Namespace (Kubernetes) the pod is put in. */
  namespace: string;
  netns: string;
  /** The pod's address of the cluster's first family. */
  ip: string;
  /** One address per family, in the cluster's family order. */
  ips: string[];
  /** Host-side veth in the node namespace. */
  hostIf: string;
}

export interface SimNode {
  index: number;
  name: string;
  netns: string;
  /** Underlay address and pod CIDR of the cluster's first family. */
  underlayIp: string;
  podCidr: string;
  /** One per family, in the cluster's family order. */
  underlayIps: string[];
  podCidrs: string[];
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
  /** Address families of the underlay and the pods, the first one primary (default: IPv4 only). */
  families?: readonly Family[];
}

const ADDRESSING: Record<
  Family,
  {
    underlay: (i: number) => string;
    prefixLength: number;
    podCidr: (i: number) => string;
    pod: (i: number, n: number) => string;
    podLength: number;
  }
> = {
  4: {
    underlay: (i) => `198.18.0.${i}`,
    prefixLength: 24,
    podCidr: (i) => `10.244.${i}.0/24`,
    pod: (i, n) => `10.244.${i}.${10 + n}`,
    podLength: 32,
  },
  6: {
    underlay: (i) => `fd00:198:18::${i}`,
    prefixLength: 64,
    podCidr: (i) => `fd00:10:244:${i}::/64`,
    pod: (i, n) => `fd00:10:244:${i}::${10 + n}`,
    podLength: 128,
  },
};

export class NetnsCluster {
  readonly nodes: SimNode[];
  readonly underlayNetns: string;
  readonly families: readonly Family[];

  constructor(private readonly opts: NetnsClusterOptions) {
    if (opts.prefix.length > 5) throw new Error(`netns prefix "${opts.prefix}" is longer than 5 characters`);
    const families = opts.families ?? [4];
    if (families.length === 0 || new Set(families).size !== families.length) {
      throw new Error(`families must name IPv4 and/or IPv6 once each, got [${families.join(', ')}]`);
    }
    this.families = families;
    this.underlayNetns = `${opts.prefix}-ul`;
    this.nodes = Array.from({ length: opts.nodes }, (_, k) => {
      const i = k + 1;
      const netns = `${opts.prefix}-n${i}`;
      const underlayIps = families.map((f) => ADDRESSING[f].underlay(i));
      const podCidrs = families.map((f) => ADDRESSING[f].podCidr(i));
      return {
        index: i,
        name: `node-${i}`,
        netns,
        underlayIp: underlayIps[0] ?? '',
        podCidr: podCidrs[0] ?? '',
        underlayIps,
        podCidrs,
        bootID: randomUUID(),
        pods: Array.from({ length: opts.podsPerNode }, (_, n) => {
          const ips = families.map((f) => ADDRESSING[f].pod(i, n));
          return {
            name: `pod-${i}-${n}`,
            namespace: opts.podNamespace?.(n) ?? 'default',
            netns: `${netns}-p${n}`,
            ip: ips[0] ?? '',
            ips,
            hostIf: `vp${n}`,
          };
        }),
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
    const v4 = this.families.includes(4);
    const v6 = this.families.includes(6);
    await this.addNetns(ul);
    await runOk('ip', ['-n', ul, 'link', 'add', 'br0', 'type', 'bridge']);
    await runOk('ip', ['-n', ul, 'link', 'set', 'br0', 'up']);
    for (const node of this.nodes) {
      const ns = node.netns;
      await this.addNetns(ns);
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
      for (const [f, address] of this.byFamily(node.underlayIps)) {
        await runOk('ip', [
          '-n',
          ns,
          'addr',
          'add',
          `${address}/${ADDRESSING[f].prefixLength}`,
          'dev',
          'eth0',
          ...(f === 6 ? ['nodad'] : []),
        ]);
      }
      await runOk('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
      const sysctls: [string, string][] = [
        ['net.ipv4.ip_forward', '1'],
        ['net.ipv4.conf.all.rp_filter', '0'],
        ['net.ipv4.conf.default.rp_filter', '0'],
      ];
      if (v6) sysctls.push(['net.ipv6.conf.all.forwarding', '1']);
      for (const [key, value] of sysctls) await runOk('sysctl', ['-qw', `${key}=${value}`], { netns: ns });
      // Proxy ARP answers for the pods' gateway 169.254.1.1 only if the node routes it elsewhere.
      if (v4) await runOk('ip', ['-n', ns, 'route', 'add', '169.254.1.1/32', 'dev', 'eth0']);
      for (const pod of node.pods) {
        await this.addNetns(pod.netns);
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
        for (const [f, ip] of this.byFamily(pod.ips)) {
          await runOk('ip', [
            '-n',
            pod.netns,
            'addr',
            'add',
            `${ip}/${ADDRESSING[f].podLength}`,
            'dev',
            'eth0',
            ...(f === 6 ? ['nodad'] : []),
          ]);
        }
        await runOk('ip', ['-n', pod.netns, 'link', 'set', 'eth0', 'up']);
        await runOk('ip', ['-n', ns, 'link', 'set', pod.hostIf, 'up']);
        if (v4) {
          await runOk('ip', ['-n', pod.netns, 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
          await runOk('ip', ['-n', pod.netns, 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
          await runOk('sysctl', ['-qw', `net.ipv4.conf.${pod.hostIf}.proxy_arp=1`], { netns: ns });
          await runOk('sysctl', ['-qw', `net.ipv4.conf.${pod.hostIf}.rp_filter=0`], { netns: ns });
        }
        if (v6) {
          await runOk('ip', ['-n', ns, 'addr', 'add', 'fe80::1/64', 'dev', pod.hostIf, 'nodad']);
          await runOk('ip', ['-n', pod.netns, '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0']);
        }
        for (const [f, ip] of this.byFamily(pod.ips)) {
          await runOk('ip', ['-n', ns, 'route', 'add', `${ip}/${ADDRESSING[f].podLength}`, 'dev', pod.hostIf]);
        }
      }
      for (const other of this.nodes) {
        if (other === node) continue;
        for (const [i, cidr] of other.podCidrs.entries()) {
          await runOk('ip', ['-n', ns, 'route', 'add', cidr, 'via', other.underlayIps[i] ?? '', 'dev', 'eth0']);
        }
      }
    }
  }

  /** A namespace with duplicate address detection off, so that IPv6 addresses of new links work at once. */
  private async addNetns(name: string): Promise<void> {
    await runOk('ip', ['netns', 'add', name]);
    if (this.families.includes(6)) {
      for (const key of ['net.ipv6.conf.all.accept_dad', 'net.ipv6.conf.default.accept_dad']) {
        await runOk('sysctl', ['-qw', `${key}=0`], { netns: name });
      }
    }
  }

  /** Pairs each per-family value with its family. */
  private byFamily(values: readonly string[]): [Family, string][] {
    return this.families.map((f, i) => [f, values[i] ?? '']);
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
      spec: { podCIDR: node.podCidr, podCIDRs: node.podCidrs },
      status: {
        addresses: [
          ...node.underlayIps.map((address) => ({ type: 'InternalIP', address })),
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
      status: { phase: 'Running', podIP: pod.ip, podIPs: pod.ips.map((ip) => ({ ip })) },
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
