// Which CIDRs are already claimed, with fast overlap lookup: one CIDR overlaps another exactly when one
// contains the other. Each claim is indexed at its own prefix length (for "an existing claim contains
// the candidate") and at every shorter length (for "the candidate contains an existing claim"), so a
// lookup costs O(prefix length) instead of O(claims).

import type { ParsedCidr } from '../model/ip-address.js';

export interface CidrClaim {
  owner: string;
  text: string;
}

function maskedKey(cidr: ParsedCidr, length: number): string {
  let key = `${cidr.family}/${length}/`;
  for (let i = 0; 8 * i < length; i++) {
    const bits = Math.min(8, length - 8 * i);
    key += (((cidr.bytes[i] ?? 0) & ((0xff << (8 - bits)) & 0xff)) | 0x100).toString(16);
  }
  return key;
}

export class CidrClaims {
  /** Claims by (family, own length, network). */
  private readonly exact = new Map<string, CidrClaim>();
  /** A claim covering each (family, shorter-or-equal length, network) it lies inside. */
  private readonly inside = new Map<string, CidrClaim>();

  add(cidr: ParsedCidr, claim: CidrClaim): void {
    const own = maskedKey(cidr, cidr.prefixLen);
    if (!this.exact.has(own)) this.exact.set(own, claim);
    for (let length = 0; length <= cidr.prefixLen; length++) {
      const key = maskedKey(cidr, length);
      if (!this.inside.has(key)) this.inside.set(key, claim);
    }
  }

  /** A claim sharing at least one address with `cidr`, if any. */
  findOverlap(cidr: ParsedCidr): CidrClaim | undefined {
    const inner = this.inside.get(maskedKey(cidr, cidr.prefixLen));
    if (inner) return inner;
    for (let length = 0; length < cidr.prefixLen; length++) {
      const outer = this.exact.get(maskedKey(cidr, length));
      if (outer) return outer;
    }
    return undefined;
  }
}
