// The level-triggered reconcile loop's domain step: every trigger (a source change, a key-file change, a timer)
// leads to one full step computed from current state only, in this order: read the cluster view (once: every
// part of the step sees the same one) and the key file's state; validate the peers; the IPsec step (XFRM
// reconcile; it returns the peer ids its inbound SAs were planned for); the datapath sync from that result, the
// one writer of the datapath (decrypt attachments, km_ipsec_peers, km_nodeinfo and its index, km_local_pods,
// km_pod_peers, km_ipsec_config (strict mode, MSS clamp), encrypt attachments, then detaches); publish our SPI (only once our inbound SAs for it exist); read
// /proc/net/xfrm_stat; persist the key history when it changed; then report (status, metrics, log, status
// callback). When steps run (coalescing, retry with backoff, periodic resync) is step-scheduler.ts's job.
// Nothing here touches the kernel directly.
import type { IpsecKey, NodeInfo } from '../model/node.js';
import type { StrictMode } from '../model/strict-mode.js';
import type { KeyFileEvent } from './key-file-watcher.js';
import { managedPods } from './managed-pods.js';
import type { DaemonMetrics } from './metrics.js';
import { decideMssClamp, type MssClampSetting } from './mss-clamp.js';
import { resolvePodInterfaces, underlayInterfaces, type HostNetwork } from './pod-interfaces.js';
import type { DatapathPort, IpsecPort, IpsecStepResult } from './ports.js';
import { nodeFactsGap, nodeInfoUpToDate } from './sources/objects.js';
import type { ClusterSource, ClusterView, NodeFacts } from './sources/source.js';
import { emptyStatus, rotationConverged, type DaemonStatus } from './status.js';
import type { XfrmStat } from './xfrm-stat.js';
import { StepScheduler } from './step-scheduler.js';
import { firstLine } from '../util/first-line.js';

export interface LoopLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface LoopDeps {
  nodeName: string;
  source: ClusterSource;
  /** Present with --enable-ipsec; without it the loop only watches and reports. */
  ipsec?: IpsecPort | undefined;
  datapath?: DatapathPort | undefined;
  /** Key in force and the file's problem (the key-file watcher). */
  keyFile?: { key(): IpsecKey | undefined; status(): { spi: number | undefined; problem: string } } | undefined;
  /** Validates a KmeshNodeInfo object: the NodeInfo, or a one-line reason naming what is wrong. */
  parseNodeInfo: (obj: unknown) => { ok: NodeInfo } | { error: string };
  hostNetwork: (options: { ipv6: boolean }) => Promise<HostNetwork>;
  /** --ipsec-mss-clamp and --ipsec-mtu; default: clamp, MTU from the underlay interfaces. */
  mssClamp?: MssClampSetting | undefined;
  /** --ipsec-strict; default off. */
  strictMode?: StrictMode | undefined;
  xfrmStat: () => Promise<XfrmStat>;
  log: LoopLogger;
  metrics?: DaemonMetrics | undefined;
  /** Called with the status after every step (status file, /status). */
  onStatus?: ((status: DaemonStatus) => Promise<void> | void) | undefined;
  /** Persists the key history after it changed. */
  saveKeys?: ((saved: unknown) => Promise<void>) | undefined;
  now?: () => number;
  resyncMs?: number;
  retryMs?: number;
}

export class ReconcileLoop {
  private status: DaemonStatus;
  /** The "programs ask the trie" warning was logged and still holds (logged once per occurrence). */
  private cidrFallbackLogged = false;
  private readonly scheduler: StepScheduler;
  private readonly now: () => number;
  private keysDirty = false;
  private rotation: DaemonStatus['rotation'];

  constructor(private readonly deps: LoopDeps) {
    this.now = deps.now ?? Date.now;
    this.status = emptyStatus(deps.nodeName, deps.source.description, deps.ipsec !== undefined);
    this.scheduler = new StepScheduler({
      step: (reason) => this.step(reason),
      resyncMs: deps.resyncMs,
      retryMs: deps.retryMs,
    });
  }

  /** Sets where the key in force comes from (the key-file watcher, created after the loop). */
  setKeyFile(keyFile: LoopDeps['keyFile']): void {
    this.deps.keyFile = keyFile;
  }

  currentStatus(): DaemonStatus {
    return this.status;
  }

  start(): void {
    this.scheduler.start();
  }

  /** Stops triggering and waits for a step in progress; leaves the datapath and XFRM state in place. */
  stop(): Promise<void> {
    return this.scheduler.stop();
  }

  /** A key-file event: feed the key to the IPsec side (which may refuse it) and reconcile. */
  keyEvent(event: KeyFileEvent): void {
    const ipsec = this.deps.ipsec;
    if (event.kind === 'key') {
      if (ipsec) {
        const refused = ipsec.addKey(event.key);
        if (refused !== undefined) {
          this.deps.log.error({ spi: event.key.spi }, `secret refused: ${refused}`);
        } else {
          this.deps.log.info({ spi: event.key.spi }, 'IPsec key loaded');
          this.keysDirty = true;
          if (this.rotation?.spi !== event.key.spi) {
            this.rotation = { spi: event.key.spi, seenAt: this.now(), convergedAt: undefined };
          }
        }
      }
    } else if (event.kind === 'invalid') {
      this.deps.log.warn({ keptSpi: event.keptSpi ?? null }, `secret file invalid: ${event.reason}`);
    } else {
      this.deps.log.info({ keptSpi: event.keptSpi ?? null }, 'secret file absent');
    }
    this.trigger(`key file ${event.kind}`);
  }

  /** Asks for a step; coalesces with one already pending. */
  trigger(reason: string): void {
    this.scheduler.trigger(reason);
  }

  /** Resolves when no step is running or pending (tests use it). */
  idle(): Promise<void> {
    return this.scheduler.idle();
  }

  /** One full step; resolves false when it had errors (the scheduler retries it). */
  private async step(reason: string): Promise<boolean> {
    const started = this.now();
    const { deps } = this;
    let view: ClusterView;
    try {
      view = deps.source.view();
    } catch (err) {
      view = {
        node: undefined,
        nodeInfos: [],
        pods: [],
        namespaces: [],
        synced: false,
        problems: [`cannot read the cluster view: ${(err as Error).message}`],
      };
    }
    const problems = [...view.problems];
    const next: DaemonStatus = {
      ...this.status,
      synced: view.synced,
      steps: this.status.steps + 1,
      problems,
      invalidPeers: [],
      rotation: this.rotation,
    };
    const outcome = { failed: false };
    const fail = (line: string): void => {
      outcome.failed = true;
      problems.push(line);
    };
    try {
      // Managed pods and where they are.
      const pods = managedPods(view.pods, view.namespaces, deps.nodeName);
      next.managedPods = pods.map((p) => `${p.namespace}/${p.name}`);
      const node = view.node;
      const keyStatus = deps.keyFile?.status();
      next.keySpi = keyStatus?.spi;
      next.keyProblem = keyStatus?.problem ?? '';
      if (!view.synced) {
        problems.push(`waiting for the first listing from ${deps.source.description}`);
      } else if (node === undefined) {
        problems.push(`node ${deps.nodeName} not found in ${deps.source.description}`);
      } else if (deps.ipsec && deps.datapath) {
        const gap = nodeFactsGap(node);
        if (gap !== '') {
          problems.push(`node ${deps.nodeName}: ${gap}`);
        } else {
          await this.ipsecStep(next, view, node, pods, fail);
        }
      }
      next.xfrmStat = deps.ipsec ? await deps.xfrmStat() : {};
    } catch (err) {
      fail(`step failed: ${firstLine(err)}`);
    }
    if (this.keysDirty && deps.ipsec && deps.saveKeys) {
      try {
        await deps.saveKeys(deps.ipsec.exportKeys());
        this.keysDirty = false;
      } catch (err) {
        fail(`cannot save key history: ${(err as Error).message}`);
      }
    }
    next.lastStepAt = this.now();
    next.lastStepMs = next.lastStepAt - started;
    this.status = next;
    deps.metrics?.steps.inc({ result: outcome.failed ? 'error' : 'ok' });
    deps.metrics?.stepSeconds.observe(next.lastStepMs / 1000);
    deps.metrics?.update(next);
    const summary = {
      reason,
      step: next.steps,
      ms: next.lastStepMs,
      advertisedSpi: next.advertisedSpi ?? null,
      peers: next.peers.map((p) => `${p.name}:${p.outboundSpi ?? '-'}`),
      managedPods: next.managedPods.length,
      attachments: next.attachments.length,
      problems,
    };
    if (outcome.failed) deps.log.warn(summary, 'reconcile step had errors');
    else deps.log.debug(summary, 'reconcile step');
    try {
      await deps.onStatus?.(next);
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'cannot publish status');
    }
    return !outcome.failed;
  }

  private async ipsecStep(
    next: DaemonStatus,
    view: ClusterView,
    node: NodeFacts,
    pods: ReturnType<typeof managedPods>,
    fail: (line: string) => void,
  ): Promise<void> {
    const { deps } = this;
    const ipsec = deps.ipsec;
    const datapath = deps.datapath;
    if (!ipsec || !datapath) return;
    // Peers: every other node's KmeshNodeInfo that validates; bad ones are reported and skipped.
    const peers: NodeInfo[] = [];
    let ownPublished: unknown;
    for (const raw of view.nodeInfos) {
      if (raw.name === deps.nodeName) {
        ownPublished = raw.object;
        continue;
      }
      const parsed = deps.parseNodeInfo(raw.object);
      if ('ok' in parsed) peers.push(parsed.ok);
      else next.invalidPeers.push(parsed.error);
    }
    const local = { name: node.name, addresses: node.addresses, bootID: node.bootID, podCIDRs: node.podCIDRs };
    let result: IpsecStepResult;
    try {
      const publishedSpi = ownPublished === undefined ? 0 : publishedSpiOf(ownPublished);
      result = await ipsec.step({ local, peers, publishedSpi, now: this.now() });
      if (result.keysChanged) this.keysDirty = true;
    } catch (err) {
      fail(`xfrm: ${firstLine(err)}`);
      return;
    }
    for (const e of result.errors) fail(`xfrm: ${e}`);
    next.peers = result.peers;
    next.keySpis = ipsec.keySpis();
    if (result.changes > 0) deps.log.info({ changes: result.changes }, 'xfrm reconciled');

    // Datapath: programs on pod veths and underlays, km_nodeinfo = pod CIDRs of peers we can encrypt to.
    const ipv6 = pods.some((p) => p.podIPs.some((ip) => ip.includes(':')));
    const hostNet = await deps.hostNetwork({ ipv6 });
    const resolved = resolvePodInterfaces(hostNet, pods);
    next.unresolvedPods = resolved.unresolved;
    const underlays = underlayInterfaces(hostNet, node.addresses);
    if (underlays.length === 0) fail(`no interface holds the node's InternalIPs ${node.addresses.join(', ')}`);
    const byName = new Map(peers.map((p) => [p.name, p]));
    const remoteCidrs = new Set<string>();
    const podPeers = new Map<string, number>();
    for (const status of result.peers) {
      const peer = byName.get(status.name);
      if (peer && status.outboundSpi !== undefined) for (const c of peer.podCIDRs) remoteCidrs.add(c);
      if (peer && status.peerId > 0) for (const c of peer.podCIDRs) podPeers.set(c, status.peerId);
    }
    const strict = deps.strictMode ?? 'off';
    next.strictMode = strict;
    const mss = decideMssClamp(deps.mssClamp ?? { enabled: true, mtu: 'auto' }, underlays);
    // A configuration problem, not a failed step: retrying at once would not fix it (the resync re-derives it).
    if (mss.problem !== undefined) next.problems.push(mss.problem);
    next.mssClamp = mss.status;
    const report = await datapath.sync({
      encrypt: resolved.interfaces.map((i) => ({ name: i.ifname, ifindex: i.ifindex })),
      decrypt: underlays.map((l) => ({ name: l.name, ifindex: l.ifindex })),
      remoteCidrs: [...remoteCidrs].sort(),
      peerIds: result.peerIds,
      mssClamp: mss.clamp,
      strict,
      localPods: [...new Set(pods.flatMap((p) => p.podIPs))].sort(),
      podPeers,
    });
    const names = new Map(result.peers.map((p) => [p.peerId, p.name]));
    next.plaintext = (report.plaintext ?? []).map((c) => ({
      peer: names.get(c.peer) ?? '',
      peerId: c.peer,
      action: c.mode,
      packets: c.packets,
    }));
    next.attachments = report.attachments;
    next.cidrIndex = report.cidrIndex;
    const onTrie = report.cidrIndex === null && remoteCidrs.size > 0;
    if (onTrie && !this.cidrFallbackLogged) {
      deps.log.warn(
        { remoteCidrs: remoteCidrs.size },
        'remote-CIDR index not installed (over its capacity, or its install failed: see problems): ' +
          'TC programs use the km_nodeinfo LPM trie',
      );
    }
    this.cidrFallbackLogged = onTrie;
    for (const e of report.errors) fail(`datapath: ${e}`);

    // Publish our SPI once our inbound SAs for it exist (the IPsec side only returns it then).
    next.advertisedSpi = result.advertiseSpi;
    if (result.advertiseSpi !== undefined) {
      const info: NodeInfo = { ...local, spi: result.advertiseSpi };
      if (ownPublished === undefined || !nodeInfoUpToDate(ownPublished, info)) {
        try {
          await deps.source.publishNodeInfo(info);
          deps.log.info({ spi: info.spi }, 'published KmeshNodeInfo');
        } catch (err) {
          fail(`publish KmeshNodeInfo: ${firstLine(err)}`);
        }
      }
    }
    const rotation = this.rotation;
    if (
      rotation === undefined ||
      rotation.convergedAt !== undefined ||
      !rotationConverged(next, rotation.spi) ||
      next.advertisedSpi !== rotation.spi
    ) {
      return;
    }
    const convergedAt = this.now();
    this.rotation = { ...rotation, convergedAt };
    next.rotation = this.rotation;
    deps.log.info(
      { spi: rotation.spi, seconds: (convergedAt - rotation.seenAt) / 1000, peers: next.peers.length },
      'rotation converged: every peer reached with the new SPI',
    );
  }
}

/** spec.spi of our own published KmeshNodeInfo, 0 when unusable. */
function publishedSpiOf(obj: unknown): number {
  const spi = (obj as { spec?: { spi?: unknown } } | null)?.spec?.spi;
  return typeof spi === 'number' && Number.isInteger(spi) && spi > 0 ? spi : 0;
}
