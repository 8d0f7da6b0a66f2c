// One entry point that glues screening, peer ids, the rotation protocol, the planner and the reconciler
// for a node. It owns what must survive between steps: the key history (the one copy: keys are added here,
// read here, and retired here when the rotation protocol says so), the peer-id allocation and the
// retirement clocks, and the kernel view its reconciler keeps between steps (kept-xfrm-view.ts: the kernel is
// dumped only when its change feed says someone else may have changed it); everything else is recomputed each
// step from its inputs (level-triggered). On the first
// step it recovers peer ids from the kernel's SAs, so a restarted daemon adopts its state with zero writes.
//
// Caller contract (the daemon):
//   - addKey() every key version read from the secret (and, at start, the persisted ones);
//   - pass `local.spi` = the SPI currently published in our KmeshNodeInfo, or leave it out and the
//     controller assumes the one it last returned was published;
//   - publish `report.advertiseSpi` when defined (inbound SAs for it are present for every current peer);
//   - persist `keys` after a step that retired SPIs (`report.retiredSpis`);
//   - write `report.peerAddressIds` into the decrypt program's peer map (the addresses its inbound SAs are for);
//     a new peer's entries (and its pod CIDRs) best before its SAs exist, through `beforeApply`.

import { KeyHistory } from '../keys/key-history.js';
import type { IpsecKey, NodeInfo } from '../model/node.js';
import type { XfrmKernel } from '../xfrm/types.js';
import { exactArray } from '../util/exact-array.js';
import { allocatePeerIds, recoverPeerIds } from './peer-ids.js';
import { screenPeers, type ScreenedPeer } from './peer-screen.js';
import {
  DEFAULT_PLANNER_OPTIONS,
  planScreened,
  type PeerPlan,
  type PlannedState,
  type PlannerOptions,
  type XfrmPlan,
} from './planner.js';
import { KeptXfrmView } from './kept-xfrm-view.js';
import type { OwnerOutcome, ReconcileIssue } from './reconciler.js';
import {
  chooseAdvertisedSpi,
  chooseSendSpi,
  DEFAULT_ACK_FLOOR_MS,
  DEFAULT_ACK_TIMEOUT_MS,
  DEFAULT_ROTATION_GRACE_MS,
  EMPTY_RETIREMENT,
  planRetirement,
  type PendingRetirement,
  type RetirementRule,
  type RetirementState,
} from './rotation.js';

export interface ControllerOptions extends PlannerOptions {
  /**
   * Milliseconds an SPI stays installed after everyone moved past it when some peer reports nothing, or with the
   * timer rule (default DEFAULT_ROTATION_GRACE_MS); the acknowledgement floor never exceeds it.
   */
  graceMs: number;
  /** 'acknowledged' (default): peers' reports decide; 'timer': the grace period alone (the old rule). */
  retirementRule: RetirementRule;
  /** Default DEFAULT_ACK_FLOOR_MS. */
  ackFloorMs: number;
  /** Longest wait for a peer still reporting an old SPI (default DEFAULT_ACK_TIMEOUT_MS). */
  ackTimeoutMs: number;
  /** A full dump of the kernel's tables at least this often (default DEFAULT_AUDIT_MS, kept-xfrm-view.ts). */
  auditMs?: number;
}

export interface StepInput {
  /** This node; `spi` = what our KmeshNodeInfo currently publishes (optional, 0 = nothing yet). */
  local: Omit<NodeInfo, 'spi'> & { spi?: number };
  /** Validated peers (parseNodeInfo); may include the local node, which is ignored. */
  peers: readonly NodeInfo[];
  /** Milliseconds on any monotonic clock. */
  now: number;
  /**
   * Per peer name, the SPIs it reports sending with (its KmeshNodeInfo status); a peer missing here reports
   * nothing (and its old SPIs wait for the grace period).
   */
  peerReports?: ReadonlyMap<string, readonly number[]>;
  /**
   * Called with the plan before any of it is written to the kernel: the caller readies what must exist before a
   * new peer's inbound SAs and policies do (the decrypt program's peer ids and remote pod CIDRs), so a packet
   * the peer sends once they exist is accepted, not decrypted and then dropped for want of a policy match.
   */
  beforeApply?: (plan: XfrmPlan) => Promise<void>;
}

export interface PeerStatus {
  name: string;
  /** SAs and policies were planned for this peer. */
  planned: boolean;
  /** Everything planned for this peer is in the kernel and nothing failed. */
  ok: boolean;
  peerId?: number;
  advertisedSpi: number;
  sendSpi?: number;
  /** SPIs whose inbound SAs from this peer are all present. */
  inboundSpis: number[];
  /** The outbound SAs for `sendSpi` are all in the kernel (false when nothing is planned or one is missing). */
  outboundInstalled: boolean;
  /** Why the peer is skipped, or notes (e.g. lagging peer). */
  reasons: string[];
  /** Kernel errors, conflicts and deferred changes for this peer. */
  issues: ReconcileIssue[];
}

/** A peer's status row and what it was made of. */
interface RowMemo {
  plan: PeerPlan;
  row: PeerStatus;
  /** No SA of the step was missing and the peer had no issue. */
  clean: boolean;
  /** The held SPIs the row was made for. */
  spis: string;
}

export interface StepReport {
  /** SPI to publish in our KmeshNodeInfo; undefined: publish nothing new yet. */
  advertiseSpi: number | undefined;
  /** SPIs whose SAs this step planned (the key history when the step began, minus those it retired). */
  heldSpis: number[];
  /** SPIs this step removed from the key history: persist the history again. */
  retiredSpis: number[];
  pendingRetirements: PendingRetirement[];
  peers: PeerStatus[];
  peerAddressIds: { address: string; peerId: number }[];
  nodeWide: OwnerOutcome;
  writes: number;
  unchanged: number;
  failed: number;
  foreign: { states: number; policies: number };
  /** Every planned object is in the kernel. */
  converged: boolean;
}

export class IpsecController {
  private readonly kernel: XfrmKernel;
  /** The reconciler, with the kernel view it keeps between steps. */
  readonly xfrm: KeptXfrmView;
  private readonly opts: ControllerOptions;
  private peerIds: Map<string, number> | undefined;
  private retirement: RetirementState = EMPTY_RETIREMENT;
  private lastAdvertised: number | undefined;
  private history = KeyHistory.empty();
  /** The last step's status rows, by peer, with what they were made of (reused when that is unchanged). */
  private rows = new Map<string, RowMemo>();

  constructor(kernel: XfrmKernel, opts: Partial<ControllerOptions> = {}) {
    this.kernel = kernel;
    this.xfrm = new KeptXfrmView(kernel, opts.auditMs === undefined ? {} : { auditMs: opts.auditMs });
    this.opts = {
      ...DEFAULT_PLANNER_OPTIONS,
      graceMs: DEFAULT_ROTATION_GRACE_MS,
      retirementRule: 'acknowledged',
      ackFloorMs: DEFAULT_ACK_FLOOR_MS,
      ackTimeoutMs: DEFAULT_ACK_TIMEOUT_MS,
      ...opts,
    };
  }

  /**
   * Adds a key version (from the secret, or persisted by an earlier run). Re-adding a held key changes nothing;
   * throws a one-line error for an invalid key, a different key under an SPI already held, or a key rollback: an
   * SPI below the newest held is accepted only as the exact key held for it (a retired or never-seen older SPI
   * would put a key nobody else may hold back into use). A key added while a step is in flight is planned by the
   * next step.
   */
  addKey(key: IpsecKey): void {
    const newest = this.history.current();
    if (newest !== undefined && key.spi < newest.spi && !this.history.has(key.spi)) {
      throw new Error(
        `IPsec key SPI ${key.spi} is older than SPI ${newest.spi} in force and not held any more: a key rollback is refused; a new key needs an SPI above ${newest.spi} (kmeshctl secret create)`,
      );
    }
    this.history = this.history.with(key);
  }

  /** The key history: every key version still held (persist it; it holds key material). */
  get keys(): KeyHistory {
    return this.history;
  }

  /** Current peer-id allocation (name -> id). */
  get peerIdAllocation(): ReadonlyMap<string, number> {
    return new Map(this.peerIds ?? []);
  }

  async step(input: StepInput): Promise<StepReport> {
    const now = input.now;
    const published = input.local.spi !== undefined && input.local.spi > 0 ? input.local.spi : this.lastAdvertised;
    const local: NodeInfo = { ...input.local, spi: published ?? 0 };
    const { accepted, rejected } = screenPeers(local, input.peers);
    if (!this.peerIds) {
      const dumped = await this.kernel.dumpStates();
      this.peerIds = recoverPeerIds(
        dumped,
        accepted.map((p) => ({ name: p.node.name, addresses: p.tunnels.map((t) => t.peerAddress) })),
        this.opts.reqid,
      );
    }
    const allocation = allocatePeerIds(
      this.peerIds,
      accepted.map((p) => p.node.name),
    );
    this.peerIds = allocation.ids;

    const history = this.history;
    const held = history.spis();
    const localAdvertised = published;
    // A loop, not flatMap: a list per peer at every step otherwise.
    const sendSpis: number[] = [];
    for (let i = 0; i < accepted.length; i++) {
      const choice = chooseSendSpi((accepted[i] as ScreenedPeer).node.spi, held);
      if (choice) sendSpis.push(choice.spi);
    }
    const decision = planRetirement(this.retirement, {
      held,
      localAdvertised,
      peerAdvertised: accepted.map((p) => p.node.spi),
      sendSpis,
      now,
      graceMs: this.opts.graceMs,
      peerReports: accepted.map((p) => ({ name: p.node.name, sending: input.peerReports?.get(p.node.name) })),
      rule: this.opts.retirementRule,
      ackFloorMs: this.opts.ackFloorMs,
      ackTimeoutMs: this.opts.ackTimeoutMs,
    });
    this.retirement = decision.state;
    // Retired SPIs leave the one history now; keys added since the step began stay for the next step.
    this.history = this.history.without(decision.retire);
    const keys = history.without(decision.retire);

    const plan = planScreened({ local, accepted, rejected, keys, peerIds: allocation.ids, options: this.opts });
    if (input.beforeApply) await input.beforeApply(plan);
    const result = await this.xfrm.reconcile(plan, {
      reqid: this.opts.reqid,
      blockPriority: this.opts.blockPriority,
    });

    const keySpis = keys.spis();
    // Each peer's states by direction, grouped when a row has to be computed (not in a step that changed nothing).
    let byOwner: { inbound: Map<string, PlannedState[]>; outbound: Map<string, PlannedState[]> } | undefined;
    const statesOf = (direction: 'inbound' | 'outbound', name: string): PlannedState[] => {
      if (byOwner === undefined) {
        byOwner = { inbound: new Map(), outbound: new Map() };
        for (const s of plan.states) {
          const map = s.direction === 'inbound' ? byOwner.inbound : byOwner.outbound;
          const list = map.get(s.owner);
          if (list) list.push(s);
          else map.set(s.owner, [s]);
        }
      }
      return byOwner[direction].get(name) ?? [];
    };
    const outboundInstalled = (name: string, spi: number | undefined): boolean => {
      const forSpi = statesOf('outbound', name).filter((s) => s.state.spi === spi);
      return forSpi.length > 0 && forSpi.every((s) => !result.missingStates.has(s));
    };
    const inboundSpisOf = (name: string): number[] => {
      const inbound = statesOf('inbound', name);
      // Kept in the peer's status row: at its exact size (src/util/exact-array.ts).
      return exactArray(
        keySpis.filter((spi) => {
          const forSpi = inbound.filter((s) => s.state.spi === spi);
          return forSpi.length > 0 && forSpi.every((s) => !result.missingStates.has(s));
        }),
      );
    };
    // A row is reused when nothing it is made of changed: the same peer plan (the planner hands out the same
    // object, with the same SAs, for an unchanged peer), no issue, and no SA missing now or when it was made.
    const spisText = keySpis.join(',');
    const clean = result.missingStates.size === 0;
    // The memos by name, updated in place (a new map of every peer per step otherwise), and made again only when
    // they hold peers the plan no longer has. (A memo kept for a peer that left is only reused for that very peer
    // plan, which a later plan does not hand out.)
    const rows = this.rows;
    const peers: PeerStatus[] = plan.peers.map((p) => {
      const outcome = result.perPeer.get(p.name);
      const last = rows.get(p.name);
      const quiet = outcome === undefined || (outcome.ok && outcome.issues.length === 0);
      if (last !== undefined && last.plan === p && last.clean && clean && quiet && last.spis === spisText) {
        return last.row;
      }
      const inboundSpis = p.planned ? inboundSpisOf(p.name) : [];
      const row: PeerStatus = {
        name: p.name,
        planned: p.planned,
        ok: p.planned && (outcome?.ok ?? true) && inboundSpis.length === keySpis.length,
        ...(p.peerId !== undefined ? { peerId: p.peerId } : {}),
        advertisedSpi: p.advertisedSpi,
        ...(p.sendSpi !== undefined ? { sendSpi: p.sendSpi } : {}),
        inboundSpis,
        outboundInstalled: p.planned && outboundInstalled(p.name, p.sendSpi),
        reasons: p.reasons,
        issues: outcome?.issues ?? [],
      };
      rows.set(p.name, { plan: p, row, clean: clean && quiet, spis: spisText });
      return row;
    });
    if (rows.size > peers.length) {
      const kept = new Map<string, RowMemo>();
      for (const p of plan.peers) {
        const memo = rows.get(p.name);
        if (memo !== undefined) kept.set(p.name, memo);
      }
      this.rows = kept;
    }
    const plannedPeers = peers.filter((p) => p.planned);
    const advertiseSpi = chooseAdvertisedSpi(keySpis, localAdvertised, (spi) =>
      plannedPeers.every((p) => p.inboundSpis.includes(spi)),
    );
    this.lastAdvertised = advertiseSpi;

    return {
      advertiseSpi,
      heldSpis: keySpis,
      retiredSpis: decision.retire,
      pendingRetirements: decision.pending,
      peers,
      peerAddressIds: plan.peerAddressIds,
      nodeWide: result.nodeWide,
      writes: result.writes,
      unchanged: result.unchanged,
      failed: result.failed,
      foreign: result.foreign,
      converged: result.missingStates.size === 0 && result.missingPolicies.size === 0 && result.nodeWide.ok,
    };
  }
}
