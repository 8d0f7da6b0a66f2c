// The cluster-wide view of `kmeshctl ipsec status`: which node advertises, holds and sends with which SPI, read
// from every KmeshNodeInfo (spec.spi and the status its daemon publishes, src/model/node-key-status.ts) and the
// Secret's SPI, with a one-line verdict. Pure. The cluster has converged on the Secret's SPI S when every node
// advertises S, holds nothing above S, sends only with S, knows every other node as a peer, reports no key
// problem, no failing peer and that it is ready (every XFRM object written, every TC program attached: it
// encrypts all it should); old SPIs still held are reported beside it ("old SPIs still held"), as they go only
// once every peer acknowledged. Knowing every other node matters: a node whose view of the cluster lags
// advertises S, sends with S to the peers it knows and is ready, yet has no SA for the node it has not seen, whose
// packets it drops (seen in the VM: "converged" reported while two nodes had not yet seen the third).
import { parseNodeKeyStatus, reportIntervalMs, type NodeKeyStatus } from '../model/node-key-status.js';
import { compareByName } from '../util/name-order.js';

export interface NodeKeyRow {
  name: string;
  /** spec.spi; undefined when the object has none that is valid. */
  advertisedSpi: number | undefined;
  /** The node's status; undefined when it publishes none (Kmesh's own daemon, or not yet). */
  report: NodeKeyStatus | undefined;
  /** Why the status could not be read, when so. */
  reportProblem?: string;
}

export interface ClusterKeyStatus {
  secretSpi: number | undefined;
  nodes: NodeKeyRow[];
  converged: boolean;
  /** Nodes that still hold an SPI older than the Secret's, each (empty once old SAs are gone everywhere). */
  oldSpisHeld: string[];
  /** One line: "converged on SPI 7" or what is missing and where (naming at most VERDICT_NODES nodes). */
  verdict: string;
  /** Per lagging node, what it lacks (one line each). */
  lagging: string[];
}

function nameOf(object: unknown): string {
  const name = (object as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  return typeof name === 'string' && name !== '' ? name : '(unnamed)';
}

function specSpi(object: unknown): number | undefined {
  const spi = (object as { spec?: { spi?: unknown } } | null)?.spec?.spi;
  return typeof spi === 'number' && Number.isInteger(spi) && spi > 0 ? spi : undefined;
}

export function nodeKeyRows(objects: readonly unknown[]): NodeKeyRow[] {
  return objects
    .map((object): NodeKeyRow => {
      const parsed = parseNodeKeyStatus(object);
      return {
        name: nameOf(object),
        advertisedSpi: specSpi(object),
        report: parsed !== undefined && 'ok' in parsed ? parsed.ok : undefined,
        ...(parsed !== undefined && 'error' in parsed ? { reportProblem: parsed.error } : {}),
      };
    })
    .sort(compareByName);
}

/**
 * How many nodes the one-line verdict names (lagging, or holding old SPIs); the others are counted. At 5,000 nodes
 * a verdict naming every lagging node was one line of ~300 KB, in the text output and in --wait's timeout error.
 * Every lagging node's line is in `lagging` (the JSON form), and the text form lists them when not all are named.
 */
export const VERDICT_NODES = 5;

/** One thing that keeps a node from having converged: its kind (counted across nodes) and its text. */
interface Gap {
  kind: GapKind;
  text: string;
}

/** The kinds of gap, as the verdict counts them ("N <kind>"), in the order a node's line gives them. */
const GAP_KINDS = {
  advertises: 'advertise another SPI',
  status: 'publish no readable status',
  notHeld: 'do not hold the SPI',
  above: 'hold a higher SPI',
  sends: 'send with another SPI',
  peers: 'know another number of peers',
  keyProblem: 'report a key problem',
  notReady: 'are not ready',
  failing: 'have failing peers',
} as const;
type GapKind = keyof typeof GAP_KINDS;

/** What keeps `row` from having converged on `spi` (none: it has). */
function gapsOf(row: NodeKeyRow, spi: number, otherNodes: number): Gap[] {
  const gaps: Gap[] = [];
  const gap = (kind: GapKind, text: string) => gaps.push({ kind, text });
  if (row.advertisedSpi !== spi) gap('advertises', `advertises SPI ${row.advertisedSpi ?? 'none'}`);
  const r = row.report;
  if (r === undefined) {
    gap('status', row.reportProblem !== undefined ? `status unreadable: ${row.reportProblem}` : 'publishes no status');
  } else {
    if (!r.heldSpis.includes(spi)) gap('notHeld', `does not hold SPI ${spi}`);
    if (r.highestSpi > spi) gap('above', `holds SPI ${r.highestSpi}, above the Secret's`);
    const others = r.sendSpis.filter((s) => s !== spi);
    if (others.length > 0) gap('sends', `still sends with SPI ${others.join(', ')}`);
    // A node writes a changed peer count at most once per reporting interval (status-write-timing.ts): in a
    // large cluster the count can lag a join or a leave by that much, which the line says.
    const interval = reportIntervalMs(otherNodes);
    const lagNote = interval >= 1000 ? ` (a count a node reports at most every ${Math.round(interval / 1000)} s)` : '';
    if (r.peerCount < otherNodes) {
      gap('peers', `knows ${r.peerCount} of ${otherNodes} peer${otherNodes === 1 ? '' : 's'}${lagNote}`);
    } else if (r.peerCount > otherNodes) {
      gap('peers', `knows ${r.peerCount} peers, ${r.peerCount - otherNodes} more than the cluster has${lagNote}`);
    }
    if (r.keyProblem !== '') gap('keyProblem', `key problem: ${r.keyProblem}`);
    if (r.notReady !== '') gap('notReady', `not ready: ${r.notReady}`);
    if (r.failingPeerCount > 0) {
      const named = r.failingPeers.map((p) => `${p.name} (${p.reason})`).join(', ');
      gap('failing', `${r.failingPeerCount} failing peer${r.failingPeerCount === 1 ? '' : 's'}: ${named}`);
    }
  }
  return gaps;
}

/** The first VERDICT_NODES of `items` joined by `separator`, and "and N more" for the rest. */
function named(items: readonly string[], separator: string): string {
  const shown = items.slice(0, VERDICT_NODES).join(separator);
  return items.length > VERDICT_NODES ? `${shown}${separator}and ${items.length - VERDICT_NODES} more` : shown;
}

/** "N advertise another SPI, M send with another SPI": how many lagging nodes have each kind of gap. */
function gapCounts(gaps: readonly (readonly Gap[])[]): string {
  const counts = new Map<GapKind, number>();
  for (const node of gaps) for (const g of node) counts.set(g.kind, (counts.get(g.kind) ?? 0) + 1);
  return (Object.keys(GAP_KINDS) as GapKind[])
    .filter((k) => counts.has(k))
    .map((k) => `${counts.get(k) ?? 0} ${GAP_KINDS[k]}`)
    .join(', ');
}

export function clusterKeyStatus(secretSpi: number | undefined, objects: readonly unknown[]): ClusterKeyStatus {
  const nodes = nodeKeyRows(objects);
  if (secretSpi === undefined) {
    return {
      secretSpi,
      nodes,
      converged: false,
      oldSpisHeld: [],
      lagging: [],
      verdict: 'no IPsec secret: create one with kmeshctl secret create',
    };
  }
  const lags = nodes
    .map((n) => ({ name: n.name, gaps: gapsOf(n, secretSpi, nodes.length - 1) }))
    .filter((l) => l.gaps.length > 0);
  const lagging = lags.map((l) => `${l.name}: ${l.gaps.map((g) => g.text).join('; ')}`);
  const oldSpisHeld = nodes.flatMap((n) => {
    const old = (n.report?.heldSpis ?? []).filter((spi) => spi < secretSpi);
    return old.length > 0 ? [`${n.name} (SPI ${old.join(', ')})`] : [];
  });
  const converged = nodes.length > 0 && lagging.length === 0;
  let verdict: string;
  if (nodes.length === 0) verdict = `no KmeshNodeInfo objects: no node runs the daemon yet (Secret SPI ${secretSpi})`;
  else if (!converged) {
    // Beyond VERDICT_NODES lagging nodes, how many have each kind of gap says more than the first few lines.
    const counts = lagging.length > VERDICT_NODES ? ` (${gapCounts(lags.map((l) => l.gaps))})` : '';
    verdict = `not converged on SPI ${secretSpi}: ${lagging.length} of ${nodes.length} node${nodes.length === 1 ? '' : 's'} lag${counts}: ${named(lagging, ' | ')}`;
  } else if (oldSpisHeld.length > 0) {
    verdict = `converged on SPI ${secretSpi}; old SPIs still held (removed once every peer acknowledged): ${named(oldSpisHeld, ', ')}`;
  } else verdict = `converged on SPI ${secretSpi}`;
  return { secretSpi, nodes, converged, oldSpisHeld, lagging, verdict };
}

function list(spis: readonly number[] | undefined): string {
  return spis === undefined ? '-' : spis.length === 0 ? '' : spis.join(',');
}

/** The text form: the Secret's SPI, one row per node, the verdict. */
export function formatClusterKeyStatus(s: ClusterKeyStatus, secretLocation: string): string {
  const header = ['NODE', 'ADVERTISED', 'HELD', 'SENDING', 'LAST ROTATION', 'CONVERGED AT', 'PEERS', 'FAILING PEERS'];
  const rows = s.nodes.map((n) => [
    n.name,
    n.advertisedSpi === undefined ? '-' : String(n.advertisedSpi),
    list(n.report?.heldSpis),
    list(n.report?.sendSpis),
    n.report?.lastRotation ? `SPI ${n.report.lastRotation.spi}` : '-',
    n.report?.lastRotation?.convergedAt ?? '-',
    n.report === undefined ? '-' : String(n.report.peerCount),
    n.report === undefined
      ? '-'
      : n.report.failingPeerCount === 0
        ? '0'
        : `${n.report.failingPeerCount} (${n.report.failingPeers.map((p) => p.name).join(', ')})`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const secret = s.secretSpi === undefined ? 'none' : `SPI ${s.secretSpi}`;
  // The verdict names the first VERDICT_NODES lagging nodes: when there are more, each one's line comes first.
  const lines =
    s.lagging.length > VERDICT_NODES ? [`Lagging nodes (${s.lagging.length}):`, ...s.lagging.map((l) => `  ${l}`)] : [];
  return (
    [`Secret ${secretLocation}: ${secret}`, line(header), ...rows.map(line), ...lines, s.verdict].join('\n') + '\n'
  );
}

/** The JSON form (`-o json`): the same facts, one object. */
export function clusterKeyStatusJson(s: ClusterKeyStatus): string {
  return (
    JSON.stringify(
      {
        secretSpi: s.secretSpi ?? null,
        converged: s.converged,
        verdict: s.verdict,
        lagging: s.lagging,
        oldSpisHeld: s.oldSpisHeld,
        nodes: s.nodes.map((n) => ({
          name: n.name,
          advertisedSpi: n.advertisedSpi ?? null,
          status: n.report ?? null,
          ...(n.reportProblem !== undefined ? { statusProblem: n.reportProblem } : {}),
        })),
      },
      null,
      2,
    ) + '\n'
  );
}
