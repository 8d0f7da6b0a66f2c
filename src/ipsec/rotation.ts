// The key-rotation protocol, as pure decisions (time is a parameter):
// - hold: inbound and outbound SAs exist for every SPI in the key history that is not retired;
// - advertise: the newest SPI whose inbound SAs are present for every current peer, never going back
//   (so a peer switching to our advertised SPI always finds an SA waiting);
// - send: to each peer with the SPI it advertises when we hold that key (also when it lags behind on an
//   old SPI we still hold); if it is ahead of us, with our newest SPI (which it cannot have retired: it
//   retires an SPI only after we advertise something newer);
// - retire: an SPI older than our newest once we and every peer advertise something newer, nothing is sent
//   with it, and that has held continuously for the grace period. A restart restarts the clock (late, never early).

/**
 * Default grace period: how long an old SPI stays after the retirement condition first held. It must exceed
 * the time a peer takes to see our new KmeshNodeInfo; a peer that missed a watch event sees it at its next
 * full resync (the daemon's default --resync-interval is 30 s), so 60 s leaves that and a margin. The daemon's
 * --rotation-grace default is this value.
 */
export const DEFAULT_ROTATION_GRACE_MS = 60_000;

/** Time the retirement condition first held, per SPI. */
export interface RetirementState {
  supersededSince: ReadonlyMap<number, number>;
}

export const EMPTY_RETIREMENT: RetirementState = { supersededSince: new Map() };

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
}

export interface PendingRetirement {
  spi: number;
  since: number;
  retireAt: number;
}

export interface RetirementDecision {
  state: RetirementState;
  /** SPIs to drop now. */
  retire: number[];
  /** SPIs superseded everywhere, waiting for the grace period. */
  pending: PendingRetirement[];
}

export function planRetirement(state: RetirementState, input: RetirementInput): RetirementDecision {
  const newest = input.held[input.held.length - 1];
  const since = new Map<number, number>();
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
    if (input.now - start >= input.graceMs) {
      retire.push(spi);
    } else {
      since.set(spi, start);
      pending.push({ spi, since: start, retireAt: start + input.graceMs });
    }
  }
  return { state: { supersededSince: since }, retire, pending };
}
