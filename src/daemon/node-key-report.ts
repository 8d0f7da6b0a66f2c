// What this node reports in its KmeshNodeInfo status (src/model/node-key-status.ts), computed from the step's
// result: the SPIs it holds, the SPIs it sends with, the last rotation and its failing peers. Pure. The SPIs sent
// with err on the side of "still sending": for a peer whose step had a problem (an out policy whose update may
// not have reached the kernel) the SPIs reported before (published, or computed by the last step and left for a
// later write) stay in the list while they are held, so no peer retires an SPI this node might still be using.
import { nodeKeyStatus, parseNodeKeyStatus, type NodeKeyStatus } from '../model/node-key-status.js';
import type { PeerStatus } from './ports.js';
import type { RotationStatus } from './status.js';

export interface NodeKeyReportInput {
  heldSpis: readonly number[];
  peers: readonly PeerStatus[];
  /** The SPIs sent with in the status published before and in the last step's report (undefined: neither). */
  previousSending: readonly number[] | undefined;
  keyProblem: string;
  /** The step's readiness reasons so far (none: this node encrypts all it should). */
  notReady: readonly string[];
  rotation: RotationStatus | undefined;
}

export function nodeKeyReport(input: NodeKeyReportInput): NodeKeyStatus {
  const held = new Set(input.heldSpis);
  const sending = new Set<number>();
  let unsure = false;
  for (const p of input.peers) {
    if (p.outboundSpi !== undefined) sending.add(p.outboundSpi);
    if (p.error !== '') unsure = true;
  }
  if (unsure) for (const spi of input.previousSending ?? []) if (held.has(spi)) sending.add(spi);
  const r = input.rotation;
  return nodeKeyStatus({
    heldSpis: input.heldSpis,
    sendSpis: [...sending],
    keyProblem: input.keyProblem,
    notReady: input.notReady,
    lastRotation:
      r === undefined
        ? undefined
        : {
            spi: r.spi,
            seenAt: new Date(r.seenAt).toISOString(),
            ...(r.convergedAt !== undefined ? { convergedAt: new Date(r.convergedAt).toISOString() } : {}),
          },
    peerCount: input.peers.length,
    failingPeers: input.peers.filter((p) => p.error !== '').map((p) => ({ name: p.name, reason: p.error })),
  });
}

/**
 * The rotation a restarted daemon continues: when its own published status already tells of the rotation to
 * `rotation.spi`, the times from there (so "seen" and "converged" are not reset by a restart).
 */
export function adoptRotation(rotation: RotationStatus, ownObject: unknown): RotationStatus {
  const parsed = parseNodeKeyStatus(ownObject);
  const last = parsed !== undefined && 'ok' in parsed ? parsed.ok.lastRotation : undefined;
  if (last === undefined || last.spi !== rotation.spi) return rotation;
  return {
    spi: rotation.spi,
    seenAt: Date.parse(last.seenAt),
    convergedAt: last.convergedAt !== undefined ? Date.parse(last.convergedAt) : rotation.convergedAt,
  };
}
