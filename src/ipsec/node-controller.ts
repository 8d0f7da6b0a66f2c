// One entry point that glues screening, peer ids, the rotation protocol, the planner and the reconciler
// for a node. It holds what must survive between steps (peer-id allocation, retirement clocks, retired
// SPIs); everything else is recomputed each step from its inputs (level-triggered). On the first step it
// recovers peer ids from the kernel's SAs, so a restarted daemon adopts its state with zero writes.
//
// Caller contract (the daemon):
//   - pass `local.spi` = the SPI currently published in our KmeshNodeInfo, or leave it out and the
//     controller assumes the one it last returned was published;
//   - publish `report.advertiseSpi` when defined (inbound SAs for it are present for every current peer);
//   - persist `report.keys` (retired SPIs removed) and pass it back as `keys` next time;
//   - write `report.peerAddressIds` (or use `onPeerIds`, called before the kernel is touched) into the
//     decrypt program's peer map.

import type { KeyHistory } from '../keys/key-history.js';
import type { NodeInfo } from '../model/node.js';
import type { XfrmKernel } from '../xfrm/types.js';
import { allocatePeerIds, recoverPeerIds } from './peer-ids.js';
import { screenPeers } from './peer-screen.js';
import { DEFAULT_PLANNER_OPTIONS, planScreened, type PlannedState, type PlannerOptions } from './planner.js';
import { reconcile, type OwnerOutcome, type ReconcileIssue } from './reconciler.js';
import {
  chooseAdvertisedSpi,
  chooseSendSpi,
  EMPTY_RETIREMENT,
  planRetirement,
  type PendingRetirement,
  type RetirementState,
} from './rotation.js';

export const DEFAULT_GRACE_MS = 120_000;

export interface ControllerOptions extends PlannerOptions {
  /** How long an SPI stays installed after everyone moved past it. */
  graceMs: number;
  /** Receives underlay address -> peer id before any XFRM change of the step. */
  onPeerIds?: (ids: readonly { address: string; peerId: number }[]) => void | Promise<void>;
}

export interface StepInput {
  /** This node; `spi` = what our KmeshNodeInfo currently publishes (optional, 0 = nothing yet). */
  local: Omit<NodeInfo, 'spi'> & { spi?: number };
  /** Validated peers (parseNodeInfo); may include the local node, which is ignored. */
  peers: readonly NodeInfo[];
  keys: KeyHistory;
  /** Milliseconds on any monotonic clock. */
  now: number;
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
  /** Why the peer is skipped, or notes (e.g. lagging peer). */
  reasons: string[];
  /** Kernel errors, conflicts and deferred changes for this peer. */
  issues: ReconcileIssue[];
}

export interface StepReport {
  /** SPI to publish in our KmeshNodeInfo; undefined: publish nothing new yet. */
  advertiseSpi: number | undefined;
  /** Key history without retired SPIs: persist it. */
  keys: KeyHistory;
  heldSpis: number[];
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
  private readonly opts: ControllerOptions;
  private peerIds: Map<string, number> | undefined;
  private retirement: RetirementState = EMPTY_RETIREMENT;
  private retired = new Set<number>();
  private lastAdvertised: number | undefined;

  constructor(kernel: XfrmKernel, opts: Partial<ControllerOptions> = {}) {
    this.kernel = kernel;
    this.opts = { ...DEFAULT_PLANNER_OPTIONS, graceMs: DEFAULT_GRACE_MS, ...opts };
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

    const inputSpis = new Set(input.keys.spis());
    this.retired = new Set([...this.retired].filter((spi) => inputSpis.has(spi)));
    const history = input.keys.without(this.retired);
    const held = history.spis();
    const localAdvertised = published;
    const sendSpis = accepted.flatMap((p) => {
      const choice = chooseSendSpi(p.node.spi, held);
      return choice ? [choice.spi] : [];
    });
    const decision = planRetirement(this.retirement, {
      held,
      localAdvertised,
      peerAdvertised: accepted.map((p) => p.node.spi),
      sendSpis,
      now,
      graceMs: this.opts.graceMs,
    });
    this.retirement = decision.state;
    for (const spi of decision.retire) this.retired.add(spi);
    const keys = history.without(decision.retire);

    const plan = planScreened({ local, accepted, rejected, keys, peerIds: allocation.ids, options: this.opts });
    if (this.opts.onPeerIds) await this.opts.onPeerIds(plan.peerAddressIds);
    const result = await reconcile(this.kernel, plan, {
      reqid: this.opts.reqid,
      blockPriority: this.opts.blockPriority,
    });

    const keySpis = keys.spis();
    const inboundByOwner = new Map<string, PlannedState[]>();
    for (const s of plan.states) {
      if (s.direction !== 'inbound') continue;
      const list = inboundByOwner.get(s.owner);
      if (list) list.push(s);
      else inboundByOwner.set(s.owner, [s]);
    }
    const inboundSpisOf = (name: string): number[] => {
      const inbound = inboundByOwner.get(name) ?? [];
      return keySpis.filter((spi) => {
        const forSpi = inbound.filter((s) => s.state.spi === spi);
        return forSpi.length > 0 && forSpi.every((s) => !result.missingStates.has(s));
      });
    };
    const peers: PeerStatus[] = plan.peers.map((p) => {
      const outcome = result.perPeer.get(p.name);
      const inboundSpis = p.planned ? inboundSpisOf(p.name) : [];
      return {
        name: p.name,
        planned: p.planned,
        ok: p.planned && (outcome?.ok ?? true) && inboundSpis.length === keySpis.length,
        ...(p.peerId !== undefined ? { peerId: p.peerId } : {}),
        advertisedSpi: p.advertisedSpi,
        ...(p.sendSpi !== undefined ? { sendSpi: p.sendSpi } : {}),
        inboundSpis,
        reasons: p.reasons,
        issues: outcome?.issues ?? [],
      };
    });
    const plannedPeers = peers.filter((p) => p.planned);
    const advertiseSpi = chooseAdvertisedSpi(keySpis, localAdvertised, (spi) =>
      plannedPeers.every((p) => p.inboundSpis.includes(spi)),
    );
    this.lastAdvertised = advertiseSpi;

    return {
      advertiseSpi,
      keys,
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
