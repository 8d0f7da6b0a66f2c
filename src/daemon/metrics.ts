// Prometheus metrics of the daemon (prom-client, own registry): peers counted by SPI, per-peer SPIs and readiness
// (for every peer in small clusters, for the failing ones in large ones: peer-series-limit.ts), XFRM error
// counters, reconcile results and durations, rotation convergence, readiness and what keeps it from being ready
// (own Node unusable, refused XFRM operations, SPI not advertised). `update` maps a DaemonStatus onto them.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { GaugeSeries } from './gauge-series.js';
import { DEFAULT_PEER_METRICS_LIMIT, peersWithSeries } from './peer-series-limit.js';
import type { DaemonStatus } from './status.js';
import { sameItems } from '../model/same-items.js';

export interface DaemonMetricsOptions {
  /** --peer-metrics-limit (peer-series-limit.ts). */
  peerSeriesLimit?: number;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly peerSeriesLimit: number;
  private readonly peers = new Gauge({
    name: 'kmesh_ipsec_peers',
    help: 'Peers this node knows (valid KmeshNodeInfo objects other than its own)',
    registers: [this.registry],
  });
  private readonly peersByAdvertised = new Gauge({
    name: 'kmesh_ipsec_peers_by_advertised_spi',
    help: 'Peers by the SPI they advertise',
    labelNames: ['spi'],
    registers: [this.registry],
  });
  private readonly peersByOutbound = new Gauge({
    name: 'kmesh_ipsec_peers_by_outbound_spi',
    help: 'Peers by the SPI of the outbound SAs to them the kernel holds (spi="0": none)',
    labelNames: ['spi'],
    registers: [this.registry],
  });
  private readonly peersByReportedSending = new Gauge({
    name: 'kmesh_ipsec_peers_by_reported_sending_spi',
    help: 'Peers by the SPIs they report encrypting with in their KmeshNodeInfo status (a peer counts once per SPI)',
    labelNames: ['spi'],
    registers: [this.registry],
  });
  private readonly peerSeriesOmitted = new Gauge({
    name: 'kmesh_ipsec_peer_series_omitted',
    help: 'Peers without kmesh_ipsec_peer_* series of their own (more peers than --peer-metrics-limit: only failing ones have them)',
    registers: [this.registry],
  });
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
  /** The per-peer series (gauge-series.ts): held once, read by the registry at scrape time. */
  private readonly peerSeries = new GaugeSeries<'peer'>(this.registry, [
    { name: 'kmesh_ipsec_peer_advertised_spi', help: 'SPI a peer advertises' },
    {
      name: 'kmesh_ipsec_peer_outbound_spi',
      help: 'SPI of the outbound SAs to the peer the kernel holds (0 = none: not planned, or the kernel refused them)',
    },
    { name: 'kmesh_ipsec_peer_inbound_sas', help: 'Inbound SAs held for the peer' },
    { name: 'kmesh_ipsec_peer_error', help: '1 when the peer has a problem (see /status)' },
  ]);
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
  private readonly ready = new Gauge({
    name: 'kmesh_daemon_ready',
    help: '1 when the node can do its job (/status answers 200), 0 when not (503; /status notReady says why)',
    registers: [this.registry],
  });
  private readonly nodeProblem = new Gauge({
    name: 'kmesh_daemon_node_problem',
    help: '1 when the own Node object is missing or unusable (no InternalIP, boot ID, ...; /status nodeProblem)',
    registers: [this.registry],
  });
  private readonly xfrmFailures = new Gauge({
    name: 'kmesh_xfrm_failed_operations',
    help: 'XFRM operations of the last reconcile step that failed (refused by the kernel, or a foreign object in the way)',
    registers: [this.registry],
  });
  private readonly advertisePending = new Gauge({
    name: 'kmesh_ipsec_advertise_pending',
    help: '1 when the newest key SPI is not advertised in our KmeshNodeInfo (/status notAdvertising says why)',
    registers: [this.registry],
  });
  /** Incremented by the loop when the IPsec side refuses the secret's key (SPI reused for another key, rollback). */
  readonly keyRefusals = new Counter({
    name: 'kmesh_ipsec_key_refusals_total',
    help: 'Keys from the secret refused (an SPI reused for another key, or a rollback); see /status keyProblem',
    registers: [this.registry],
  });
  private readonly keyRefused = new Gauge({
    name: 'kmesh_ipsec_key_refused',
    help: "1 while the secret's key is not the key in force (refused or older); see /status keyProblem",
    registers: [this.registry],
  });
  private readonly highestSpi = new Gauge({
    name: 'kmesh_ipsec_highest_spi',
    help: 'Highest SPI this node holds (reported in its KmeshNodeInfo status)',
    registers: [this.registry],
  });
  private readonly heldSpis = new Gauge({
    name: 'kmesh_ipsec_held_spis',
    help: 'SPIs this node holds keys and SAs for',
    registers: [this.registry],
  });
  private readonly sendingSpi = new Gauge({
    name: 'kmesh_ipsec_sending_spi',
    help: 'SPIs this node encrypts with to some peer (1 per SPI)',
    labelNames: ['spi'],
    registers: [this.registry],
  });
  private readonly failingPeers = new Gauge({
    name: 'kmesh_ipsec_failing_peers',
    help: 'Peers with a problem (the count its KmeshNodeInfo status reports)',
    registers: [this.registry],
  });
  private readonly reportedHighestSeries = new GaugeSeries<'peer'>(this.registry, [
    {
      name: 'kmesh_ipsec_peer_reported_highest_spi',
      help: 'Highest SPI a peer reports holding in its KmeshNodeInfo status',
    },
  ]);
  private readonly reportedSendingSeries = new GaugeSeries<'peer' | 'spi'>(this.registry, [
    {
      name: 'kmesh_ipsec_peer_reported_sending_spi',
      help: 'SPIs a peer reports encrypting with in its KmeshNodeInfo status (1 per peer and SPI)',
    },
  ]);
  private readonly retirementsPending = new Gauge({
    name: 'kmesh_ipsec_retirements_pending',
    help: 'Old SPIs waiting to be removed (for peers still sending with them, or a clock)',
    registers: [this.registry],
  });
  private readonly xfrmDumps = new Gauge({
    name: 'kmesh_ipsec_xfrm_dumps',
    help:
      'Full dumps of the XFRM tables since the daemon started; other steps diff against the view kept from our own writes, ' +
      'checked by the kernel change feed (see /status kernelRead for the last reason)',
    registers: [this.registry],
  });
  readonly statusWrites = new Counter({
    name: 'kmesh_node_status_writes_total',
    help:
      "Writes of this node's KmeshNodeInfo status (each reaches every peer's watch), by why: first, protocol (SPIs " +
      'or rotation peers act on: at once), worse (not ready, or a first failing peer: at once), report (peer count, ' +
      'failing peers, readiness otherwise: at most once per reporting interval)',
    labelNames: ['why'],
    registers: [this.registry],
  });
  readonly steps = new Counter({
    name: 'kmesh_daemon_reconcile_total',
    help: 'Reconcile steps by result: ok, partial (some operations failed, the rest applied), error (a part could not run)',
    labelNames: ['result'],
    registers: [this.registry],
  });
  readonly stepSeconds = new Histogram({
    name: 'kmesh_daemon_reconcile_duration_seconds',
    help: 'Duration of reconcile steps',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  // What the per-peer series were last set from. A status's rows and peer reports are never written to, and a step
  // hands out the last step's row objects and report record where nothing changed: the same ones, in the same order,
  // set the same series, so those are left as they are (5,000 peers' series written anew per step otherwise).
  private peerSeriesFrom: DaemonStatus['peers'] = [];
  /** The peers the per-peer series were last set for (peersWithSeries). */
  private withSeries: readonly DaemonStatus['peers'][number][] = [];
  private reportedSeriesFrom: DaemonStatus['peerReports'] | undefined;
  private reportedSeriesFor: readonly DaemonStatus['peers'][number][] = [];

  constructor(options: DaemonMetricsOptions = {}) {
    this.peerSeriesLimit = options.peerSeriesLimit ?? DEFAULT_PEER_METRICS_LIMIT;
  }

  update(s: DaemonStatus): void {
    this.keySpi.set(s.keySpi ?? 0);
    this.advertisedSpi.set(s.advertisedSpi ?? 0);
    if (!sameItems(this.peerSeriesFrom, s.peers)) {
      this.countPeers(s.peers);
      this.withSeries = peersWithSeries(s.peers, this.peerSeriesLimit, (p) => p.error !== '');
      this.peerSeriesOmitted.set(s.peers.length - this.withSeries.length);
      this.peerSeries.begin();
      for (const p of this.withSeries) {
        this.peerSeries.set(
          p.name,
          () => ({ peer: p.name }),
          p.advertisedSpi,
          p.outboundSpi ?? 0,
          p.inboundSpis.length,
          p.error === '' ? 0 : 1,
        );
      }
      this.peerSeries.end();
      this.peerSeriesFrom = s.peers;
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
    this.keyRefused.set(s.keyRefused ? 1 : 0);
    this.highestSpi.set(s.keyReport?.highestSpi ?? 0);
    this.heldSpis.set(s.keySpis.length);
    this.sendingSpi.reset();
    for (const spi of s.keyReport?.sendSpis ?? []) this.sendingSpi.set({ spi: String(spi) }, 1);
    this.failingPeers.set(s.keyReport?.failingPeerCount ?? 0);
    if (s.peerReports !== this.reportedSeriesFrom || this.withSeries !== this.reportedSeriesFor) {
      this.countReports(s.peerReports);
      // Every peer's report when every peer has series of its own (the usual small cluster), else those of the
      // peers that have.
      const all = this.withSeries.length === this.peerSeriesFrom.length;
      const named = all ? undefined : new Set(this.withSeries.map((p) => p.name));
      this.reportedHighestSeries.begin();
      this.reportedSendingSeries.begin();
      for (const [peer, r] of Object.entries(s.peerReports)) {
        if (named !== undefined && !named.has(peer)) continue;
        this.reportedHighestSeries.set(peer, () => ({ peer }), r.highestSpi);
        // A peer name holds no newline (a Kubernetes object name).
        for (const spi of r.sendSpis)
          this.reportedSendingSeries.set(`${peer}\n${spi}`, () => ({ peer, spi: String(spi) }), 1);
      }
      this.reportedHighestSeries.end();
      this.reportedSendingSeries.end();
      this.reportedSeriesFrom = s.peerReports;
      this.reportedSeriesFor = this.withSeries;
    }
    this.retirementsPending.set(s.pendingRetirements.length);
    if (s.kernelRead !== null) this.xfrmDumps.set(s.kernelRead.dumps);
    this.problems.set(s.problems.length + s.invalidPeers.length + (s.keyProblem === '' ? 0 : 1));
    this.ready.set(s.ready ? 1 : 0);
    this.nodeProblem.set(s.nodeProblem === '' ? 0 : 1);
    this.xfrmFailures.set(s.xfrmFailures.length);
    this.advertisePending.set(s.notAdvertising === '' ? 0 : 1);
  }

  /** The peers, and how many advertise and are sent to with each SPI. */
  private countPeers(peers: DaemonStatus['peers']): void {
    this.peers.set(peers.length);
    const advertised = new Map<number, number>();
    const outbound = new Map<number, number>();
    for (const p of peers) {
      advertised.set(p.advertisedSpi, (advertised.get(p.advertisedSpi) ?? 0) + 1);
      const spi = p.outboundSpi ?? 0;
      outbound.set(spi, (outbound.get(spi) ?? 0) + 1);
    }
    setCounts(this.peersByAdvertised, advertised);
    setCounts(this.peersByOutbound, outbound);
  }

  /** How many peers report sending with each SPI. */
  private countReports(reports: DaemonStatus['peerReports']): void {
    const sending = new Map<number, number>();
    for (const r of Object.values(reports)) for (const spi of r.sendSpis) sending.set(spi, (sending.get(spi) ?? 0) + 1);
    setCounts(this.peersByReportedSending, sending);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** `gauge` holds these counts by SPI, and no other series. */
function setCounts(gauge: Gauge<'spi'>, counts: ReadonlyMap<number, number>): void {
  gauge.reset();
  counts.forEach((n, spi) => gauge.set({ spi: String(spi) }, n));
}
