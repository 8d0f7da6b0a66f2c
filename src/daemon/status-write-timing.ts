// When this node writes its KmeshNodeInfo status (src/model/node-key-status.ts). Every write is an event on every
// peer's watch: N daemons watching N objects, so a change every node makes at once costs N writes and N² events.
// A node's peer count and failing peers change on every node at once when one node joins, leaves or fails, and a
// cluster being brought up changes them at every step; written at once, a join in a 5,000-node cluster was 5,000
// writes and 25 million watch events, and a bring-up that many per step. So the status's fields are written by
// what they are for:
// - what peers act on (held and sending SPIs, the highest SPI, the key problem, the last rotation): at once, as
//   acknowledged retirement and SPI allocation need them;
// - a report that gets worse (the node becomes not ready, or a first peer fails): at once, so that the cluster
//   view (`kmeshctl ipsec status --wait`, which scripts gate on) never reads a node as fine while it knows it is not;
// - any other change of what the cluster view reports (the peer count, the failing peers while some fail, a
//   node becoming ready again): at most once per reporting interval, which grows with the cluster
//   (reportIntervalMs in node-key-status.ts: REPORT_MS_PER_PEER per peer, at most MAX_REPORT_INTERVAL_MS), so
//   that the whole cluster writes such reports at most ~1000 / REPORT_MS_PER_PEER times a second however large it
//   is. A small cluster sees them at once (3 nodes: 20 ms). Such a late report holds the verdict back: a peer count
//   behind a join or ahead of a leave reads as not converged, a node ready again reads as not ready for a while.
// Pure; the loop (loop.ts) writes, and asks for a step when a deferred report falls due.
import { reportIntervalMs, type FailingPeer, type NodeKeyStatus } from '../model/node-key-status.js';
import { sameItems } from '../model/same-items.js';

/** The write a status needs: none, now, or a report deferred by `inMs`. */
export type StatusWrite =
  { kind: 'none' } | { kind: 'now'; why: 'first' | 'protocol' | 'worse' | 'report' } | { kind: 'later'; inMs: number };

/** Whether two statuses agree on everything peers act on. */
function sameProtocol(a: NodeKeyStatus, b: NodeKeyStatus): boolean {
  const ra = a.lastRotation;
  const rb = b.lastRotation;
  return (
    sameItems(a.heldSpis, b.heldSpis) &&
    a.highestSpi === b.highestSpi &&
    sameItems(a.sendSpis, b.sendSpis) &&
    a.keyProblem === b.keyProblem &&
    (ra === undefined
      ? rb === undefined
      : rb !== undefined && ra.spi === rb.spi && ra.seenAt === rb.seenAt && ra.convergedAt === rb.convergedAt)
  );
}

/** Whether two statuses agree on what the cluster view reports. */
function sameReport(a: NodeKeyStatus, b: NodeKeyStatus): boolean {
  return (
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
