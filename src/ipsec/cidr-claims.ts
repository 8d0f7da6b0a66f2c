// Which CIDRs are already claimed, with fast overlap lookup: one CIDR overlaps another exactly when one
// contains the other. Each claim is indexed at its own prefix length (for "an existing claim contains
// the candidate") and at every shorter length (for "the candidate contains an existing claim"), so a
// lookup costs O(prefix length) instead of O(claims). IPv4 networks are keyed by number (no string is built per
// length, which at 5,000 peers was most of the screening time), IPv6 networks by text.

import type { Family, ParsedCidr } from '../model/ip-address.js';

export interface CidrClaim {
  /** The name of the node that claims it. */
  owner: string;
  text: string;
}

/** The IPv4 network of `bytes` at `length` bits (0..32) as a signed 32-bit number (a small integer to V8). */
function ipv4Network(bytes: Uint8Array, length: number): number {
  const address = ((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
  return length === 0 ? 0 : address & (-1 << (32 - length));
}

/** An IPv6 network's key: its length and the network's bytes. */
function ipv6Key(cidr: ParsedCidr, length: number): string {
  let key = `${length}/`;
  for (let i = 0; 8 * i < length; i++) {
    const bits = Math.min(8, length - 8 * i);
    key += (((cidr.bytes[i] ?? 0) & ((0xff << (8 - bits)) & 0xff)) | 0x100).toString(16);
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

  get(cidr: ParsedCidr, length: number): CidrClaim | undefined {
    if (cidr.family === 4) return this.v4[length]?.get(ipv4Network(cidr.bytes, length));
    return this.v6.get(ipv6Key(cidr, length));
  }

  /** Sets the claim of the network unless it has one; false when it had one. */
  setIfFree(cidr: ParsedCidr, length: number, claim: CidrClaim): boolean {
    if (cidr.family === 4) {
      let map = this.v4[length];
      if (map === undefined) {
        map = new Map();
        this.v4[length] = map;
      }
      const key = ipv4Network(cidr.bytes, length);
      if (map.has(key)) return false;
      map.set(key, claim);
      return true;
    }
    const key = ipv6Key(cidr, length);
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

  add(cidr: ParsedCidr, claim: CidrClaim): void {
    this.exact.setIfFree(cidr, cidr.prefixLen, claim);
    const lengths = this.lengths[cidr.family];
    if (!lengths.includes(cidr.prefixLen)) {
      lengths.push(cidr.prefixLen);
      lengths.sort((a, b) => a - b);
    }
    // Every shorter length of a covered network is covered already (by this claim or an earlier one).
    for (let length = cidr.prefixLen; length >= 0; length--) if (!this.inside.setIfFree(cidr, length, claim)) break;
  }

  /** A claim sharing at least one address with `cidr`, if any. */
  findOverlap(cidr: ParsedCidr): CidrClaim | undefined {
    const inner = this.inside.get(cidr, cidr.prefixLen);
    if (inner) return inner;
    const lengths = this.lengths[cidr.family];
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i] as number;
      if (length >= cidr.prefixLen) break;
      const outer = this.exact.get(cidr, length);
      if (outer) return outer;
    }
    return undefined;
  }
}
