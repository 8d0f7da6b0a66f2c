// Which peers get series of their own in /metrics. Per-peer series cost every node a handful of series per peer:
// at 5,000 nodes ~35,000 per node and ~175 million across the cluster, far past what a Prometheus holds. So a node
// exports every peer's series while it has at most `limit` peers (--peer-metrics-limit, default 100), and beyond
// that only the peers with a problem, at most `limit` of them (the first by name, so the same peers stay named
// from one step to the next); the counts by SPI (metrics.ts) cover every peer whatever the limit. 0: none. Pure.

/** --peer-metrics-limit default: every peer's series in clusters of up to 101 nodes. */
export const DEFAULT_PEER_METRICS_LIMIT = 100;
/** --peer-metrics-limit upper bound (Kubernetes' largest clusters are 5,000 nodes). */
export const MAX_PEER_METRICS_LIMIT = 100_000;

/**
 * The peers (sorted by name, as a status lists them) whose series are exported: all of them when they are at
 * most `limit`, else the first `limit` of those `failing` says have a problem.
 */
export function peersWithSeries<T>(peers: readonly T[], limit: number, failing: (peer: T) => boolean): readonly T[] {
  if (peers.length <= limit) return peers;
  const chosen: T[] = [];
  for (let i = 0; i < peers.length && chosen.length < limit; i++) {
    const p = peers[i] as T;
    if (failing(p)) chosen.push(p);
  }
  return chosen;
}
