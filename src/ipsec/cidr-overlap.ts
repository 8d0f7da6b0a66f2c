// Whether any two of a list of CIDRs overlap, all at once: the check a first screening makes of every node's pod
// CIDRs before it builds the claim index (cidr-claims.ts) that later screenings look claims up in. Two CIDRs
// overlap exactly when one contains the other, and then, in the list sorted by network address (a shorter prefix
// first at the same address), some two neighbours overlap: everything sorted between a CIDR and one it contains
// starts inside it, so it lies inside it too. So one sort and one pass: for IPv4 a native sort of numbers (network
// * 64 + prefix length, exact in a double), for IPv6 (rare) a native sort of fixed-width texts. A first 5,000-peer
// screening spent ~15 ms of its ~40 adding claims to the index one by one (docs/benchmarks.md, twentieth session).
import { placesOverlap, type CidrPlace } from './cidr-claims.js';

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
    const network = p.prefixLen === 0 ? 0 : (p.v4 & (-1 << (32 - p.prefixLen))) >>> 0;
    keys[k++] = network * 64 + p.prefixLen;
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
  // Each one's network (host bits cleared) as 32 hex digits, its prefix length as 3 digits, then its index:
  // texts of one width, so the native string sort orders them by network, then shorter prefix first.
  const keys: string[] = [];
  for (let i = 0; i < places.length; i++) {
    const p = places[i] as CidrPlace;
    if (p.family !== 6) continue;
    const bytes = p.v6 as Uint8Array;
    let key = '';
    for (let b = 0; b < 16; b++) {
      const bits = Math.max(0, Math.min(8, p.prefixLen - 8 * b));
      const masked = (bytes[b] ?? 0) & ((0xff << (8 - bits)) & 0xff);
      key += (masked | 0x100).toString(16).slice(1);
    }
    keys.push(`${key}${String(p.prefixLen).padStart(3, '0')}${i}`);
  }
  keys.sort();
  for (let i = 1; i < keys.length; i++) {
    const a = places[Number((keys[i - 1] as string).slice(35))] as CidrPlace;
    const b = places[Number((keys[i] as string).slice(35))] as CidrPlace;
    if (placesOverlap(a, b)) return true;
  }
  return false;
}
