// Which CIDRs are already claimed, with fast overlap lookup: one CIDR overlaps another exactly when one
// contains the other. Each claim is indexed at its own prefix length (for "an existing claim contains
// the candidate") and at every shorter length (for "the candidate contains an existing claim"), so a
// lookup costs O(prefix length) instead of O(claims). IPv4 networks are keyed by number (no string is built per
// length, which at 5,000 peers was most of the screening time), IPv6 networks by text.
//
// A claim carries where its CIDR lies (CidrPlace: an IPv4 address as a number, an IPv6 one as bytes) besides its
// owner and text: screening makes one object per pod CIDR, where a parsed CIDR, its bytes, a claim and a record
// of both were four (a first 5,000-peer screening made 20,000 of them; docs/benchmarks.md, nineteenth session).

import { ipv4Number, prefixMatches, type Family, type ParsedCidr } from '../model/ip-address.js';

/** Where a CIDR lies: its family and prefix length, and its address (host bits as given). */
export interface CidrPlace {
  family: Family;
  prefixLen: number;
  /** IPv4: the address as a signed 32-bit number, as readIpv4Cidr gives it (0 for IPv6). */
  v4: number;
  /** IPv6: the address's 16 bytes (undefined for IPv4). */
  v6: Uint8Array | undefined;
}

export interface CidrClaim extends CidrPlace {
  /** The name of the node that claims it. */
  owner: string;
  /** Its normalised text. */
  text: string;
}

/** The place of a parsed CIDR. */
export function placeOf(cidr: ParsedCidr): CidrPlace {
  return cidr.family === 4
    ? { family: 4, prefixLen: cidr.prefixLen, v4: ipv4Number(cidr.bytes), v6: undefined }
    : { family: 6, prefixLen: cidr.prefixLen, v4: 0, v6: cidr.bytes };
}

/** The IPv4 network of `address` at `length` bits (0..32) as a signed 32-bit number (a small integer to V8). */
export function ipv4Network(address: number, length: number): number {
  return length === 0 ? 0 : address & (-1 << (32 - length));
}

/** True when two CIDRs share at least one address (one contains the other); never across families. */
export function placesOverlap(a: CidrPlace, b: CidrPlace): boolean {
  if (a.family !== b.family) return false;
  const bits = Math.min(a.prefixLen, b.prefixLen);
  if (a.family === 4) return ipv4Network(a.v4, bits) === ipv4Network(b.v4, bits);
  return prefixMatches(a.v6 as Uint8Array, b.v6 as Uint8Array, bits);
}

/** An IPv6 network's key: its length and the network's bytes. */
function ipv6Key(bytes: Uint8Array, length: number): string {
  let key = `${length}/`;
  for (let i = 0; 8 * i < length; i++) {
    const bits = Math.min(8, length - 8 * i);
    key += (((bytes[i] ?? 0) & ((0xff << (8 - bits)) & 0xff)) | 0x100).toString(16);
  }
  return key;
}

/**
 * Claims by network, per family and length. IPv4 networks are keyed by their signed 32-bit value in a map per
 * length: a key that also held the length (network * 64 + length) was a heap number per key, ~15,000 of them kept
 * by a first 5,000-peer screening. IPv6 networks are keyed by text (ipv6Key) in one map.
 */
class NetworkMap {
  private readonly v4: (Map<number, CidrClaim> | undefined)[] = [];
  private readonly v6 = new Map<string, CidrClaim>();

  get(place: CidrPlace, length: number): CidrClaim | undefined {
    if (place.family === 4) return this.v4[length]?.get(ipv4Network(place.v4, length));
    return this.v6.get(ipv6Key(place.v6 as Uint8Array, length));
  }

  /** Sets the claim of the network unless it has one; false when it had one. */
  setIfFree(place: CidrPlace, length: number, claim: CidrClaim): boolean {
    if (place.family === 4) {
      let map = this.v4[length];
      if (map === undefined) {
        map = new Map();
        this.v4[length] = map;
      }
      const key = ipv4Network(place.v4, length);
      if (map.has(key)) return false;
      map.set(key, claim);
      return true;
    }
    const key = ipv6Key(place.v6 as Uint8Array, length);
    if (this.v6.has(key)) return false;
    this.v6.set(key, claim);
    return true;
  }
}

export class CidrClaims {
  /** Claims by (family, own length, network). */
  private readonly exact = new NetworkMap();
  /** A claim covering each (family, shorter-or-equal length, network) it lies inside. */
  private readonly inside = new NetworkMap();
  /**
   * The distinct prefix lengths of the claims in `exact`, ascending, per family: a lookup for a claim containing
   * the candidate asks only at these (pod CIDRs share one or two lengths) instead of at every shorter length.
   */
  private readonly lengths: Record<Family, number[]> = { 4: [], 6: [] };

  /** Adds the claim (at the place it carries). */
  add(claim: CidrClaim): void {
    this.exact.setIfFree(claim, claim.prefixLen, claim);
    const lengths = this.lengths[claim.family];
    if (!lengths.includes(claim.prefixLen)) {
      lengths.push(claim.prefixLen);
      lengths.sort((a, b) => a - b);
    }
    // Every shorter length of a covered network is covered already (by this claim or an earlier one).
    for (let length = claim.prefixLen; length >= 0; length--) if (!this.inside.setIfFree(claim, length, claim)) break;
  }

  /** A claim sharing at least one address with the CIDR at `place`, if any. */
  findOverlap(place: CidrPlace): CidrClaim | undefined {
    const inner = this.inside.get(place, place.prefixLen);
    if (inner) return inner;
    const lengths = this.lengths[place.family];
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i] as number;
      if (length >= place.prefixLen) break;
      const outer = this.exact.get(place, length);
      if (outer) return outer;
    }
    return undefined;
  }
}
