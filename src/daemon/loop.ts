// The level-triggered reconcile loop's domain step: every trigger (a source change, a key-file change, a timer)
// leads to one full step computed from current state only, in this order: read the cluster view (once: every
// part of the step sees the same one) and the key file's state; validate the peers; the IPsec step (XFRM
// reconcile; it returns the peer ids its inbound SAs were planned for; once planned and before writing, it lets the
// datapath admit new peers' ids and pod CIDRs, so their packets are accepted as soon as their SAs exist); the
// datapath sync from that result, the
// one writer of the datapath (decrypt attachments, km_ipsec_peers, km_nodeinfo and its index, km_local_pods,
// km_pod_peers, km_ipsec_config (strict mode, MSS clamp), encrypt attachments, then detaches); publish our SPI (only once our inbound SAs for it exist); read
// /proc/net/xfrm_stat; persist the key history when it changed; then report (status, metrics, log, status
// callback). The report says what failed and is loud about it: the step's result (ok / partial / error),
// readiness with its reasons, why our SPI is not advertised, and each refused XFRM operation with the kernel's
// errno and text; conditions that persist are logged when they appear and clear (condition-log.ts), not at
// every step. When steps run (coalescing, retry with backoff, periodic resync) is step-scheduler.ts's job.
// Nothing here touches the kernel directly.
import { sameNodeInfo, type IpsecKey, type NodeInfo } from '../model/node.js';
import type { StrictMode } from '../model/strict-mode.js';
import type { KeyFileEvent } from './key-file-watcher.js';
import { managedPods } from './managed-pods.js';
import type { DaemonMetrics } from './metrics.js';
import { decideMssClamp, type MssClampSetting } from './mss-clamp.js';
import { resolvePodInterfaces, underlayInterfaces, type HostNetwork } from './pod-interfaces.js';
import type { DatapathPort, IpsecPort, IpsecStepResult, PeerStatus, XfrmFailure } from './ports.js';
import { ConditionLog, type Condition } from './condition-log.js';
import { nodeFactsGap, nodeInfoUpToDate } from './sources/objects.js';
import type { ClusterSource, ClusterView, NodeFacts } from './sources/source.js';
import { emptyStatus, rotationConverged, type DaemonStatus, type StepResult } from './status.js';
import type { XfrmStat } from './xfrm-stat.js';
import { StepScheduler } from './step-scheduler.js';
import { adoptRotation, nodeKeyReport } from './node-key-report.js';
import { statusWrite } from './status-write-timing.js';
import { parseNodeKeyStatus, type NodeKeyStatus } from '../model/node-key-status.js';
import { firstLine } from '../util/first-line.js';

export interface LoopLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
  /** Whether a level is logged (pino's); a logger without it is taken to log everything. */
  isLevelEnabled?(level: string): boolean;
}

interface ParsedNodeInfo {
  parsed: ReturnType<LoopDeps['parseNodeInfo']>;
  report: ReturnType<typeof parseNodeKeyStatus>;
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
  /** Least time between the end of a step and the start of the next (--min-step-gap); default 0. */
  minStepGapMs?: number;
  /** Reminder interval of a condition that persists (default 10 minutes; see condition-log.ts). */
  conditionRepeatMs?: number;
}

/** XFRM failures listed one by one in `problems` before "and N more" (xfrmFailures has them all). */
const XFRM_PROBLEM_LINES = 10;

/** Everything a step learns on the way that its report needs (problems, readiness, conditions to log). */
interface StepOutcome {
  result: StepResult;
  notReady: string[];
  conditions: Condition[];
}

export class ReconcileLoop {
  private status: DaemonStatus;
  /** The "programs ask the trie" warning was logged and still holds (logged once per occurrence). */
  private cidrFallbackLogged = false;
  private readonly scheduler: StepScheduler;
  private readonly now: () => number;
  private keysDirty = false;
  private rotation: DaemonStatus['rotation'];
  private readonly conditions: ConditionLog;
  /** The rotation was checked against our own published status (a restarted daemon continues it). */
  private rotationAdopted = false;
  /** The secret's key the IPsec side refused (reused SPI, rollback), until the secret offers another. */
  private keyRefusal: { spi: number; reason: string } | undefined;
  private keyRefusals = 0;
  /**
   * What deps.parseNodeInfo and parseNodeKeyStatus gave for each raw KmeshNodeInfo object. Both are pure and
   * the sources hand out the same object while it is unchanged (the kube reflector's cache, the dir source's
   * per-file cache), so at 5,000 peers a step validates only what changed. Weak: a replaced object is forgotten.
   */
  private readonly parsedInfos = new WeakMap<object, ParsedNodeInfo>();
  /**
   * By name, the NodeInfo last handed out for each valid peer. A replaced object whose spec says the same (its
   * status changed: a peer acknowledging a key, or counting its peers) gets that NodeInfo again, so screening and
   * planning see the peer unchanged (they tell changes by object) and do nothing for it. In a rotation each peer
   * writes its status several times per spec write; at 5,000 peers a wave of such writes made each step screen and
   * plan every peer again.
   */
  private readonly lastInfos = new Map<string, NodeInfo>();
  /** When this daemon last wrote its KmeshNodeInfo status (this.now()), undefined before its first write. */
  private lastStatusWriteAt: number | undefined;
  /**
   * The SPIs the last step's status said this node sends with, written or not: a write may leave an added SPI for
   * later (status-write-timing.ts), and a step that is unsure what the kernel sends with keeps those too.
   */
  private lastSending: readonly number[] = [];
  /** The last status's peer reports as a record, with its size (peerReportsRecord). */
  private lastPeerReports: { size: number; record: Record<string, NodeKeyStatus> } | undefined;

  constructor(private readonly deps: LoopDeps) {
    this.now = deps.now ?? Date.now;
    this.status = emptyStatus(deps.nodeName, deps.source.description, deps.ipsec !== undefined);
    this.conditions = new ConditionLog(deps.log, { repeatMs: deps.conditionRepeatMs });
    this.scheduler = new StepScheduler({
      step: (reason) => this.step(reason),
      resyncMs: deps.resyncMs,
      retryMs: deps.retryMs,
      minGapMs: deps.minStepGapMs,
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
          this.keyRefusal = { spi: event.key.spi, reason: refused };
          this.keyRefusals += 1;
          this.deps.metrics?.keyRefusals.inc();
        } else {
          this.keyRefusal = undefined;
          this.deps.log.info({ spi: event.key.spi }, 'IPsec key loaded');
          this.keysDirty = true;
          const newest = ipsec.keySpis().at(-1);
          if (this.rotation?.spi !== event.key.spi && event.key.spi === newest) {
            this.rotation = { spi: event.key.spi, seenAt: this.now(), convergedAt: undefined };
            this.rotationAdopted = false;
          }
        }
      }
    } else if (event.kind === 'invalid') {
      this.deps.log.warn({ keptSpi: event.keptSpi ?? null }, `secret file invalid: ${event.reason}`);
    } else {
      this.keyRefusal = undefined;
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

  /** One full step; resolves false when it was not ok (the scheduler retries it). */
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
      nodeProblem: '',
      notAdvertising: '',
      xfrmFailures: [],
      keyRefusals: this.keyRefusals,
      statusReportDueInMs: null,
    };
    const outcome: StepOutcome = { result: 'ok', notReady: [], conditions: [] };
    /** Something failed; `result` says whether the step went on (partial) or a part could not run (error). */
    const fail = (line: string, result: 'partial' | 'error' = 'partial', affectsReady = true): void => {
      if (outcome.result !== 'error') outcome.result = result;
      problems.push(line);
      if (affectsReady) outcome.notReady.push(line);
      outcome.conditions.push({
        key: `problem:${line}`,
        level: 'warn',
        msg: line,
        fields: {},
        clearedMsg: `resolved: ${line}`,
      });
    };
    try {
      // Managed pods and where they are.
      const pods = managedPods(view.pods, view.namespaces, deps.nodeName);
      next.managedPods = pods.map((p) => `${p.namespace}/${p.name}`);
      const node = view.node;
      const keyStatus = deps.keyFile?.status();
      next.keySpi = keyStatus?.spi;
      next.keyProblem = keyStatus?.problem ?? '';
      this.keyInForce(next);
      if (!view.synced) {
        const line = `waiting for the first listing from ${deps.source.description}`;
        problems.push(line);
        outcome.notReady.push(line);
        next.notAdvertising = deps.ipsec ? line : '';
      } else {
        const gap =
          node === undefined
            ? `missing or unreadable in ${deps.source.description}`
            : deps.ipsec && deps.datapath
              ? nodeFactsGap(node)
              : '';
        if (gap !== '') this.nodeUnusable(next, outcome, gap);
        else if (node !== undefined && deps.ipsec && deps.datapath) {
          await this.ipsecStep(next, view, node, pods, fail, outcome);
        }
      }
      next.xfrmStat = deps.ipsec ? await deps.xfrmStat() : {};
    } catch (err) {
      fail(`step failed: ${firstLine(err)}`, 'error');
    }
    if (this.keysDirty && deps.ipsec && deps.saveKeys) {
      try {
        await deps.saveKeys(deps.ipsec.exportKeys());
        this.keysDirty = false;
      } catch (err) {
        fail(`cannot save key history: ${(err as Error).message}`, 'partial', false);
      }
    }
    for (const line of view.problems) {
      outcome.conditions.push({
        key: `source:${line}`,
        level: 'warn',
        msg: line,
        fields: {},
        clearedMsg: `resolved: ${line}`,
      });
    }
    for (const line of next.invalidPeers) {
      outcome.conditions.push({
        key: `peer:${line}`,
        level: 'warn',
        msg: `invalid peer KmeshNodeInfo skipped: ${line}`,
        fields: {},
        clearedMsg: `peer KmeshNodeInfo no longer invalid: ${line}`,
      });
    }
    if (next.notAdvertising !== '') {
      outcome.conditions.push({
        key: 'advertise',
        level: 'warn',
        msg: `not advertising our SPI: ${next.notAdvertising}`,
        fields: { advertisedSpi: next.advertisedSpi ?? null },
        clearedMsg: 'advertising the newest SPI again',
      });
    }
    next.lastStepAt = this.now();
    next.lastStepMs = next.lastStepAt - started;
    next.lastStepResult = outcome.result;
    next.notReady = outcome.notReady;
    next.ready = outcome.notReady.length === 0;
    this.logReadiness(this.status, next);
    this.conditions.update(outcome.conditions, next.lastStepAt);
    this.status = next;
    deps.metrics?.steps.inc({ result: outcome.result });
    deps.metrics?.stepSeconds.observe(next.lastStepMs / 1000);
    deps.metrics?.update(next);
    // What is wrong was logged by the condition log when it began; the per-step summary is debug only, and built
    // only then (a text per peer: 5,000 of them per step otherwise, for nothing).
    if (deps.log.isLevelEnabled?.('debug') ?? true) {
      const summary = {
        reason,
        step: next.steps,
        ms: next.lastStepMs,
        advertisedSpi: next.advertisedSpi ?? null,
        peers: next.peers.map((p) => `${p.name}:${p.outboundSpi ?? '-'}`),
        managedPods: next.managedPods.length,
        attachments: next.attachments.length,
        problems,
        result: outcome.result,
        ready: next.ready,
      };
      deps.log.debug(summary, 'reconcile step');
    }
    try {
      await deps.onStatus?.(next);
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'cannot publish status');
    }
    return outcome.result === 'ok';
  }

  /** The own Node object is missing or lacks what IPsec needs: a problem, not ready, logged once per change. */
  private nodeUnusable(next: DaemonStatus, outcome: StepOutcome, gap: string): void {
    const { deps } = this;
    const line = `node ${deps.nodeName}: ${gap}`;
    next.nodeProblem = gap;
    next.problems.push(line);
    outcome.notReady.push(line);
    if (deps.ipsec) next.notAdvertising = `own Node object unusable: ${gap}`;
    outcome.conditions.push({
      key: 'node',
      level: 'error',
      msg: `own Node object unusable: ${gap}`,
      fields: { node: deps.nodeName, source: deps.source.description },
      clearedMsg: 'own Node object usable again',
    });
  }

  /** Logs readiness when it flips (with the reasons), not at every step. */
  private logReadiness(before: DaemonStatus, next: DaemonStatus): void {
    if (next.ready === before.ready && before.steps > 0) return;
    if (next.ready) this.deps.log.info({}, 'ready (/status answers 200)');
    else this.deps.log.warn({ reasons: next.notReady }, 'not ready (/status answers 503)');
  }

  /** Reports the XFRM operations that failed: status, problem lines, readiness and one condition each. */
  private xfrmFailed(next: DaemonStatus, outcome: StepOutcome, failures: XfrmFailure[]): void {
    if (failures.length === 0) return;
    if (outcome.result === 'ok') outcome.result = 'partial';
    next.xfrmFailures = failures;
    const lines = failures.map(
      (f) =>
        `${f.peer ?? 'node-wide'}: ${f.object}: ${f.code}${f.errno === undefined ? '' : ` (errno ${f.errno})`}: ${f.message}`,
    );
    next.problems.push(...lines.slice(0, XFRM_PROBLEM_LINES).map((l) => `xfrm: ${l}`));
    if (lines.length > XFRM_PROBLEM_LINES) {
      next.problems.push(`xfrm: and ${lines.length - XFRM_PROBLEM_LINES} more failed operations (see xfrmFailures)`);
    }
    const peers = [...new Set(failures.map((f) => f.peer ?? 'node-wide'))];
    const count = `${failures.length} XFRM operation${failures.length === 1 ? '' : 's'} failed`;
    outcome.notReady.push(`${count} (${peers.join(', ')}); first: ${lines[0] ?? ''}`);
    for (const f of failures) {
      outcome.conditions.push({
        key: `xfrm:${f.peer ?? ''}|${f.object}|${f.errno ?? f.code}`,
        level: 'error',
        msg:
          f.errno === undefined
            ? 'XFRM object not written: a foreign object is in the way'
            : 'XFRM operation refused by the kernel',
        fields: { peer: f.peer, object: f.object, errno: f.errno ?? null, code: f.code, kernel: f.message },
        clearedMsg: 'XFRM operation no longer failing',
      });
    }
  }

  /**
   * The peers' reports as the status's record: the last step's record when every peer's report is the very object
   * it holds (parseNodeInfo hands out the same report while a peer's object is unchanged), else a new one. A
   * status is never written to once made, so records are shared between statuses.
   */
  private peerReportsRecord(reports: ReadonlyMap<string, NodeKeyStatus>): Record<string, NodeKeyStatus> {
    const last = this.lastPeerReports;
    if (last !== undefined && last.size === reports.size) {
      let differing = 0;
      reports.forEach((r, name) => {
        if (last.record[name] !== r) differing++;
      });
      if (differing === 0) return last.record;
    }
    const record = Object.fromEntries(reports);
    this.lastPeerReports = { size: reports.size, record };
    return record;
  }

  /** A peer's KmeshNodeInfo validated, and its status read when it is valid (memoised by object identity). */
  private parseNodeInfo(object: unknown): ParsedNodeInfo {
    const key = typeof object === 'object' && object !== null ? object : undefined;
    const known = key === undefined ? undefined : this.parsedInfos.get(key);
    if (known !== undefined) return known;
    let parsed = this.deps.parseNodeInfo(object);
    if ('ok' in parsed) {
      const last = this.lastInfos.get(parsed.ok.name);
      if (last !== undefined && sameNodeInfo(last, parsed.ok)) parsed = { ok: last };
      else this.lastInfos.set(parsed.ok.name, parsed.ok);
    }
    const result = { parsed, report: 'ok' in parsed ? parseNodeKeyStatus(object) : undefined };
    if (key !== undefined) this.parsedInfos.set(key, result);
    return result;
  }

  private async ipsecStep(
    next: DaemonStatus,
    view: ClusterView,
    node: NodeFacts,
    pods: ReturnType<typeof managedPods>,
    fail: (line: string, result?: 'partial' | 'error') => void,
    outcome: StepOutcome,
  ): Promise<void> {
    const { deps } = this;
    const ipsec = deps.ipsec;
    const datapath = deps.datapath;
    if (!ipsec || !datapath) return;
    // Peers: every other node's KmeshNodeInfo that validates; bad ones are reported and skipped.
    const peers: NodeInfo[] = [];
    let ownPublished: unknown;
    const peerReports = new Map<string, NodeKeyStatus>();
    // Indexed loops over what has an entry per peer, here and below: this runs once per step, before V8 optimises
    // it, and for-of then allocates an iterator result per element (~1 MiB per step at 5,000 peers).
    for (let i = 0; i < view.nodeInfos.length; i++) {
      const raw = view.nodeInfos[i] as ClusterView['nodeInfos'][number];
      if (raw.name === deps.nodeName) {
        ownPublished = raw.object;
        continue;
      }
      const { parsed, report } = this.parseNodeInfo(raw.object);
      if ('ok' in parsed) peers.push(parsed.ok);
      else next.invalidPeers.push(parsed.error);
      // A status we cannot read counts as none: that peer's old SPIs then wait for the grace period.
      if (report !== undefined && 'ok' in report) peerReports.set(raw.name, report.ok);
      else if (report !== undefined) next.problems.push(`KmeshNodeInfo ${raw.name}: status ignored: ${report.error}`);
    }
    if (this.rotation !== undefined && !this.rotationAdopted && ownPublished !== undefined) {
      this.rotation = adoptRotation(this.rotation, ownPublished);
      this.rotationAdopted = true;
      next.rotation = this.rotation;
    }
    const local = { name: node.name, addresses: node.addresses, bootID: node.bootID, podCIDRs: node.podCIDRs };
    const byName = new Map<string, NodeInfo>();
    for (let i = 0; i < peers.length; i++) byName.set((peers[i] as NodeInfo).name, peers[i] as NodeInfo);
    // The peers gone or no longer valid are forgotten (entries are deleted while iterating: Map allows it).
    if (this.lastInfos.size > byName.size) {
      this.lastInfos.forEach((_, name) => {
        if (!byName.has(name)) this.lastInfos.delete(name);
      });
    }
    let result: IpsecStepResult;
    try {
      const publishedSpi = ownPublished === undefined ? 0 : publishedSpiOf(ownPublished);
      result = await ipsec.step({
        local,
        peers,
        publishedSpi,
        now: this.now(),
        peerReports: reportsOf(peerReports),
        // The decrypt program's side of new peers before their SAs and policies exist (datapath-port.ts: admit).
        beforeApply: async (planned) => {
          const cidrs: string[] = [];
          for (const name of planned.names) for (const c of byName.get(name)?.podCIDRs ?? []) cidrs.push(c);
          for (const e of await datapath.admit(planned.peerIds, cidrs)) fail(`datapath: ${e}`);
        },
      });
      if (result.keysChanged) this.keysDirty = true;
    } catch (err) {
      fail(`xfrm: ${firstLine(err)}`, 'error');
      next.notAdvertising = `the XFRM step failed: ${firstLine(err)}`;
      return;
    }
    this.xfrmFailed(next, outcome, result.failures);
    next.peers = result.peers;
    next.keySpis = ipsec.keySpis();
    if (next.keySpis.length === 0) {
      const line = 'no IPsec key (create the secret: kmeshctl secret create)';
      outcome.notReady.push(line);
      next.notAdvertising = line;
    } else {
      next.notAdvertising = result.advertiseWait;
    }
    next.pendingRetirements = result.pendingRetirements ?? [];
    next.kernelRead = result.kernelRead ?? null;
    // An old SPI whose floor or grace period ends before the next resync: step again right then.
    const due = Math.min(...next.pendingRetirements.map((p) => p.retireAt));
    if (Number.isFinite(due)) this.scheduler.wakeIn(due - this.now() + 10);
    next.peerReports = this.peerReportsRecord(peerReports);
    // Only what the kernel accepted counts as a change; refusals are logged per object by the condition log.
    if (result.changes > 0) {
      deps.log.info(
        { changes: result.changes, failed: result.failures.length },
        result.failures.length === 0 ? 'xfrm reconciled' : 'xfrm partly reconciled',
      );
    }

    // Datapath: programs on pod veths and underlays, km_nodeinfo = pod CIDRs of peers we can encrypt to.
    const ipv6 = pods.some((p) => p.podIPs.some((ip) => ip.includes(':')));
    const hostNet = await deps.hostNetwork({ ipv6 });
    const resolved = resolvePodInterfaces(hostNet, pods);
    next.unresolvedPods = resolved.unresolved;
    const underlays = underlayInterfaces(hostNet, node.addresses);
    if (underlays.length === 0) fail(`no interface holds the node's InternalIPs ${node.addresses.join(', ')}`);
    const remoteCidrs = new Set<string>();
    const podPeers = new Map<string, number>();
    for (let i = 0; i < result.peers.length; i++) {
      const status = result.peers[i] as PeerStatus;
      // Planned, installed or not: while an outbound SA is missing, marked packets meet the block policy
      // (dropped, never sent in clear).
      const peer = byName.get(status.name);
      if (peer === undefined) continue;
      const cidrs = peer.podCIDRs;
      if (status.plannedSendSpi !== undefined)
        for (let c = 0; c < cidrs.length; c++) remoteCidrs.add(cidrs[c] as string);
      if (status.peerId > 0) for (let c = 0; c < cidrs.length; c++) podPeers.set(cidrs[c] as string, status.peerId);
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
    // Peer names by id, for the plaintext counters only (none on most steps).
    const plaintext = report.plaintext ?? [];
    const names = plaintext.length === 0 ? undefined : new Map(result.peers.map((p) => [p.peerId, p.name]));
    next.plaintext = plaintext.map((c) => ({
      peer: names?.get(c.peer) ?? '',
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
    let published = ownPublished !== undefined;
    if (result.advertiseSpi !== undefined) {
      const info: NodeInfo = { ...local, spi: result.advertiseSpi };
      if (ownPublished === undefined || !nodeInfoUpToDate(ownPublished, info)) {
        try {
          await deps.source.publishNodeInfo(info);
          published = true;
          deps.log.info({ spi: info.spi }, 'published KmeshNodeInfo');
        } catch (err) {
          fail(`publish KmeshNodeInfo: ${firstLine(err)}`);
          // What peers see is still the object as it was.
          const published = ownPublished === undefined ? 0 : publishedSpiOf(ownPublished);
          next.advertisedSpi = published > 0 ? published : undefined;
          if (next.notAdvertising === '') next.notAdvertising = `cannot publish KmeshNodeInfo: ${firstLine(err)}`;
        }
      }
    }
    const rotation = this.rotation;
    if (
      rotation !== undefined &&
      rotation.convergedAt === undefined &&
      rotationConverged(next, rotation.spi) &&
      next.advertisedSpi === rotation.spi
    ) {
      const convergedAt = this.now();
      this.rotation = { ...rotation, convergedAt };
      next.rotation = this.rotation;
      deps.log.info(
        { spi: rotation.spi, seconds: (convergedAt - rotation.seenAt) / 1000, peers: next.peers.length },
        'rotation converged: every peer reached with the new SPI',
      );
    }
    // Report what we hold and send with in our KmeshNodeInfo status: peers retire an old SPI only once we
    // (and everyone else) no longer send with it.
    const previous = ownPublished === undefined ? undefined : parseNodeKeyStatus(ownPublished);
    const publishedSending = previous !== undefined && 'ok' in previous ? previous.ok.sendSpis : [];
    const keyReport = nodeKeyReport({
      heldSpis: next.keySpis,
      peers: next.peers,
      // Those published and those of the last step's report (an added SPI may not be written yet).
      previousSending: [...publishedSending, ...this.lastSending],
      keyProblem: next.keyProblem,
      notReady: outcome.notReady,
      rotation: this.rotation,
    });
    next.keyReport = keyReport;
    this.lastSending = keyReport.sendSpis;
    // What peers act on, and a report that gets worse, are written at once; any other change of what the cluster
    // view reports waits for the reporting interval, which grows with the cluster (status-write-timing.ts).
    const write = published
      ? statusWrite(
          previous !== undefined && 'ok' in previous ? previous.ok : undefined,
          keyReport,
          this.lastStatusWriteAt,
          this.now(),
          next.peers.length,
        )
      : ({ kind: 'none' } as const);
    if (write.kind === 'later') {
      next.statusReportDueInMs = write.inMs;
      this.scheduler.wakeIn(write.inMs + 10, 'status report due');
    }
    if (write.kind === 'now') {
      try {
        await deps.source.publishNodeStatus(keyReport);
        this.lastStatusWriteAt = this.now();
        deps.metrics?.statusWrites.inc({ why: write.why });
        deps.log.debug(
          { held: keyReport.heldSpis, sending: keyReport.sendSpis, why: write.why },
          'published KmeshNodeInfo status',
        );
      } catch (err) {
        fail(`publish KmeshNodeInfo status: ${firstLine(err)}`);
      }
    }
  }

  /**
   * The key in force is the newest the IPsec side holds: when the secret offers a key it refused (an SPI reused
   * for another key, a rollback) or an older SPI, the status says so and keySpi stays the key in force.
   */
  private keyInForce(next: DaemonStatus): void {
    const inForce = this.deps.ipsec?.keySpis().at(-1);
    const offered = next.keySpi;
    next.keyRefused = false;
    if (this.keyRefusal !== undefined && (offered === undefined || offered === this.keyRefusal.spi)) {
      next.keySpi = inForce;
      next.keyProblem = `secret key refused (SPI ${this.keyRefusal.spi}): ${this.keyRefusal.reason}`;
      next.keyRefused = true;
    } else if (next.keyProblem === '' && offered !== undefined && inForce !== undefined && offered < inForce) {
      next.keySpi = inForce;
      next.keyProblem = `the secret's SPI ${offered} is older than SPI ${inForce} in force; SPI ${inForce} stays in force`;
      next.keyRefused = true;
    }
  }
}

/** Per peer, the SPIs it reports sending with. */
function reportsOf(reports: ReadonlyMap<string, NodeKeyStatus>): Map<string, readonly number[]> {
  const sending = new Map<string, readonly number[]>();
  reports.forEach((r, name) => sending.set(name, r.sendSpis));
  return sending;
}

/** spec.spi of our own published KmeshNodeInfo, 0 when unusable. */
function publishedSpiOf(obj: unknown): number {
  const spi = (obj as { spec?: { spi?: unknown } } | null)?.spec?.spi;
  return typeof spi === 'number' && Number.isInteger(spi) && spi > 0 ? spi : 0;
}
