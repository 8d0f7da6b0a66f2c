// IpsecPort over the IPsec controller (src/ipsec/node-controller.ts): keeps the key history (refusing a new
// key under a used SPI), runs one controller step per reconcile, maps its report onto the loop's per-peer
// status, and removes every XFRM object of ours on uninstall (a reconcile to the empty plan, which touches
// only objects our ownership rules claim).
import { KeyHistory } from '../keys/key-history.js';
import type { IpsecKey } from '../model/node.js';
import { IpsecController, type StepReport } from '../ipsec/node-controller.js';
import { reconcile } from '../ipsec/reconciler.js';
import type { XfrmKernel } from '../xfrm/types.js';
import type { IpsecPort, IpsecStepInput, IpsecStepResult, PeerStatus } from './ports.js';

export interface IpsecAdapterOptions {
  /** Milliseconds an SPI stays installed after this node and every peer moved past it (--rotation-grace). */
  graceMs: number;
}

export class IpsecAdapter implements IpsecPort {
  private history = KeyHistory.empty();
  private readonly controller: IpsecController;
  private lastReport: StepReport | undefined;
  private peerIdsHook: IpsecStepInput['onPeerIds'];

  constructor(
    private readonly kernel: XfrmKernel,
    options: IpsecAdapterOptions,
  ) {
    this.controller = new IpsecController(kernel, {
      graceMs: options.graceMs,
      onPeerIds: (ids) => this.peerIdsHook?.(new Map(ids.map((i) => [i.address, i.peerId]))),
    });
  }

  addKey(key: IpsecKey): string | undefined {
    try {
      this.history = this.history.with(key);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  keySpis(): number[] {
    return this.history.spis();
  }

  async step(input: IpsecStepInput): Promise<IpsecStepResult> {
    if (this.history.size === 0) {
      // No key yet: nothing of ours should exist beyond what an earlier run left for peers still using it,
      // and we cannot derive anything; report the peers without touching the kernel.
      return {
        advertiseSpi: undefined,
        keysChanged: false,
        peers: input.peers.map((p) => ({
          name: p.name,
          advertisedSpi: p.spi,
          outboundSpi: undefined,
          inboundSpis: [],
          peerId: 0,
          error: 'no IPsec key yet (create the secret: kmeshctl secret create)',
        })),
        changes: 0,
        errors: [],
      };
    }
    this.peerIdsHook = input.onPeerIds;
    const stepKeys = this.history;
    const report = await this.controller.step({
      local: { ...input.local, spi: input.publishedSpi },
      peers: input.peers,
      keys: stepKeys,
      now: input.now,
    });
    this.lastReport = report;
    const keysChanged = report.keys.spis().join(',') !== stepKeys.spis().join(',');
    // The step may have retired SPIs; keys added while it was in flight (a key-file event) are kept.
    let next = report.keys;
    for (const key of this.history.keys()) if (!stepKeys.has(key.spi)) next = next.with(key);
    this.history = next;
    const peers: PeerStatus[] = report.peers.map((p) => ({
      name: p.name,
      advertisedSpi: p.advertisedSpi,
      outboundSpi: p.planned ? p.sendSpi : undefined,
      inboundSpis: p.inboundSpis,
      peerId: p.peerId ?? 0,
      error: [...p.reasons, ...p.issues.map((i) => `${i.code}: ${i.what}: ${i.message}`)].join('; '),
    }));
    const errors = report.nodeWide.issues.map((i) => `${i.code}: ${i.what}: ${i.message}`);
    return { advertiseSpi: report.advertiseSpi, keysChanged, peers, changes: report.writes, errors };
  }

  /** Retirements still waiting for their grace period (for status). */
  pendingRetirements(): number[] {
    return this.lastReport?.pendingRetirements.map((p) => p.spi) ?? [];
  }

  exportKeys(): unknown {
    return this.history.toJSON();
  }

  importKeys(saved: unknown): void {
    let merged = KeyHistory.fromJSON(saved);
    for (const key of this.history.keys()) merged = merged.with(key);
    this.history = merged;
  }

  async uninstall(): Promise<number> {
    const report = await reconcile(this.kernel, { states: [], policies: [] });
    return report.writes;
  }
}
