// Three network namespaces for datapath traffic tests, all named <prefix>-{n,p,r} (prefix kmt-dp-...):
//   pod  (p) kmtp0 10.77.0.2/24 fd77::2/64  <-veth->  kmtpv 10.77.0.1/24 fd77::1/64 (n)  node: pod's host-side veth
//   node (n) kmtu0 198.18.0.1/24           <-veth->  kmtu1 198.18.0.2/24 + .3/24 (r)  remote node's underlay
// The remote also holds 10.99.1.1 (inside its pod CIDR 10.99.1.0/24) and 10.55.0.1 (outside any) on lo.
import { addNetns, delNetns, netnsPath, sh } from './kernel.js';

export interface DpTopology {
  node: string;
  pod: string;
  remote: string;
  nodePath: string;
}

export function buildTopology(prefix: string): DpTopology {
  const topo = { node: `${prefix}-n`, pod: `${prefix}-p`, remote: `${prefix}-r`, nodePath: netnsPath(`${prefix}-n`) };
  try {
    for (const ns of [topo.node, topo.pod, topo.remote]) addNetns(ns);
    sh(
      topo.node,
      `ip link add kmtpv type veth peer name kmtp0 netns ${topo.pod}
       ip link add kmtu0 type veth peer name kmtu1 netns ${topo.remote}
       ip addr add 10.77.0.1/24 dev kmtpv
       ip addr add fd77::1/64 dev kmtpv nodad
       ip addr add 198.18.0.1/24 dev kmtu0
       ip link set kmtpv up
       ip link set kmtu0 up`,
    );
    sh(
      topo.pod,
      `ip addr add 10.77.0.2/24 dev kmtp0
       ip addr add fd77::2/64 dev kmtp0 nodad
       ip link set kmtp0 up
       ip route add default via 10.77.0.1
       ip -6 route add default via fd77::1`,
    );
    sh(
      topo.remote,
      `ip addr add 198.18.0.2/24 dev kmtu1
       ip addr add 198.18.0.3/24 dev kmtu1
       ip addr add 10.99.1.1/32 dev lo
       ip addr add 10.55.0.1/32 dev lo
       ip link set kmtu1 up`,
    );
  } catch (e) {
    destroyTopology(topo);
    throw e;
  }
  return topo;
}

export function destroyTopology(topo: DpTopology): void {
  for (const ns of [topo.pod, topo.remote, topo.node]) delNetns(ns);
}
