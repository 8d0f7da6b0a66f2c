// Which CIDRs are already claimed, with fast overlap lookup: one CIDR overlaps another exactly when one
// contains the other. Each claim is indexed at its own prefix length (for "an existing claim contains
// the candidate") and at every shorter length (for "the candidate contains an existing claim"), so a
// lookup costs O(prefix length) instead of O(claims). Keys are numbers for IPv4 (network * 64 + length: no
// string is built per length, which at 5,000 peers was most of the screening time) and strings for IPv6.

import type { Family, ParsedCidr } from '../model/ip-address.js';

export interface CidrClaim {
  /** The name of the node that claims it. */
  owner: string;
  text: string;
}

/** The IPv4 network of `bytes` at `length` bits (0..32) as an unsigned 32-bit number. */
function ipv4Network(bytes: Uint8Array, length: number): number {
  const address = (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0;
  return length === 0 ? 0 : (address & (0xffffffff << (32 - length))) >>> 0;
}

function maskedKey(cidr: ParsedCidr, length: number): number | string {
  if (cidr.family === 4) return ipv4Network(cidr.bytes, length) * 64 + length;
  let key = `${length}/`;
  for (let i = 0; 8 * i < length; i++) {
    const bits = Math.min(8, length - 8 * i);
    key += (((cidr.bytes[i] ?? 0) & ((0xff << (8 - bits)) & 0xff)) | 0x100).toString(16);
  }
  return key;
}

export class CidrClaims {
  /** Claims by (family, own length, network). */
  private readonly exact = new Map<number | string, CidrClaim>();
  /** A claim covering each (family, shorter-or-equal length, network) it lies inside. */
  private readonly inside = new Map<number | string, CidrClaim>();
  /**
   * The distinct prefix lengths of the claims in `exact`, ascending, per family: a lookup for a claim containing
   * the candidate asks only at these (pod CIDRs share one or two lengths) instead of at every shorter length.
   */
  private readonly lengths: Record<Family, number[]> = { 4: [], 6: [] };

  add(cidr: ParsedCidr, claim: CidrClaim): void {
    const own = maskedKey(cidr, cidr.prefixLen);
    if (!this.exact.has(own)) this.exact.set(own, claim);
    const lengths = this.lengths[cidr.family];
    if (!lengths.includes(cidr.prefixLen)) {
      lengths.push(cidr.prefixLen);
      lengths.sort((a, b) => a - b);
    }
    for (let length = cidr.prefixLen; length >= 0; length--) {
      const key = maskedKey(cidr, length);
      // Every shorter length of a covered network is covered already (by this claim or an earlier one).
      if (this.inside.has(key)) break;
      this.inside.set(key, claim);
    }
  }

  /** A claim sharing at least one address with `cidr`, if any. */
  findOverlap(cidr: ParsedCidr): CidrClaim | undefined {
    const inner = this.inside.get(maskedKey(cidr, cidr.prefixLen));
    if (inner) return inner;
    const lengths = this.lengths[cidr.family];
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i] as number;
      if (length >= cidr.prefixLen) break;
      const outer = this.exact.get(maskedKey(cidr, length));
      if (outer) return outer;
    }
    return undefined;
  }
}
