// The key-rotation protocol, as pure decisions (time is a parameter):
// - hold: inbound and outbound SAs exist for every SPI in the key history that is not retired;
// - advertise: the newest SPI whose inbound SAs are present for every current peer, never going back
//   (so a peer switching to our advertised SPI always finds an SA waiting);
// - send: to each peer with the SPI it advertises when we hold that key (also when it lags behind on an
//   old SPI we still hold); if it is ahead of us, with our newest SPI (which it cannot have retired: it
//   retires an SPI only after we advertise something newer);
// - retire (acknowledged, the default): an SPI older than our newest once we and every peer advertise something
//   newer, nothing is sent with it by us, and every current peer reports in its KmeshNodeInfo status that it no
//   longer sends with it, that having held for a short floor (packets already in flight). A peer that never saw
//   our new SPI (watch stalled, API access cut) still reports the old one, so its SAs stay however long that
//   lasts; only the ack timeout (a peer dead but not removed) bounds the wait. Peers that report nothing
//   (Kmesh's own daemon) fall back to the grace period;
// - retire (timer, the old rule, kept to show why it is not enough): the same conditions minus the reports,
//   held continuously for the grace period. A restart restarts every clock (late, never early).

/**
 * Default grace period: how long an old SPI stays after the retirement condition first held. It must exceed
 * the time a peer takes to see our new KmeshNodeInfo; a peer that missed a watch event sees it at its next
 * full resync (the daemon's default --resync-interval is 30 s), so 60 s leaves that and a margin. The daemon's
 * --rotation-grace default is this value.
 */
export const DEFAULT_ROTATION_GRACE_MS = 60_000;

/**
 * How long every peer must have acknowledged an old SPI before it goes (packets already on the wire); never more
 * than the grace period.
 */
export const DEFAULT_ACK_FLOOR_MS = 5_000;
/**
 * Longest wait for a peer that still reports sending with an old SPI (or whose report never updates: a node
 * that is dead but whose KmeshNodeInfo stays). Past it the SPI goes anyway; the daemon's --rotation-ack-timeout.
 */
export const DEFAULT_ACK_TIMEOUT_MS = 3_600_000;

/** `acknowledged`: peers' reports decide (the default); `timer`: the grace period alone (the old rule). */
export type RetirementRule = 'acknowledged' | 'timer';

/** Clocks per SPI: when the retirement condition first held, and when every peer first acknowledged it. */
export interface RetirementState {
  supersededSince: ReadonlyMap<number, number>;
  acknowledgedSince?: ReadonlyMap<number, number>;
}

export const EMPTY_RETIREMENT: RetirementState = { supersededSince: new Map(), acknowledgedSince: new Map() };

export interface SendChoice {
  spi: number;
  /** Set when the peer's advertised SPI could not be used as is. */
  note?: string;
}

/** SPI to send to a peer with, given its advertised SPI and the SPIs we hold (ascending); undefined when we hold none. */
export function chooseSendSpi(peerAdvertised: number, held: readonly number[]): SendChoice | undefined {
  const newest = held[held.length - 1];
  if (newest === undefined) return undefined;
  if (held.includes(peerAdvertised)) return { spi: peerAdvertised };
  if (peerAdvertised > newest) {
    return {
      spi: newest,
      note: `peer advertises SPI ${peerAdvertised}, which we do not hold yet; sending with SPI ${newest}`,
    };
  }
  const above = held.find((s) => s > peerAdvertised) ?? newest;
  return {
    spi: above,
    note: `peer advertises SPI ${peerAdvertised}, which we no longer hold; sending with SPI ${above}`,
  };
}

/**
 * SPI to advertise: the newest held SPI for which `inboundReady` is true (inbound SAs present for every
 * current peer), but never older than what we advertise already if that is still held. Undefined when
 * nothing qualifies (do not publish yet).
 */
export function chooseAdvertisedSpi(
  held: readonly number[],
  previous: number | undefined,
  inboundReady: (spi: number) => boolean,
): number | undefined {
  const ready = [...held].reverse().find(inboundReady);
  const kept = previous !== undefined && held.includes(previous) ? previous : undefined;
  if (ready === undefined) return kept;
  return kept === undefined ? ready : Math.max(ready, kept);
}

/** What a current peer reports sending with (its KmeshNodeInfo status); `sending` undefined: it reports nothing. */
export interface PeerReport {
  name: string;
  sending: readonly number[] | undefined;
}

export interface RetirementInput {
  /** SPIs held, ascending. */
  held: readonly number[];
  /** What the local node currently publishes (0/undefined: nothing yet). */
  localAdvertised: number | undefined;
  /** What every current peer advertises. */
  peerAdvertised: readonly number[];
  /** SPIs we send with to any peer right now. */
  sendSpis: readonly number[];
  now: number;
  graceMs: number;
  /** One per current peer; absent: no peer reports anything (every SPI waits for the grace period). */
  peerReports?: readonly PeerReport[];
  /** Default 'acknowledged'. */
  rule?: RetirementRule;
  /** Default DEFAULT_ACK_FLOOR_MS. */
  ackFloorMs?: number;
  /** Default DEFAULT_ACK_TIMEOUT_MS. */
  ackTimeoutMs?: number;
}

export interface PendingRetirement {
  spi: number;
  since: number;
  retireAt: number;
  /** What it waits for: peers still reporting it (names), or the grace period / the ack floor. */
  waitingFor?: { peers: string[] } | { clock: 'grace' | 'floor' };
}

export interface RetirementDecision {
  state: RetirementState;
  /** SPIs to drop now. */
  retire: number[];
  /** SPIs superseded everywhere, waiting for acknowledgement or a clock. */
  pending: PendingRetirement[];
}

export function planRetirement(state: RetirementState, input: RetirementInput): RetirementDecision {
  const newest = input.held[input.held.length - 1];
  const rule = input.rule ?? 'acknowledged';
  const reports = input.peerReports ?? input.peerAdvertised.map(() => ({ name: '', sending: undefined }));
  const silent = reports.some((r) => r.sending === undefined);
  const floorMs = input.ackFloorMs ?? DEFAULT_ACK_FLOOR_MS;
  const timeoutMs = input.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
  const since = new Map<number, number>();
  const acked = new Map<number, number>();
  const retire: number[] = [];
  const pending: PendingRetirement[] = [];
  for (const spi of input.held) {
    const superseded =
      newest !== undefined &&
      spi < newest &&
      input.localAdvertised !== undefined &&
      input.localAdvertised > spi &&
      input.peerAdvertised.every((p) => p > spi) &&
      !input.sendSpis.includes(spi);
    if (!superseded) continue;
    const start = state.supersededSince.get(spi) ?? input.now;
    let retireAt: number;
    let waitingFor: PendingRetirement['waitingFor'];
    if (rule === 'timer') {
      retireAt = start + input.graceMs;
      waitingFor = { clock: 'grace' };
    } else {
      const stillSending = reports.filter((r) => r.sending?.includes(spi) === true).map((r) => r.name);
      if (stillSending.length > 0) {
        retireAt = start + timeoutMs;
        waitingFor = { peers: stillSending.sort() };
      } else if (silent) {
        retireAt = start + input.graceMs;
        waitingFor = { clock: 'grace' };
      } else {
        const ackStart = state.acknowledgedSince?.get(spi) ?? input.now;
        acked.set(spi, ackStart);
        retireAt = Math.min(ackStart + Math.min(floorMs, input.graceMs), start + timeoutMs);
        waitingFor = { clock: 'floor' };
      }
    }
    if (input.now >= retireAt) {
      retire.push(spi);
      acked.delete(spi);
    } else {
      since.set(spi, start);
      pending.push({ spi, since: start, retireAt, waitingFor });
    }
  }
  return { state: { supersededSince: since, acknowledgedSince: acked }, retire, pending };
}
