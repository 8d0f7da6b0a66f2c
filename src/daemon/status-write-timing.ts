// When this node writes its KmeshNodeInfo status (src/model/node-key-status.ts). Every write is an event on every
// peer's watch: N daemons watching N objects, so a change every node makes at once costs N writes and N² events.
// A node's peer count and failing peers change on every node at once when one node joins, leaves or fails, and a
// cluster being brought up changes them at every step; written at once, a join in a 5,000-node cluster was 5,000
// writes and 25 million watch events, and a bring-up that many per step. A rotation changes every node's SPIs
// three or four times. So the status's changes are written by what they are for:
// - what peers act on, at once:
//   - an SPI dropped from the SPIs sent with: the acknowledgement peers retire an old SPI on;
//   - an SPI other than the newest held added to them: a peer may retire an SPI that is not a node's newest, so
//     it must read that the node sends with it (a peer retires an SPI only once every node advertises one above
//     it, and no node advertises above its newest held SPI: so no peer retires a node's newest SPI, and a node
//     sending with its newest needs no acknowledgement for it);
//   - the highest SPI held (`kmeshctl secret create` never hands it out again), the key problem, the last rotation;
//   - an SPI added to the held ones: the cluster view's convergence on a new key needs it, and scripts wait on that
//     right after a rotation;
// - a report that gets worse (the node becomes not ready, or a first peer fails): at once, so that the cluster
//   view (`kmeshctl ipsec status --wait`, which scripts gate on) never reads a node as fine while it knows it is not;
// - any other change (the newest SPI added to the SPIs sent with; an SPI no longer held, the highest staying; the
//   peer count; the failing peers while some fail; a node becoming ready again): at most once per reporting
//   interval, which grows with the cluster (reportIntervalMs in node-key-status.ts: REPORT_MS_PER_PEER per peer, at
//   most MAX_REPORT_INTERVAL_MS), so that the whole cluster writes such reports at most ~1000 / REPORT_MS_PER_PEER
//   times a second however large it is. A small cluster sees them at once (3 nodes: 20 ms). Such a late report
//   holds the verdict back, never forward: a peer count behind a join or ahead of a leave reads as not converged, a
//   node ready again reads as not ready for a while, an old SPI retired reads as still held, and a node sending
//   with its new SPI while still sending with the old one reads as sending with the old one (it does), which the
//   next at-once write (the old one dropped) corrects. A rotation is then two writes at once per node (its key
//   added; its old SPI no longer sent with, which also says it sends with the new one) and its old key's
//   retirement as a report, where it was four writes at once (the new SPI sent with was one of them).
// The SPIs the loop reports as sent with err on the side of "still sending" over the last computed report, not
// only the published one (node-key-report.ts, loop.ts): an SPI a write left for later stays in them while a step
// is unsure, and once it is no longer the newest it is written at once.
// Pure; the loop (loop.ts) writes, and asks for a step when a deferred report falls due.
import { reportIntervalMs, type FailingPeer, type NodeKeyStatus } from '../model/node-key-status.js';
import { sameItems } from '../model/same-items.js';

/** The write a status needs: none, now, or a report deferred by `inMs`. */
export type StatusWrite =
  { kind: 'none' } | { kind: 'now'; why: 'first' | 'protocol' | 'worse' | 'report' } | { kind: 'later'; inMs: number };

/** Whether every item of `items` is in `of`. */
function within(items: readonly number[], of: readonly number[]): boolean {
  for (let i = 0; i < items.length; i++) if (!of.includes(items[i] as number)) return false;
  return true;
}

/** Whether `next` sends with an SPI `published` does not report other than `next`'s newest held SPI. */
function sendsWithAnotherOld(published: NodeKeyStatus, next: NodeKeyStatus): boolean {
  const newest = next.heldSpis[next.heldSpis.length - 1];
  for (let i = 0; i < next.sendSpis.length; i++) {
    const spi = next.sendSpis[i] as number;
    if (spi !== newest && !published.sendSpis.includes(spi)) return true;
  }
  return false;
}

/** Whether `next` says nothing new to peers against `published` (see the header for what they act on). */
function sameProtocol(published: NodeKeyStatus, next: NodeKeyStatus): boolean {
  const ra = published.lastRotation;
  const rb = next.lastRotation;
  return (
    within(next.heldSpis, published.heldSpis) &&
    published.highestSpi === next.highestSpi &&
    within(published.sendSpis, next.sendSpis) &&
    !sendsWithAnotherOld(published, next) &&
    published.keyProblem === next.keyProblem &&
    (ra === undefined
      ? rb === undefined
      : rb !== undefined && ra.spi === rb.spi && ra.seenAt === rb.seenAt && ra.convergedAt === rb.convergedAt)
  );
}

/** Whether two statuses agree on what the cluster view reports. */
function sameReport(a: NodeKeyStatus, b: NodeKeyStatus): boolean {
  return (
    sameItems(a.heldSpis, b.heldSpis) &&
    sameItems(a.sendSpis, b.sendSpis) &&
    a.peerCount === b.peerCount &&
    a.failingPeerCount === b.failingPeerCount &&
    a.notReady === b.notReady &&
    a.failingPeers.length === b.failingPeers.length &&
    a.failingPeers.every((p, i) => {
      const q = b.failingPeers[i] as FailingPeer;
      return p.name === q.name && p.reason === q.reason;
    })
  );
}

/** Whether `next` reports a problem where `published` reported none: not ready, or failing peers. */
function worse(published: NodeKeyStatus, next: NodeKeyStatus): boolean {
  return (
    (published.notReady === '' && next.notReady !== '') ||
    (published.failingPeerCount === 0 && next.failingPeerCount > 0)
  );
}

/**
 * The write `next` needs, given the status published (`published`: undefined when there is none that reads), when
 * this daemon last wrote one (`lastWriteAt`, undefined: not since it started) and the number of peers.
 */
export function statusWrite(
  published: NodeKeyStatus | undefined,
  next: NodeKeyStatus,
  lastWriteAt: number | undefined,
  now: number,
  peers: number,
): StatusWrite {
  if (published === undefined) return { kind: 'now', why: 'first' };
  if (!sameProtocol(published, next)) return { kind: 'now', why: 'protocol' };
  if (sameReport(published, next)) return { kind: 'none' };
  if (worse(published, next)) return { kind: 'now', why: 'worse' };
  const wait = lastWriteAt === undefined ? 0 : lastWriteAt + reportIntervalMs(peers) - now;
  return wait <= 0 ? { kind: 'now', why: 'report' } : { kind: 'later', inMs: wait };
}
