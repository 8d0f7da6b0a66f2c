// Prometheus metrics of the daemon (prom-client, own registry): per-peer SPIs and readiness, XFRM error
// counters, reconcile results and durations, rotation convergence. `update` maps a DaemonStatus onto them.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { DaemonStatus } from './status.js';

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly keySpi = new Gauge({
    name: 'kmesh_ipsec_key_spi',
    help: 'SPI of the key in force (0 = none)',
    registers: [this.registry],
  });
  private readonly advertisedSpi = new Gauge({
    name: 'kmesh_ipsec_advertised_spi',
    help: 'SPI this node advertises in its KmeshNodeInfo (0 = none)',
    registers: [this.registry],
  });
  private readonly peerAdvertised = new Gauge({
    name: 'kmesh_ipsec_peer_advertised_spi',
    help: 'SPI a peer advertises',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  private readonly peerOutbound = new Gauge({
    name: 'kmesh_ipsec_peer_outbound_spi',
    help: 'SPI this node encrypts to the peer with (0 = no outbound SA)',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  private readonly peerInbound = new Gauge({
    name: 'kmesh_ipsec_peer_inbound_sas',
    help: 'Inbound SAs held for the peer',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  private readonly peerError = new Gauge({
    name: 'kmesh_ipsec_peer_error',
    help: '1 when the peer has a problem (see /status)',
    labelNames: ['peer'],
    registers: [this.registry],
  });
  private readonly invalidPeers = new Gauge({
    name: 'kmesh_ipsec_invalid_peer_objects',
    help: 'KmeshNodeInfo objects rejected by validation',
    registers: [this.registry],
  });
  private readonly managedPods = new Gauge({
    name: 'kmesh_managed_pods',
    help: 'Kmesh-managed pods on this node',
    registers: [this.registry],
  });
  private readonly attachments = new Gauge({
    name: 'kmesh_ipsec_tc_attachments',
    help: 'TC program attachments by program',
    labelNames: ['program'],
    registers: [this.registry],
  });
  private readonly cidrIndex = new Gauge({
    name: 'kmesh_ipsec_cidr_index_entries',
    help: 'Nodes and tail records in use by the compiled remote-CIDR index (none: the LPM trie answers)',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  private readonly cidrIndexInstalled = new Gauge({
    name: 'kmesh_ipsec_cidr_index_installed',
    help: '1 when the TC programs walk the compiled remote-CIDR index, 0 when they ask the km_nodeinfo trie',
    registers: [this.registry],
  });
  private readonly mssClamp = new Gauge({
    name: 'kmesh_ipsec_mss_clamp_bytes',
    help: 'MSS that TCP SYN / SYN-ACK to encrypted peers are clamped to, by family (0 = not clamped)',
    labelNames: ['family'],
    registers: [this.registry],
  });
  /** Per (peer id, action): km_plaintext only grows while the maps live; fed by deltas like the XFRM counters. */
  private readonly plaintext = new Counter({
    name: 'kmesh_ipsec_plaintext_packets_total',
    help: 'Plaintext packets from a peer pod CIDR to a managed local pod on the underlay, by peer and by action (strict mode in force: off and audit passed them, enforce dropped them)',
    labelNames: ['peer', 'action'],
    registers: [this.registry],
  });
  private readonly plaintextSeen = new Map<string, number>();
  /** Kernel counters only grow (until the namespace is recreated): exported as counters, fed by deltas. */
  private readonly xfrm = new Counter({
    name: 'kmesh_xfrm_stat_total',
    help: 'Counters of /proc/net/xfrm_stat in the daemon network namespace',
    labelNames: ['counter'],
    registers: [this.registry],
  });
  private readonly xfrmSeen = new Map<string, number>();
  private readonly rotationSeconds = new Gauge({
    name: 'kmesh_ipsec_rotation_convergence_seconds',
    help: 'Seconds from seeing the newest key to sending with its SPI to every peer (last rotation)',
    registers: [this.registry],
  });
  private readonly problems = new Gauge({
    name: 'kmesh_daemon_problems',
    help: 'Current problems (see /status)',
    registers: [this.registry],
  });
  readonly steps = new Counter({
    name: 'kmesh_daemon_reconcile_total',
    help: 'Reconcile steps by result',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly stepSeconds = new Histogram({
    name: 'kmesh_daemon_reconcile_duration_seconds',
    help: 'Duration of reconcile steps',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  update(s: DaemonStatus): void {
    this.keySpi.set(s.keySpi ?? 0);
    this.advertisedSpi.set(s.advertisedSpi ?? 0);
    this.peerAdvertised.reset();
    this.peerOutbound.reset();
    this.peerInbound.reset();
    this.peerError.reset();
    for (const p of s.peers) {
      this.peerAdvertised.set({ peer: p.name }, p.advertisedSpi);
      this.peerOutbound.set({ peer: p.name }, p.outboundSpi ?? 0);
      this.peerInbound.set({ peer: p.name }, p.inboundSpis.length);
      this.peerError.set({ peer: p.name }, p.error === '' ? 0 : 1);
    }
    this.invalidPeers.set(s.invalidPeers.length);
    this.managedPods.set(s.managedPods.length);
    this.attachments.reset();
    this.attachments.set({ program: 'encrypt' }, s.attachments.filter((a) => a.program === 'encrypt').length);
    this.attachments.set({ program: 'decrypt' }, s.attachments.filter((a) => a.program === 'decrypt').length);
    this.cidrIndexInstalled.set(s.cidrIndex ? 1 : 0);
    this.cidrIndex.set({ kind: 'nodes' }, s.cidrIndex?.nodes ?? 0);
    this.cidrIndex.set({ kind: 'records' }, s.cidrIndex?.records ?? 0);
    this.mssClamp.set({ family: 'ipv4' }, s.mssClamp?.ipv4 ?? 0);
    this.mssClamp.set({ family: 'ipv6' }, s.mssClamp?.ipv6 ?? 0);
    for (const p of s.plaintext) {
      const peer = p.peer === '' ? `id-${p.peerId}` : p.peer;
      const key = `${p.peerId}/${p.action}`;
      const before = this.plaintextSeen.get(key);
      const delta = before === undefined || p.packets < before ? p.packets : p.packets - before;
      this.plaintextSeen.set(key, p.packets);
      this.plaintext.inc({ peer, action: p.action }, delta);
    }
    for (const [counter, value] of Object.entries(s.xfrmStat)) {
      const before = this.xfrmSeen.get(counter);
      // First sight: the whole value; a value below the last one: the kernel's counter restarted from 0.
      const delta = before === undefined || value < before ? value : value - before;
      this.xfrmSeen.set(counter, value);
      this.xfrm.inc({ counter }, delta);
    }
    if (s.rotation?.convergedAt !== undefined) {
      this.rotationSeconds.set((s.rotation.convergedAt - s.rotation.seenAt) / 1000);
    }
    this.problems.set(s.problems.length + s.invalidPeers.length + (s.keyProblem === '' ? 0 : 1));
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
