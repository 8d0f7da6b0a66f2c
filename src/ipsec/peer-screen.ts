// Decides which peers can be planned for and how: pairs each peer with the local node per address family
// (tunnel endpoints = the first underlay address of that family on each side, pod CIDRs of the same
// family), and rejects peers that would collide with the local node or with another peer (same name,
// same underlay address, overlapping pod CIDRs, a pod CIDR spanning a whole address space). Peers are taken in name
// order, so the outcome does not depend on list order and the first claimant of an address or CIDR keeps it.

import { sameNodeInfo, type NodeInfo } from '../model/node.js';
import { CidrClaims, placeOf, placesOverlap, type CidrClaim, type CidrPlace } from './cidr-claims.js';
import { anyOverlap } from './cidr-overlap.js';
import {
  canonicalIp,
  isIpAddress,
  normaliseCidr,
  normalisedCidrText,
  parseCidrLenient,
  readIpv4Cidr,
  type Family,
} from '../model/ip-address.js';
import { exactArray } from '../util/exact-array.js';
import { compareByName, inNameOrder } from '../util/name-order.js';

/** One encrypted path between the local node and a peer in one address family. */
export interface Tunnel {
  family: Family;
  /** Underlay addresses as published (they feed the key derivation). */
  localAddress: string;
  peerAddress: string;
  /** Normalised pod CIDRs of this family. */
  localCidrs: string[];
  peerCidrs: string[];
}

export interface ScreenedPeer {
  node: NodeInfo;
  tunnels: Tunnel[];
  /** Things worth reporting that do not stop the peer (e.g. a pod CIDR family without a tunnel). */
  notes: string[];
}

export interface PeerRejection {
  name: string;
  /** The SPI the rejected object advertises (as given). */
  advertisedSpi: number;
  reason: string;
}

const FAMILIES: readonly Family[] = [4, 6];

/** The notes of a peer that has none, shared (screened peers are never written to). */
const NO_NOTES: string[] = Object.freeze([]) as unknown as string[];

// Indexed loops in what runs once per peer (here and in screenOne): a first screening runs them before V8
// optimises them, and for-of then allocates an iterator and a result object per element.

/**
 * `owner`'s claim of pod CIDR `text` (normalised: host bits cleared, IPv6 in canonical form), not yet made; undefined
 * when the text is not a CIDR. An IPv4 CIDR is read without parsing it into bytes (most pod CIDRs are one).
 */
function claimOf(text: string, owner: string): CidrClaim | undefined {
  const claim: CidrClaim = { owner, text, family: 4, prefixLen: 0, v4: 0, v6: undefined };
  if (readIpv4Cidr(text, claim)) {
    // A dotted quad and a prefix length in the one syntax taken are canonical: only host bits change the text.
    const hostBits = claim.prefixLen === 0 ? -1 : ~(-1 << (32 - claim.prefixLen));
    if ((claim.v4 & hostBits) !== 0) claim.text = normaliseCidr(text) as string;
    return claim;
  }
  const parsed = parseCidrLenient(text);
  if (parsed === undefined) return undefined;
  const place = placeOf(parsed);
  claim.text = normalisedCidrText(parsed);
  claim.family = place.family;
  claim.prefixLen = place.prefixLen;
  claim.v4 = place.v4;
  claim.v6 = place.v6;
  return claim;
}

/**
 * `owner`'s claims of these pod CIDRs, one per distinct normalised text, in order and at their exact size (the list
 * of an accepted peer is kept as its held claims); a reason when one is not a CIDR.
 */
function parseCidrs(texts: readonly string[], owner: string): CidrClaim[] | string {
  const out = new Array<CidrClaim>(texts.length);
  let n = 0;
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i] as string;
    const claim = claimOf(text, owner);
    if (claim === undefined) return `pod CIDR ${JSON.stringify(text)} is not a CIDR`;
    // The same CIDR twice is one claim (as parseNodeInfo has it): planned twice it would be two equal policies.
    let twice = false;
    for (let j = 0; j < n && !twice; j++) twice = (out[j] as CidrClaim).text === claim.text;
    if (!twice) out[n++] = claim;
  }
  if (n < out.length) out.length = n;
  return out;
}

/** The texts of `cidrs`. */
function textsOf(cidrs: readonly { text: string }[]): string[] {
  // At their exact size (src/util/exact-array.ts): a peer's and each of its tunnels' CIDR lists are kept.
  const out = new Array<string>(cidrs.length);
  for (let i = 0; i < cidrs.length; i++) out[i] = (cidrs[i] as { text: string }).text;
  return out;
}

/** Throws a one-line error when the local node description is unusable (nothing is planned then). */
function checkLocalNode(local: NodeInfo): void {
  if (!local.name) throw new Error('local node: name is empty');
  if (!Number.isInteger(local.spi) || local.spi < 0)
    throw new Error(`local node: spi ${local.spi} is not an integer >= 0`);
  if (local.addresses.length === 0) throw new Error('local node: no underlay addresses');
  for (const a of local.addresses)
    if (!isIpAddress(a)) throw new Error(`local node: address ${JSON.stringify(a)} is not an IP address`);
  if (!local.bootID) throw new Error('local node: boot ID is empty');
  for (const c of local.podCIDRs)
    if (!parseCidrLenient(c)) throw new Error(`local node: pod CIDR ${JSON.stringify(c)} is not a CIDR`);
}

/**
 * Why a peer's pod CIDRs cannot be planned on their own: one spanning a whole address space (prefix length 0) would
 * overlap every other node's and select what the node-wide block policy selects (planner.ts).
 */
function cidrsProblem(cidrs: readonly CidrClaim[]): string | undefined {
  for (let i = 0; i < cidrs.length; i++) {
    const c = cidrs[i] as CidrClaim;
    if (c.prefixLen === 0) return `pod CIDR ${c.text} spans the whole IPv${c.family} address space`;
  }
  return undefined;
}

/** Semantic problems of a peer on its own (callers normally ran parseNodeInfo already). */
function peerProblem(peer: NodeInfo): string | undefined {
  if (!Number.isInteger(peer.spi) || peer.spi < 1) return `spi ${peer.spi} is not a positive integer`;
  if (!peer.bootID) return 'boot ID is empty';
  if (peer.addresses.length === 0) return 'no underlay addresses';
  for (let i = 0; i < peer.addresses.length; i++) {
    const a = peer.addresses[i] as string;
    if (!isIpAddress(a)) return `address ${JSON.stringify(a)} is not an IP address`;
  }
  return undefined;
}

// Claims are owned by node names (the local node's among them: no peer is screened under its name), not by labels
// built per peer: a label per peer was a string built, flattened and hashed for every peer of a first screening, and
// kept. The label is made when a message names the owner.
interface Claims {
  /** The local node's name (ownerLabel tells it from a peer's). */
  localName: string;
  /** Canonical underlay address -> the name of the node that claims it. */
  addresses: Map<string, string>;
  /**
   * The claim index, built when a screening first looks a claim up in it (cidrIndex): a first screening checks every
   * pod CIDR at once instead (screenInOrder), and the next one that screens a few peers builds it.
   */
  cidrs: CidrClaims | undefined;
  /** The claims that hold (the local node's and the accepted peers'), by owner name, in the order they were made. */
  live: Map<string, CidrClaim[]>;
  /** Claims in `cidrs` that no longer hold — their peer changed or went away (CidrClaims cannot take one back). */
  stale: Set<CidrClaim>;
}

/** The claim index, built from the claims (holding ones in the order made, then stale ones) if it is not yet. */
function cidrIndex(claims: Claims): CidrClaims {
  let index = claims.cidrs;
  if (index === undefined) {
    index = new CidrClaims();
    for (const held of claims.live.values()) for (let i = 0; i < held.length; i++) index.add(held[i] as CidrClaim);
    for (const s of claims.stale) index.add(s);
    claims.cidrs = index;
  }
  return index;
}

/** How messages name the node `owner` (a claim's owner). */
function ownerLabel(claims: Claims, owner: string): string {
  return owner === claims.localName ? `the local node ${owner}` : `node ${owner}`;
}

/** A holding claim overlapping the CIDR at `place`, if any. A stale claim found in the way is checked against the live ones. */
function cidrClaimOverlapping(claims: Claims, place: CidrPlace): CidrClaim | undefined {
  const hit = cidrIndex(claims).findOverlap(place);
  if (hit === undefined || !claims.stale.has(hit)) return hit;
  for (const held of claims.live.values()) for (const h of held) if (placesOverlap(h, place)) return h;
  return undefined;
}

export interface Screening {
  accepted: ScreenedPeer[];
  rejected: PeerRejection[];
}

/** The local node's side of every tunnel, and the claims of the local node and of the accepted peers. */
interface ScreenContext {
  /** The local node's first underlay address per family. */
  localAddresses: Record<Family, string | undefined>;
  localCidrs: Record<Family, string[]>;
  /**
   * The claims, each peer's checked against them as it is screened. Undefined after a first screening that checked
   * them all at once (`atOnce`): the first screening of a few peers builds them (claimsOf).
   */
  claims: Claims | undefined;
  /** Set while a first screening leaves its checks to the end (screenInOrder); undefined otherwise. */
  atOnce: AtOnceChecks | undefined;
}

/**
 * What a first screening checks at the end, all at once: the canonical underlay addresses and the pod CIDR claims of
 * the local node and of every peer that reached those checks (accepted or not after them).
 */
interface AtOnceChecks {
  addresses: string[];
  cidrs: CidrClaim[];
}

/** A peer screening rejected, and why. */
interface Rejected {
  rejected: PeerRejection;
  /** True when another node's claim decided it (order matters), false when the peer alone is unusable. */
  clash: boolean;
}

/**
 * One peer screened against the claims made so far: accepted (the screened peer itself, its claims added: no record
 * around it per peer), or rejected and why.
 */
type PeerVerdict = ScreenedPeer | Rejected;

function isRejected(verdict: PeerVerdict): verdict is Rejected {
  return 'clash' in verdict;
}

/**
 * `kept`: the pod CIDR claims (by normalised text) this peer made in the last screening and still has — they are
 * its own already, so they are neither looked up nor claimed again.
 */
function screenOne(raw: NodeInfo, context: ScreenContext, kept?: ReadonlyMap<string, CidrClaim>): PeerVerdict {
  const { claims, atOnce, localAddresses, localCidrs } = context;
  const parsedCidrs = parseCidrs(raw.podCIDRs, raw.name);
  const problem = peerProblem(raw) ?? (typeof parsedCidrs === 'string' ? parsedCidrs : cidrsProblem(parsedCidrs));
  if (problem || typeof parsedCidrs === 'string') return rejection(raw, problem ?? 'invalid', false);
  // The object as given when its pod CIDRs are normalised already (the usual case), else a copy with them so.
  const node: NodeInfo = sameCidrTexts(raw.podCIDRs, parsedCidrs) ? raw : { ...raw, podCIDRs: textsOf(parsedCidrs) };
  const newCidrs = kept === undefined ? parsedCidrs : parsedCidrs.filter((c) => !kept.has(c.text));
  if (atOnce !== undefined) {
    for (let i = 0; i < node.addresses.length; i++) atOnce.addresses.push(canonicalIp(node.addresses[i] as string));
    for (let i = 0; i < newCidrs.length; i++) atOnce.cidrs.push(newCidrs[i] as CidrClaim);
  } else {
    if (claims === undefined) throw new Error('peer screening: no claims to screen against');
    for (let i = 0; i < node.addresses.length; i++) {
      const a = node.addresses[i] as string;
      const other = claims.addresses.get(canonicalIp(a));
      if (other !== undefined)
        return rejection(raw, `underlay address ${a} is also used by ${ownerLabel(claims, other)}`, true);
    }
    for (let i = 0; i < newCidrs.length; i++) {
      const c = newCidrs[i] as CidrClaim;
      const other = cidrClaimOverlapping(claims, c);
      if (other)
        return rejection(raw, `pod CIDR ${c.text} overlaps ${other.text} of ${ownerLabel(claims, other.owner)}`, true);
    }
  }

  // At most one tunnel per family, and the lists kept at their exact size (src/util/exact-array.ts). A family
  // without a tunnel or a pod CIDR costs no list (most peers have one family).
  let first: Tunnel | undefined;
  let second: Tunnel | undefined;
  let notes: string[] = NO_NOTES;
  for (let f = 0; f < FAMILIES.length; f++) {
    const family = FAMILIES[f] as Family;
    const localAddress = localAddresses[family];
    const peerAddress = firstAddressOf(node.addresses, family);
    if (localAddress && peerAddress) {
      const peerCidrs = peerCidrsOfFamily(node, parsedCidrs, family);
      const tunnel: Tunnel = { family, localAddress, peerAddress, localCidrs: localCidrs[family], peerCidrs };
      if (first === undefined) first = tunnel;
      else second = tunnel;
    } else if (hasFamily(parsedCidrs, family)) {
      const peerCidrs = textsOfFamily(parsedCidrs, family);
      if (notes === NO_NOTES) notes = [];
      notes.push(
        `pod CIDR ${peerCidrs.join(', ')} is not encrypted: no IPv${family} underlay address on ${localAddress ? 'the peer' : 'the local node'} (marked traffic to it is blocked)`,
      );
    }
  }
  if (first === undefined) return rejection(raw, 'no underlay address family in common with the local node', false);
  if (claims !== undefined) claim(claims, node, newCidrs, kept);
  const tunnels = second === undefined ? [first] : [first, second];
  return { node, tunnels, notes: notes === NO_NOTES ? NO_NOTES : exactArray(notes) };
}

/** Adds an accepted peer's claims: its addresses, its new pod CIDRs and, with them, those it `kept`. */
function claim(claims: Claims, node: NodeInfo, newCidrs: CidrClaim[], kept?: ReadonlyMap<string, CidrClaim>): void {
  const owner = node.name;
  for (let i = 0; i < node.addresses.length; i++) claims.addresses.set(canonicalIp(node.addresses[i] as string), owner);
  if (claims.cidrs !== undefined) for (let i = 0; i < newCidrs.length; i++) claims.cidrs.add(newCidrs[i] as CidrClaim);
  // The claims it holds: its new ones (the parsed list itself, at its exact size), and the ones it kept.
  let held = newCidrs;
  if (kept !== undefined) {
    held = new Array<CidrClaim>(kept.size + newCidrs.length);
    let h = 0;
    for (const k of kept.values()) held[h++] = k;
    for (let i = 0; i < newCidrs.length; i++) held[h++] = newCidrs[i] as CidrClaim;
  }
  claims.live.set(owner, held);
}

function rejection(raw: NodeInfo, reason: string, clash: boolean): PeerVerdict {
  return { rejected: { name: raw.name, advertisedSpi: raw.spi, reason }, clash };
}

/**
 * A tunnel's peer CIDRs of `family`: the node's own list (its texts are the claims', screenOne made sure) when every
 * claim is of that family, as for most peers, else those of the family, at their exact size (a tunnel keeps them).
 */
function peerCidrsOfFamily(node: NodeInfo, cidrs: readonly CidrClaim[], family: Family): string[] {
  let n = 0;
  for (let i = 0; i < cidrs.length; i++) if ((cidrs[i] as CidrClaim).family === family) n++;
  return n === cidrs.length ? node.podCIDRs : textsOfFamily(cidrs, family);
}

/** Whether the parsed CIDRs' normalised texts are `texts` as given, one for one. */
function sameCidrTexts(texts: readonly string[], parsed: readonly { text: string }[]): boolean {
  if (texts.length !== parsed.length) return false;
  for (let i = 0; i < texts.length; i++) if (texts[i] !== (parsed[i] as { text: string }).text) return false;
  return true;
}

/** The first of these addresses in `family` (they parse: checkLocalNode or peerProblem checked them; a ':' makes one IPv6). */
function firstAddressOf(addresses: readonly string[], family: Family): string | undefined {
  for (let i = 0; i < addresses.length; i++) {
    const a = addresses[i] as string;
    if ((a.includes(':') ? 6 : 4) === family) return a;
  }
  return undefined;
}

/** Whether any of the CIDRs is of `family`. */
function hasFamily(cidrs: readonly CidrClaim[], family: Family): boolean {
  for (let i = 0; i < cidrs.length; i++) if ((cidrs[i] as CidrClaim).family === family) return true;
  return false;
}

/** The texts of the CIDRs of `family`, at their exact size (a tunnel keeps them). */
function textsOfFamily(cidrs: readonly CidrClaim[], family: Family): string[] {
  let n = 0;
  for (let i = 0; i < cidrs.length; i++) if ((cidrs[i] as CidrClaim).family === family) n++;
  const out = new Array<string>(n);
  for (let i = 0, k = 0; i < cidrs.length; i++) {
    const c = cidrs[i] as CidrClaim;
    if (c.family === family) out[k++] = c.text;
  }
  return out;
}

// The last screening, with what it was made from and the claims it left. A daemon step screens every peer
// although few change between steps, and the sources hand out the same peer objects while they are unchanged
// (the loop validates each KmeshNodeInfo object once). So:
// - the same local node and the same peer objects in the same order: the last result, handed out again (its
//   objects are never written to after screening);
// - a few peers added, changed or removed, when the last screening had no clash (no peer was rejected because
//   of another node's claim, no name twice): only those peers are screened. Without a clash every valid peer is
//   accepted whatever the order, so the result is the last one with those peers replaced, as long as none of
//   them now touches a claim that holds. Any clash screens everything afresh (the full screening decides who
//   keeps what). CidrClaims cannot take a claim back: the claims of peers that changed or went away are marked
//   stale, and a lookup that runs into one checks the holding claims one by one;
// - anything else screens afresh.
interface LastScreening {
  local: NodeInfo;
  peers: readonly NodeInfo[];
  /** The peer objects screened, by name; built by the first screening that needs it (peersByName). */
  byName: Map<string, NodeInfo> | undefined;
  result: Screening;
  context: ScreenContext;
  /** No rejection depended on another node's claim. */
  clashFree: boolean;
}
let lastScreening: LastScreening | undefined;

/** The peers `last` screened, by name (built now if the screening left it to be built: it had no name twice). */
function peersByName(last: LastScreening): Map<string, NodeInfo> {
  let byName = last.byName;
  if (byName === undefined) {
    byName = new Map();
    for (let i = 0; i < last.peers.length; i++) {
      const p = last.peers[i] as NodeInfo;
      if (p.name !== last.local.name) byName.set(p.name, p);
    }
    last.byName = byName;
  }
  return byName;
}

/**
 * The claims of `last`'s local node and accepted peers, built now if a first screening checked them all at once:
 * the addresses and pod CIDRs of each, in the order screening made them (the local node's, then by peer name).
 */
function claimsOf(last: LastScreening): Claims {
  let claims = last.context.claims;
  if (claims === undefined) {
    claims = localClaims(last.local);
    const { accepted } = last.result;
    for (let i = 0; i < accepted.length; i++) {
      const { node } = accepted[i] as ScreenedPeer;
      const cidrs = parseCidrs(node.podCIDRs, node.name);
      // An accepted peer's pod CIDRs parsed when it was screened (as these normalised texts).
      if (typeof cidrs === 'string') throw new Error(`peer screening: accepted node ${node.name}: ${cidrs}`);
      claim(claims, node, cidrs);
    }
    last.context.claims = claims;
  }
  return claims;
}

/** The claims of the local node alone (its index left to be built: cidrIndex). */
function localClaims(local: NodeInfo): Claims {
  const claims: Claims = {
    localName: local.name,
    addresses: new Map(),
    cidrs: undefined,
    live: new Map(),
    stale: new Set(),
  };
  for (const a of local.addresses) claims.addresses.set(canonicalIp(a), local.name);
  claims.live.set(local.name, localCidrClaims(local));
  return claims;
}

/** The local node's pod CIDR claims (checkLocalNode made sure they parse). */
function localCidrClaims(local: NodeInfo): CidrClaim[] {
  const parsed = parseCidrs(local.podCIDRs, local.name);
  if (typeof parsed === 'string') throw new Error(`local node: ${parsed}`);
  return parsed;
}
/** At most this many peers changed, added or removed are screened on their own; more screen everything. */
const MAX_INCREMENTAL = 256;
const MAX_STALE_CIDR_CLAIMS = 4096;
let incrementalScreenings = 0;
/** How many screenings screened only the peers that changed (tests). */
export function incrementalScreeningCount(): number {
  return incrementalScreenings;
}

export function screenPeers(local: NodeInfo, peers: readonly NodeInfo[]): Screening {
  const last = lastScreening;
  if (last !== undefined && sameNodeInfo(last.local, local)) {
    if (last.peers.length === peers.length && peers.every((p, i) => p === last.peers[i])) return last.result;
    const next = last.clashFree ? screenChanged(last, peers) : undefined;
    if (next !== undefined) {
      incrementalScreenings++;
      lastScreening = next;
      return next.result;
    }
  }
  lastScreening = screenAfresh(local, peers);
  return lastScreening.result;
}

/**
 * The peers by name and those that are not the objects `last` screened; undefined for a name twice or too many
 * changes. When the names are those of the last screening, in its order (a step in which peers changed but none
 * came or went), the last screening's map is handed on, and screenChanged replaces the changed entries once it is
 * done with their last objects: no map of every peer is built per step (at 5,000 peers ~0.4 MiB that lives until
 * the next step, so it is promoted, then collected by a full GC). The last screening is not used again once
 * screenChanged ran (screenPeers replaces it either way).
 */
function changedPeers(
  last: LastScreening,
  peers: readonly NodeInfo[],
): { byName: Map<string, NodeInfo>; changed: NodeInfo[] } | undefined {
  const changed: NodeInfo[] = [];
  if (peers.length === last.peers.length) {
    let sameNames = true;
    for (let i = 0; i < peers.length && sameNames; i++) {
      const p = peers[i] as NodeInfo;
      const was = last.peers[i] as NodeInfo;
      if (p === was) continue;
      if (p.name !== was.name) sameNames = false;
      else if (p.name !== last.local.name) {
        changed.push(p);
        if (changed.length > MAX_INCREMENTAL) return undefined;
      }
    }
    // The last screening had no name twice (it was clash-free), so neither has this list. Its map still holds the
    // changed peers' last objects (their claims are given back by those): screenChanged puts the new ones in last.
    if (sameNames) return { byName: peersByName(last), changed };
    changed.length = 0;
  }
  const lastByName = peersByName(last);
  const byName = new Map<string, NodeInfo>();
  for (let i = 0; i < peers.length; i++) {
    const p = peers[i] as NodeInfo;
    if (p.name === last.local.name) continue;
    if (byName.has(p.name)) return undefined; // a name twice: a clash
    byName.set(p.name, p);
    if (lastByName.get(p.name) !== p) {
      changed.push(p);
      if (changed.length > MAX_INCREMENTAL) return undefined;
    }
  }
  return { byName, changed };
}

/** The screening with only the peers that differ from `last` screened; undefined when that is not sound. */
function screenChanged(last: LastScreening, peers: readonly NodeInfo[]): LastScreening | undefined {
  const found = changedPeers(last, peers);
  if (found === undefined) return undefined;
  const { byName, changed } = found;
  const lastByName = peersByName(last);
  const gone = new Set<string>();
  for (let i = 0; i < changed.length; i++) gone.add((changed[i] as NodeInfo).name);
  if (byName !== lastByName) {
    // The names no longer listed (forEach: iterating keys() allocates a result per entry until V8 optimises it).
    lastByName.forEach((_, name) => {
      if (!byName.has(name)) gone.add(name);
    });
    if (gone.size > MAX_INCREMENTAL) return undefined;
  }
  const { context } = last;
  // Built now if a first screening left them to be built (as they are before any claim is given back).
  const claims = claimsOf(last);
  const changedByName = new Map(changed.map((p) => [p.name, p]));
  // Each peer that changed or went away gives its claims back — but for the pod CIDRs a changed peer still has:
  // those it keeps, and they hold while the other changed peers are screened.
  const kept = new Map<string, Map<string, CidrClaim>>();
  for (const owner of gone) {
    const held = claims.live.get(owner);
    if (held === undefined) continue; // it was not accepted: nothing claimed
    claims.live.delete(owner);
    for (const a of lastByName.get(owner)?.addresses ?? []) {
      const key = canonicalIp(a);
      if (claims.addresses.get(key) === owner) claims.addresses.delete(key);
    }
    const p = changedByName.get(owner);
    const cidrs = p === undefined ? [] : parseCidrs(p.podCIDRs, owner);
    const still = new Set(typeof cidrs === 'string' ? [] : cidrs.map((c) => c.text));
    const keep = new Map<string, CidrClaim>();
    for (const h of held) {
      if (still.has(h.text)) keep.set(h.text, h);
      else claims.stale.add(h);
    }
    if (keep.size > 0) {
      kept.set(owner, keep);
      claims.live.set(owner, [...keep.values()]);
    }
  }
  const accepted: ScreenedPeer[] = [];
  const rejected: PeerRejection[] = [];
  for (const p of changed.sort(compareByName)) {
    const verdict = screenOne(p, context, kept.get(p.name));
    if (!isRejected(verdict)) {
      accepted.push(verdict);
      continue;
    }
    if (verdict.clash) return undefined;
    rejected.push(verdict.rejected);
    // Rejected on its own: the claims it kept go too.
    claims.live.delete(p.name);
    for (const h of kept.get(p.name)?.values() ?? []) claims.stale.add(h);
  }
  if (claims.stale.size > MAX_STALE_CIDR_CLAIMS) return undefined;
  if (byName === lastByName)
    for (let i = 0; i < changed.length; i++) byName.set((changed[i] as NodeInfo).name, changed[i] as NodeInfo);
  return {
    local: last.local,
    peers: peers.slice(),
    byName,
    result: {
      accepted: mergeByName(last.result.accepted, gone, accepted, (s) => s.node.name),
      rejected: mergeByName(last.result.rejected, gone, rejected, (r) => r.name),
    },
    context,
    clashFree: true,
  };
}

/** `list` (sorted by name) without the entries named in `drop`, with `add` (sorted by name) merged in. */
function mergeByName<T>(list: readonly T[], drop: ReadonlySet<string>, add: readonly T[], name: (x: T) => string): T[] {
  // Filled in place and cut to its length (growing it by push copied it ~10 times at 5,000 peers, every step).
  const out = new Array<T>(list.length + add.length);
  let n = 0;
  let i = 0;
  for (let k = 0; k < list.length; k++) {
    const x = list[k] as T;
    if (drop.has(name(x))) continue;
    while (i < add.length && name(add[i] as T) < name(x)) out[n++] = add[i++] as T;
    out[n++] = x;
  }
  while (i < add.length) out[n++] = add[i++] as T;
  out.length = n;
  return out;
}

/** Every peer screened, nothing reused from the last screening (what screenPeers must always equal). */
export function screenEveryPeer(local: NodeInfo, peers: readonly NodeInfo[]): Screening {
  return screenAfresh(local, peers).result;
}

/** Every peer screened with each one's addresses and pod CIDRs checked in turn: what a first screening must equal (tests). */
export function screenEveryPeerInTurn(local: NodeInfo, peers: readonly NodeInfo[]): Screening {
  checkLocalNode(local);
  return (screenInOrder(local, peers, false) as LastScreening).result;
}

function screenAfresh(local: NodeInfo, peers: readonly NodeInfo[]): LastScreening {
  checkLocalNode(local);
  // Every address and pod CIDR checked at once (the usual outcome: no two nodes share one, every peer keeps its
  // own); when some are shared, the peers are screened again with each one's checked in turn, which says who keeps
  // what.
  const atOnce = screenInOrder(local, peers, true);
  if (atOnce !== undefined) {
    screeningsCheckedAtOnce++;
    return atOnce;
  }
  return screenInOrder(local, peers, false) as LastScreening;
}

let screeningsCheckedAtOnce = 0;
/** How many screenings of every peer checked the addresses and pod CIDRs all at once (tests). */
export function screeningsCheckedAtOnceCount(): number {
  return screeningsCheckedAtOnce;
}

/**
 * Every peer screened in name order. `atOnce`: the address and pod CIDR checks are left to one check of them all at
 * the end (a sort of each: cidr-overlap.ts, anyTextTwice), and the claims and maps that a screening of a few peers
 * looks things up in are left to the first such screening (claimsOf, peersByName); undefined when some address or
 * CIDR is shared. The outcome is then the one checking each peer in turn gives: each of those checks looks at some
 * of what is checked at the end, so with nothing shared among them all, no peer would have been turned away by one.
 */
function screenInOrder(local: NodeInfo, peers: readonly NodeInfo[], atOnce: boolean): LastScreening | undefined {
  const localParsed = localCidrClaims(local);
  const context: ScreenContext = {
    localAddresses: { 4: firstAddressOf(local.addresses, 4), 6: firstAddressOf(local.addresses, 6) },
    localCidrs: { 4: textsOfFamily(localParsed, 4), 6: textsOfFamily(localParsed, 6) },
    claims: atOnce ? undefined : localClaims(local),
    atOnce: atOnce ? { addresses: local.addresses.map((a) => canonicalIp(a)), cidrs: localParsed.slice() } : undefined,
  };

  const accepted: ScreenedPeer[] = [];
  const rejected: PeerRejection[] = [];
  let clashFree = true;
  // In name order (a list in order already, as sources give them, is not copied); the same name twice is side by side.
  const sorted = inNameOrder(peers) ? peers : [...peers].sort(compareByName);
  let last: NodeInfo | undefined;
  for (let i = 0; i < sorted.length; i++) {
    const raw = sorted[i] as NodeInfo;
    if (raw.name === local.name) continue;
    if (last !== undefined && last.name === raw.name) {
      rejected.push({ name: raw.name, advertisedSpi: raw.spi, reason: 'more than one KmeshNodeInfo with this name' });
      clashFree = false;
      continue;
    }
    last = raw;
    const verdict = screenOne(raw, context);
    if (!isRejected(verdict)) {
      accepted.push(verdict);
    } else {
      rejected.push(verdict.rejected);
      if (verdict.clash) clashFree = false;
    }
  }
  const checks = context.atOnce;
  if (checks !== undefined) {
    if (anyTextTwice(checks.addresses) || anyOverlap(checks.cidrs)) return undefined;
    context.atOnce = undefined;
  }
  return {
    local: { ...local, addresses: [...local.addresses], podCIDRs: [...local.podCIDRs] },
    peers: peers.slice(),
    byName: undefined,
    result: { accepted, rejected },
    context,
    clashFree,
  };
}

/** Whether some text is in `texts` twice (sorts `texts`). */
function anyTextTwice(texts: string[]): boolean {
  texts.sort();
  for (let i = 1; i < texts.length; i++) if (texts[i] === texts[i - 1]) return true;
  return false;
}
