// IpsecPort over the IPsec controller (src/ipsec/node-controller.ts), which owns the key history: keys go
// straight to it, each reconcile is one controller step, and its report is mapped onto the loop's per-peer
// status and the peer ids for the datapath. Uninstall removes every XFRM object of ours (a reconcile to the
// empty plan, which touches only objects our ownership rules claim).
import { KeyHistory } from '../keys/key-history.js';
import type { IpsecKey } from '../model/node.js';
import { IpsecController, type StepReport } from '../ipsec/node-controller.js';
import type { RetirementRule } from '../ipsec/rotation.js';
import { reconcile, type ReconcileIssue } from '../ipsec/reconciler.js';
import type { XfrmPlan } from '../ipsec/planner.js';
import type { XfrmKernel } from '../xfrm/types.js';
import type { IpsecPort, IpsecStepInput, IpsecStepResult, PeerStatus, PlannedPeers, XfrmFailure } from './ports.js';
import { sameItems } from '../model/same-items.js';

export interface IpsecAdapterOptions {
  /** Milliseconds an SPI stays installed after this node and every peer moved past it (--rotation-grace). */
  graceMs: number;
  /** The command that creates the secret where this daemon reads it (default `kmeshctl secret create`). */
  createSecretCommand?: string;
  /** --rotation-retirement: 'acknowledged' (default) or 'timer' (the old grace-only rule). */
  retirementRule?: RetirementRule;
  /** --rotation-ack-timeout in ms: longest wait for a peer still reporting an old SPI. */
  ackTimeoutMs?: number;
  ackFloorMs?: number;
}

export class IpsecAdapter implements IpsecPort {
  private readonly controller: IpsecController;
  /**
   * Last step's peer rows by name. A row whose fields are unchanged is handed out again: rows live in the
   * status until the next step, so fresh ones were 5,000 objects of old-space garbage per step at 5,000 peers.
   */
  private lastRows = new Map<string, PeerStatus>();
  /** The last step's peer-id pairs and the map made of them (peerIdsOf). */
  private lastPeerIds: { pairs: readonly { address: string; peerId: number }[]; map: Map<string, number> } | undefined;
  private readonly createSecretCommand: string;

  constructor(
    private readonly kernel: XfrmKernel,
    options: IpsecAdapterOptions,
  ) {
    this.controller = new IpsecController(kernel, {
      graceMs: options.graceMs,
      ...(options.retirementRule !== undefined ? { retirementRule: options.retirementRule } : {}),
      ...(options.ackTimeoutMs !== undefined ? { ackTimeoutMs: options.ackTimeoutMs } : {}),
      ...(options.ackFloorMs !== undefined ? { ackFloorMs: options.ackFloorMs } : {}),
    });
    this.createSecretCommand = options.createSecretCommand ?? 'kmeshctl secret create';
  }

  addKey(key: IpsecKey): string | undefined {
    try {
      this.controller.addKey(key);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  keySpis(): number[] {
    return this.controller.keys.spis();
  }

  async step(input: IpsecStepInput): Promise<IpsecStepResult> {
    if (this.controller.keys.size === 0) {
      // No key yet: nothing of ours should exist beyond what an earlier run left for peers still using it,
      // and we cannot derive anything; report the peers without touching the kernel.
      return {
        advertiseSpi: undefined,
        keysChanged: false,
        peers: input.peers.map((p) => ({
          name: p.name,
          advertisedSpi: p.spi,
          outboundSpi: undefined,
          plannedSendSpi: undefined,
          inboundSpis: [],
          peerId: 0,
          error: `no IPsec key yet (create the secret: ${this.createSecretCommand})`,
        })),
        peerIds: new Map(),
        changes: 0,
        advertiseWait: '',
        failures: [],
      };
    }
    const report = await this.controller.step({
      local: { ...input.local, spi: input.publishedSpi },
      peers: input.peers,
      now: input.now,
      ...(input.peerReports !== undefined ? { peerReports: input.peerReports } : {}),
      ...(input.beforeApply !== undefined ? { beforeApply: beforeApplyOf(input.beforeApply) } : {}),
    });
    const peers = this.peerRows(report);
    // Only the peers with issues are looked at further (a list per peer, at every step, otherwise).
    const failures = failuresOf(null, report.nodeWide.issues);
    for (const p of report.peers) if (p.issues.length > 0) failures.push(...failuresOf(p.name, p.issues));
    return {
      advertiseSpi: report.advertiseSpi,
      keysChanged: report.retiredSpis.length > 0,
      peers,
      peerIds: this.peerIdsOf(report.peerAddressIds),
      changes: report.writes - report.failed,
      advertiseWait: advertiseWait(report),
      failures,
      kernelRead: { ...this.controller.xfrm.lastRead, dumps: this.controller.xfrm.dumps },
      pendingRetirements: report.pendingRetirements.map((p) => ({
        spi: p.spi,
        retireAt: p.retireAt,
        waitingFor:
          p.waitingFor === undefined
            ? ''
            : 'peers' in p.waitingFor
              ? `${p.waitingFor.peers.join(', ')} still ${p.waitingFor.peers.length === 1 ? 'sends' : 'send'} with it`
              : p.waitingFor.clock === 'grace'
                ? 'grace period'
                : 'acknowledgement floor',
      })),
    };
  }

  /**
   * Underlay address -> peer id: the last step's map when the plan gives the same pairs in the same order (most
   * steps), else a new one. Maps handed out are never written to (the datapath keeps the last one it wrote).
   */
  private peerIdsOf(pairs: readonly { address: string; peerId: number }[]): ReadonlyMap<string, number> {
    const last = this.lastPeerIds;
    if (last !== undefined && last.pairs.length === pairs.length) {
      let same = true;
      for (let i = 0; i < pairs.length && same; i++) {
        const a = pairs[i] as { address: string; peerId: number };
        const b = last.pairs[i] as { address: string; peerId: number };
        same = a === b || (a.address === b.address && a.peerId === b.peerId);
      }
      if (same) {
        last.pairs = pairs;
        return last.map;
      }
    }
    const map = new Map<string, number>();
    for (const p of pairs) map.set(p.address, p.peerId);
    this.lastPeerIds = { pairs, map };
    return map;
  }

  /**
   * The report's peers as status rows, last step's row objects where nothing in them changed. The rows by name are
   * kept in one map, updated in place (a new map of every peer per step otherwise); it is made again only when it
   * holds peers the report no longer has. (A row kept for a peer that left is only reused for a peer of that name
   * whose row would be equal to it.)
   */
  private peerRows(report: StepReport): PeerStatus[] {
    const rows = this.lastRows;
    const out = report.peers.map((p) => {
      const error =
        p.reasons.length === 0 && p.issues.length === 0
          ? ''
          : [...p.reasons, ...p.issues.map((i) => `${i.code}: ${i.what}: ${i.message}`)].join('; ');
      const outboundSpi = p.outboundInstalled ? p.sendSpi : undefined;
      const plannedSendSpi = p.planned ? p.sendSpi : undefined;
      const peerId = p.peerId ?? 0;
      const last = this.lastRows.get(p.name);
      const row =
        last !== undefined &&
        last.advertisedSpi === p.advertisedSpi &&
        last.outboundSpi === outboundSpi &&
        last.plannedSendSpi === plannedSendSpi &&
        last.peerId === peerId &&
        last.error === error &&
        sameItems(last.inboundSpis, p.inboundSpis)
          ? last
          : {
              name: p.name,
              advertisedSpi: p.advertisedSpi,
              outboundSpi,
              plannedSendSpi,
              inboundSpis: p.inboundSpis,
              peerId,
              error,
            };
      if (row !== last) rows.set(p.name, row);
      return row;
    });
    if (rows.size > out.length) this.lastRows = new Map(out.map((row) => [row.name, row]));
    return out;
  }

  exportKeys(): unknown {
    return this.controller.keys.toJSON();
  }

  importKeys(saved: unknown): void {
    for (const key of KeyHistory.fromJSON(saved).keys()) this.controller.addKey(key);
  }

  async uninstall(): Promise<number> {
    const report = await reconcile(this.kernel, { states: [], policies: [] });
    return report.writes;
  }
}

/** The controller's plan as the port's PlannedPeers: the planned peers' names and their inbound SAs' peer ids. */
function beforeApplyOf(hook: (planned: PlannedPeers) => Promise<void>): (plan: XfrmPlan) => Promise<void> {
  return (plan) =>
    hook({
      names: plan.peers.filter((p) => p.planned).map((p) => p.name),
      peerIds: plan.peerAddressIds,
    });
}

/** The failures among a reconcile's issues: all but DEFERRED (held back because of another failure, listed too). */
function failuresOf(peer: string | null, issues: readonly ReconcileIssue[]): XfrmFailure[] {
  return issues
    .filter((i) => i.code !== 'DEFERRED')
    .map((i) => ({ peer, object: i.what, errno: i.errno, code: i.code, message: i.message }));
}

/** How many peers the advertise-wait line names before "and N more". */
const WAIT_PEERS_NAMED = 3;

/**
 * Why the newest held SPI is not the one to advertise: the planned peers whose inbound SAs for it are missing,
 * each with its first failure. '' when it is advertised (or there is no key).
 */
function advertiseWait(report: StepReport): string {
  const newest = report.heldSpis[report.heldSpis.length - 1];
  if (newest === undefined || report.advertiseSpi === newest) return '';
  const missing = report.peers.filter((p) => p.planned && !p.inboundSpis.includes(newest));
  if (missing.length === 0) return `SPI ${newest} not advertised yet`;
  const named = missing.slice(0, WAIT_PEERS_NAMED).map((p) => {
    const cause = p.issues.find((i) => i.code !== 'DEFERRED');
    return cause ? `${p.name} (${cause.code}: ${cause.message})` : p.name;
  });
  const more = missing.length > named.length ? ` and ${missing.length - named.length} more` : '';
  return `SPI ${newest} not advertised yet: inbound SAs missing for ${named.join(', ')}${more}`;
}
