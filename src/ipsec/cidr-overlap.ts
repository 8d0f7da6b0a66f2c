// Whether any two of a list of CIDRs overlap, all at once: the check a first screening makes of every node's pod
// CIDRs before it builds the claim index (cidr-claims.ts) that later screenings look claims up in. Two CIDRs
// overlap exactly when one contains the other, and then, in the list sorted by network address (a shorter prefix
// first at the same address), some two neighbours overlap: everything sorted between a CIDR and one it contains
// starts inside it, so it lies inside it too. So one sort and one pass: for IPv4 a native sort of numbers (network
// * 64 + prefix length, exact in a double), for IPv6 (rare) a sort of the networks' bytes. A first 5,000-peer
// screening spent ~15 ms of its ~40 adding claims to the index one by one (docs/benchmarks.md, twentieth session).
import { clearHostBits } from '../model/ip-address.js';
import { ipv4Network, placesOverlap, type CidrPlace } from './cidr-claims.js';

/** 2^32 as a number: the size of the IPv4 address space. */
const IPV4_SPACE = 4294967296;

/** True when two of `places` share an address (one contains the other), in either family. */
export function anyOverlap(places: readonly CidrPlace[]): boolean {
  let v4 = 0;
  for (let i = 0; i < places.length; i++) if ((places[i] as CidrPlace).family === 4) v4++;
  if (v4 > 1 && anyIpv4Overlap(places, v4)) return true;
  return places.length - v4 > 1 && anyIpv6Overlap(places);
}

/** The IPv4 places (`count` of them among `places`) overlap somewhere. */
function anyIpv4Overlap(places: readonly CidrPlace[], count: number): boolean {
  const keys = new Float64Array(count);
  for (let i = 0, k = 0; i < places.length; i++) {
    const p = places[i] as CidrPlace;
    if (p.family !== 4) continue;
    keys[k++] = (ipv4Network(p.v4, p.prefixLen) >>> 0) * 64 + p.prefixLen;
  }
  keys.sort();
  for (let i = 1; i < count; i++) {
    const a = keys[i - 1] as number;
    const b = keys[i] as number;
    const aLength = a % 64;
    // b starts at or after a: inside a exactly when it starts before a's end.
    if (Math.floor(b / 64) - Math.floor(a / 64) < IPV4_SPACE / 2 ** aLength) return true;
  }
  return false;
}

/** The IPv6 places among `places` overlap somewhere. */
function anyIpv6Overlap(places: readonly CidrPlace[]): boolean {
  // Each one with its network (host bits cleared), sorted by network, then shorter prefix first.
  const sorted = places
    .filter((p) => p.family === 6)
    .map((place) => ({ place, network: clearHostBits(Uint8Array.from(place.v6 as Uint8Array), place.prefixLen) }))
    .sort((a, b) => Buffer.compare(a.network, b.network) || a.place.prefixLen - b.place.prefixLen);
  for (let i = 1; i < sorted.length; i++) {
    if (placesOverlap((sorted[i - 1] as (typeof sorted)[number]).place, (sorted[i] as (typeof sorted)[number]).place))
      return true;
  }
  return false;
}
