// What a node reports about its IPsec keys in the `status` of its KmeshNodeInfo (Kmesh leaves `status` empty,
// so the spec stays exactly Kmesh's). Other nodes read it to retire an old SPI only once nobody sends with it
// (acknowledged retirement, src/ipsec/rotation.ts); `kmeshctl secret create` reads `highestSpi` so it never hands
// out an SPI a node already holds with another key; `kmeshctl ipsec status` shows it cluster-wide. The size is
// bounded whatever the number of peers: SPI lists hold at most MAX_STATUS_SPIS entries (the key history keeps a
// handful) and the failing peers are a count plus at most MAX_FAILING_PEERS names. Never key material.
import { isValidSpi } from './ipsec-key.js';

/**
 * Milliseconds of reporting interval per peer: a node writes a status that changed only in what the cluster view
 * reports (peer count, failing peers, readiness) at most once per interval (src/daemon/status-write-timing.ts).
 */
export const REPORT_MS_PER_PEER = 10;
/** The longest reporting interval (reached at 6,000 peers). */
export const MAX_REPORT_INTERVAL_MS = 60_000;

/** The least time between two writes of a status that differ only in what the cluster view reports. */
export function reportIntervalMs(peers: number): number {
  return Math.min(MAX_REPORT_INTERVAL_MS, Math.max(0, peers) * REPORT_MS_PER_PEER);
}

/** At most this many failing peers are named (the count is exact). */
export const MAX_FAILING_PEERS = 8;
/** At most this many SPIs per list (held, sending): the newest ones. */
export const MAX_STATUS_SPIS = 16;
/** A failing peer's reason is cut to this many characters. */
export const MAX_REASON_CHARS = 200;

export interface FailingPeer {
  name: string;
  /** One line: why this node cannot reach the peer with IPsec, as its /status says. */
  reason: string;
}

/** The last key rotation this node saw: times as RFC 3339 strings. */
export interface RotationFacts {
  spi: number;
  seenAt: string;
  /** When this node sent with `spi` to every peer; absent until then. */
  convergedAt?: string;
}

export interface NodeKeyStatus {
  /** SPIs of the keys this node holds (SAs installed for them), ascending. */
  heldSpis: number[];
  /** The highest SPI held (0: none): an SPI that must not be handed out again for another key. */
  highestSpi: number;
  /** SPIs this node currently encrypts with, to any peer, ascending. */
  sendSpis: number[];
  /** Why the Secret's key is not the one in force ('' when it is). */
  keyProblem: string;
  /**
   * Why this node cannot encrypt all it should right now, as its /status readiness says ('' when it can): an
   * XFRM object the kernel refused, a TC program not attached, no key. The first reason, with the count of
   * the others. A node is not converged while this is set, whatever its SPIs say.
   */
  notReady: string;
  lastRotation?: RotationFacts;
  /** Peers this node knows (valid KmeshNodeInfo objects other than its own). */
  peerCount: number;
  failingPeerCount: number;
  /** At most MAX_FAILING_PEERS, sorted by name. */
  failingPeers: FailingPeer[];
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function spiList(v: unknown, field: string): number[] {
  if (!Array.isArray(v)) throw new Error(`status.${field} is not a list`);
  const spis = v.map((x, i) => {
    if (typeof x !== 'number' || !isValidSpi(x)) throw new Error(`status.${field}[${i}] is not an SPI`);
    return x;
  });
  return [...new Set(spis)].sort((a, b) => a - b).slice(-MAX_STATUS_SPIS);
}

function count(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new Error(`status.${field} is not a count`);
  return v;
}

function time(v: unknown, field: string): string {
  if (typeof v !== 'string' || Number.isNaN(Date.parse(v))) throw new Error(`status.${field} is not a time`);
  return v;
}

/** Builds the status a node publishes (bounded, sorted, reasons cut to one short line). */
export function nodeKeyStatus(input: {
  heldSpis: readonly number[];
  sendSpis: readonly number[];
  keyProblem: string;
  /** The readiness reasons of the step (none when ready). */
  notReady?: readonly string[];
  lastRotation?: RotationFacts | undefined;
  peerCount: number;
  failingPeers: readonly FailingPeer[];
}): NodeKeyStatus {
  const held = [...new Set(input.heldSpis)].sort((a, b) => a - b);
  const failing = [...input.failingPeers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return {
    heldSpis: held.slice(-MAX_STATUS_SPIS),
    highestSpi: held[held.length - 1] ?? 0,
    sendSpis: [...new Set(input.sendSpis)].sort((a, b) => a - b).slice(-MAX_STATUS_SPIS),
    keyProblem: oneLine(input.keyProblem),
    notReady: notReadySummary(input.notReady ?? []),
    ...(input.lastRotation ? { lastRotation: { ...input.lastRotation } } : {}),
    peerCount: input.peerCount,
    failingPeerCount: failing.length,
    failingPeers: failing.slice(0, MAX_FAILING_PEERS).map((p) => ({ name: p.name, reason: oneLine(p.reason) })),
  };
}

/** The first reason (cut like every reason) and how many more there are. */
function notReadySummary(reasons: readonly string[]): string {
  const first = reasons[0];
  if (first === undefined) return '';
  const more = reasons.length > 1 ? ` (+${reasons.length - 1} more)` : '';
  return oneLine((first.split('\n')[0] ?? '').slice(0, MAX_REASON_CHARS - more.length) + more);
}

function oneLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > MAX_REASON_CHARS ? `${line.slice(0, MAX_REASON_CHARS - 1)}…` : line;
}

/**
 * The key status in a KmeshNodeInfo object: undefined when the object carries none (Kmesh's own daemon, or a
 * node that has not reported yet), otherwise the status or a one-line reason naming the bad field.
 */
export function parseNodeKeyStatus(object: unknown): { ok: NodeKeyStatus } | { error: string } | undefined {
  const status = isObject(object) ? object.status : undefined;
  if (!isObject(status) || (status.highestSpi === undefined && status.heldSpis === undefined)) return undefined;
  try {
    const heldSpis = spiList(status.heldSpis ?? [], 'heldSpis');
    const sendSpis = spiList(status.sendSpis ?? [], 'sendSpis');
    const highest = status.highestSpi ?? 0;
    if (highest !== 0 && !(typeof highest === 'number' && isValidSpi(highest))) {
      throw new Error('status.highestSpi is not an SPI');
    }
    const keyProblem = status.keyProblem ?? '';
    if (typeof keyProblem !== 'string') throw new Error('status.keyProblem is not a string');
    const notReady = status.notReady ?? '';
    if (typeof notReady !== 'string') throw new Error('status.notReady is not a string');
    let lastRotation: RotationFacts | undefined;
    if (status.lastRotation !== undefined) {
      const r = status.lastRotation;
      if (!isObject(r) || typeof r.spi !== 'number' || !isValidSpi(r.spi)) {
        throw new Error('status.lastRotation.spi is not an SPI');
      }
      lastRotation = {
        spi: r.spi,
        seenAt: time(r.seenAt, 'lastRotation.seenAt'),
        ...(r.convergedAt !== undefined ? { convergedAt: time(r.convergedAt, 'lastRotation.convergedAt') } : {}),
      };
    }
    const failingRaw = status.failingPeers ?? [];
    if (!Array.isArray(failingRaw)) throw new Error('status.failingPeers is not a list');
    const failingPeers = failingRaw.slice(0, MAX_FAILING_PEERS).map((p, i) => {
      if (!isObject(p) || typeof p.name !== 'string' || typeof p.reason !== 'string') {
        throw new Error(`status.failingPeers[${i}] needs a name and a reason`);
      }
      return { name: p.name, reason: p.reason };
    });
    return {
      ok: {
        heldSpis,
        highestSpi: Math.max(typeof highest === 'number' ? highest : 0, heldSpis[heldSpis.length - 1] ?? 0),
        sendSpis,
        keyProblem,
        notReady,
        ...(lastRotation ? { lastRotation } : {}),
        peerCount: count(status.peerCount ?? 0, 'peerCount'),
        failingPeerCount: Math.max(count(status.failingPeerCount ?? 0, 'failingPeerCount'), failingPeers.length),
        failingPeers,
      },
    };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/**
 * The status as JSON, fields in a fixed order (so equal facts give equal text and no needless write). Empty
 * strings and lists are left out (kube-apiserver 1.20 turns an empty string in a CRD status into null and then
 * refuses it as not a string); `highestSpi` is always there and marks a status as ours.
 */
export function nodeKeyStatusJson(s: NodeKeyStatus): Json {
  return {
    ...(s.heldSpis.length > 0 ? { heldSpis: [...s.heldSpis] } : {}),
    highestSpi: s.highestSpi,
    ...(s.sendSpis.length > 0 ? { sendSpis: [...s.sendSpis] } : {}),
    ...(s.keyProblem !== '' ? { keyProblem: s.keyProblem } : {}),
    ...(s.notReady !== '' ? { notReady: s.notReady } : {}),
    ...(s.lastRotation
      ? {
          lastRotation: {
            spi: s.lastRotation.spi,
            seenAt: s.lastRotation.seenAt,
            ...(s.lastRotation.convergedAt !== undefined ? { convergedAt: s.lastRotation.convergedAt } : {}),
          },
        }
      : {}),
    peerCount: s.peerCount,
    failingPeerCount: s.failingPeerCount,
    ...(s.failingPeers.length > 0
      ? { failingPeers: s.failingPeers.map((p) => ({ name: p.name, reason: p.reason })) }
      : {}),
  };
}

/** True when the object's status already says `s` (no write needed). */
export function nodeKeyStatusUpToDate(object: unknown, s: NodeKeyStatus): boolean {
  const parsed = parseNodeKeyStatus(object);
  return (
    parsed !== undefined &&
    'ok' in parsed &&
    JSON.stringify(nodeKeyStatusJson(parsed.ok)) === JSON.stringify(nodeKeyStatusJson(s))
  );
}
