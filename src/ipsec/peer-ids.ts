// Per-peer ids (1..65535) carried in the upper mark bits of inbound ESP so each peer gets its own inbound
// SA. Allocation is a pure function of (previous allocation, current peers): peers keep their id while
// present, new peers take the lowest free id in name order, departed peers release theirs. After a
// restart the allocation is recovered from the kernel: each of our inbound SAs carries the id in its mark
// and the peer's underlay address as its source.

import { MARK_DECRYPT, MARK_INBOUND_MASK, MARK_TYPE_MASK, PEER_ID_MAX, PEER_ID_SHIFT } from '../model/marks.js';
import type { XfrmState } from '../xfrm/types.js';
import { canonicalIp } from '../model/ip-address.js';
import { isOurState, KMESH_REQID } from './ownership.js';

export interface PeerIdAllocation {
  /** Peer name -> id. */
  ids: Map<string, number>;
  /** Peers that got no id because all 65535 are taken. */
  unassigned: string[];
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// The allocations this function made. A step whose peers are the previous allocation's (most steps) gets that
// allocation back as it is: at 5,000 peers a fresh one costs a sort, a map and a set (~1 MiB of garbage) per step.
const madeHere = new WeakSet<ReadonlyMap<string, number>>();
/** Scratch for unchanged(): which ids the names hold (zeroed again after each use). */
const idSeen = new Uint8Array(PEER_ID_MAX + 1);

/** Are `peerNames` exactly the peers of `previous`, each once (so the allocation would be `previous` again)? */
function unchanged(previous: ReadonlyMap<string, number>, peerNames: readonly string[]): boolean {
  if (peerNames.length !== previous.size) return false;
  let same = true;
  let marked = 0;
  for (; marked < peerNames.length; marked++) {
    const id = previous.get(peerNames[marked] as string);
    // An unknown name, or a name given twice (its id seen already: a peer of `previous` is then missing).
    if (id === undefined || idSeen[id] === 1) {
      same = false;
      break;
    }
    idSeen[id] = 1;
  }
  for (let i = 0; i < marked; i++) idSeen[previous.get(peerNames[i] as string) as number] = 0;
  return same;
}

export function allocatePeerIds(previous: ReadonlyMap<string, number>, peerNames: readonly string[]): PeerIdAllocation {
  if (madeHere.has(previous) && unchanged(previous, peerNames))
    return { ids: previous as Map<string, number>, unassigned: [] };
  const names = [...new Set(peerNames)].sort(byName);
  const ids = new Map<string, number>();
  const used = new Set<number>();
  for (const name of names) {
    const id = previous.get(name);
    if (id !== undefined && Number.isInteger(id) && id >= 1 && id <= PEER_ID_MAX && !used.has(id)) {
      ids.set(name, id);
      used.add(id);
    }
  }
  const unassigned: string[] = [];
  let candidate = 1;
  for (const name of names) {
    if (ids.has(name)) continue;
    while (candidate <= PEER_ID_MAX && used.has(candidate)) candidate++;
    if (candidate > PEER_ID_MAX) {
      unassigned.push(name);
      continue;
    }
    ids.set(name, candidate);
    used.add(candidate);
  }
  if (unassigned.length === 0) madeHere.add(ids);
  return { ids, unassigned };
}

/** The peer id an inbound SA of ours matches on, or undefined for any other state. */
export function peerIdOfInboundState(state: XfrmState, reqid = KMESH_REQID): number | undefined {
  if (!isOurState(state, reqid) || !state.mark) return undefined;
  if (state.mark.mask >>> 0 !== MARK_INBOUND_MASK || (state.mark.value & MARK_TYPE_MASK) !== MARK_DECRYPT)
    return undefined;
  const id = state.mark.value >>> PEER_ID_SHIFT;
  return id >= 1 ? id : undefined;
}

/**
 * Previous allocation recovered from dumped states: a peer whose underlay address is the source of one of
 * our inbound SAs gets that SA's id (the lowest, if several). An id is given to one peer only (name order).
 */
export function recoverPeerIds(
  states: readonly XfrmState[],
  peers: readonly { name: string; addresses: readonly string[] }[],
  reqid = KMESH_REQID,
): Map<string, number> {
  const idsBySource = new Map<string, number>();
  for (const s of states) {
    const id = peerIdOfInboundState(s, reqid);
    if (id === undefined) continue;
    const src = canonicalIp(s.src);
    const known = idsBySource.get(src);
    if (known === undefined || id < known) idsBySource.set(src, id);
  }
  const recovered = new Map<string, number>();
  const taken = new Set<number>();
  for (const peer of [...peers].sort((a, b) => byName(a.name, b.name))) {
    const candidates = peer.addresses
      .map((a) => idsBySource.get(canonicalIp(a)))
      .filter((id): id is number => id !== undefined && !taken.has(id));
    if (candidates.length === 0) continue;
    const id = Math.min(...candidates);
    recovered.set(peer.name, id);
    taken.add(id);
  }
  return recovered;
}
