// Where the TC programs go (pure): the host-side interface of each managed pod, found from the pod IP the
// way the kernel would route to it (longest prefix match over the main table; behind a bridge, the bridge
// port that learned the pod's MAC), and the underlay interfaces holding the node's InternalIPs.
import net from 'node:net';
import type { ManagedPod } from './managed-pods.js';

export interface HostLink {
  ifindex: number;
  name: string;
  /** linkinfo kind, e.g. "veth", "bridge"; '' for plain devices. */
  kind: string;
  addresses: string[];
  /** The device's MTU, when known (the IPsec MTU is derived from the underlay's). */
  mtu?: number;
}

export interface HostRoute {
  /** CIDR, host address or "default". */
  dst: string;
  dev: string;
  family: 4 | 6;
}

export interface HostNeighbour {
  dst: string;
  dev: string;
  lladdr: string;
}

export interface BridgeFdbEntry {
  mac: string;
  /** Port device name. */
  ifname: string;
  /** Bridge the port belongs to ('' when unknown). */
  master: string;
}

export interface HostNetwork {
  links: HostLink[];
  routes: HostRoute[];
  neighbours: HostNeighbour[];
  fdb: BridgeFdbEntry[];
}

export interface PodInterface {
  /** "namespace/name" of the pod(s) behind this interface. */
  pods: string[];
  ifname: string;
  ifindex: number;
}

export interface PodInterfaceResolution {
  interfaces: PodInterface[];
  /** Pods whose interface could not be found (one line each, e.g. no route yet). */
  unresolved: string[];
}

function family(ip: string): 4 | 6 | 0 {
  const f = net.isIP(ip);
  return f === 4 ? 4 : f === 6 ? 6 : 0;
}

/** Parses a route's dst into (network, prefix length); undefined for things we cannot match. */
function routePrefix(route: HostRoute): { network: string; prefix: number } | undefined {
  if (route.dst === 'default') return { network: route.family === 4 ? '0.0.0.0' : '::', prefix: 0 };
  const [network = '', len] = route.dst.split('/');
  const f = family(network);
  if (f === 0) return undefined;
  const prefix = len === undefined ? (f === 4 ? 32 : 128) : Number(len);
  return Number.isInteger(prefix) ? { network, prefix } : undefined;
}

/** Device of the longest-prefix route to `ip`, or undefined. */
export function routeDevice(routes: readonly HostRoute[], ip: string): string | undefined {
  const f = family(ip);
  if (f === 0) return undefined;
  let best: { dev: string; prefix: number } | undefined;
  for (const r of routes) {
    if (r.family !== f) continue;
    const p = routePrefix(r);
    if (!p || (best && best.prefix >= p.prefix)) continue;
    const block = new net.BlockList();
    block.addSubnet(p.network, p.prefix, f === 4 ? 'ipv4' : 'ipv6');
    if (block.check(ip, f === 4 ? 'ipv4' : 'ipv6')) best = { dev: r.dev, prefix: p.prefix };
  }
  return best?.dev;
}

/** Host-side interface for one pod IP: the route's device, or the bridge port behind which its MAC sits. */
export function podInterfaceFor(hostNet: HostNetwork, ip: string): HostLink | undefined {
  const dev = routeDevice(hostNet.routes, ip);
  if (dev === undefined) return undefined;
  const link = hostNet.links.find((l) => l.name === dev);
  if (!link) return undefined;
  if (link.kind !== 'bridge') return link;
  const mac = hostNet.neighbours.find((n) => n.dev === dev && n.dst === ip)?.lladdr.toLowerCase();
  if (mac === undefined) return undefined;
  const port = hostNet.fdb.find(
    (e) => e.mac.toLowerCase() === mac && e.ifname !== dev && (e.master === '' || e.master === dev),
  );
  return port ? hostNet.links.find((l) => l.name === port.ifname) : undefined;
}

export function resolvePodInterfaces(hostNet: HostNetwork, pods: readonly ManagedPod[]): PodInterfaceResolution {
  const byIf = new Map<string, PodInterface>();
  const unresolved: string[] = [];
  for (const pod of pods) {
    const id = `${pod.namespace}/${pod.name}`;
    const links = pod.podIPs.map((ip) => podInterfaceFor(hostNet, ip)).filter((l): l is HostLink => l !== undefined);
    if (links.length === 0) {
      unresolved.push(`${id}: no host interface routes to ${pod.podIPs.join(', ')}`);
      continue;
    }
    for (const link of links) {
      const entry = byIf.get(link.name) ?? { pods: [], ifname: link.name, ifindex: link.ifindex };
      if (!entry.pods.includes(id)) entry.pods.push(id);
      byIf.set(link.name, entry);
    }
  }
  return { interfaces: [...byIf.values()].sort((a, b) => a.ifname.localeCompare(b.ifname)), unresolved };
}

/** Interfaces holding any of the node's InternalIPs (where tc_mark_decrypt goes). */
export function underlayInterfaces(hostNet: HostNetwork, addresses: readonly string[]): HostLink[] {
  const wanted = new Set(addresses);
  return hostNet.links
    .filter((l) => l.addresses.some((a) => wanted.has(a)))
    .sort((a, b) => a.name.localeCompare(b.name));
}
