// Random CIDR sets and probe addresses for the remote-CIDR index tests (pure, unit and kernel alike): a seeded
// generator, networks whose bytes come from a small alphabet so that sets nest and share prefixes, addresses
// just inside or just outside one of them, and the text forms the datapath takes.
import type { Family, ParsedCidr } from '../../src/model/ip-address.js';

/** A seeded generator of integers in [0, n). */
export function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 16) % n; // the LCG's higher bits: its low bits repeat quickly
  };
}

/** A random network of the family; one in four has any prefix length (/0 included), the rest common ones. */
export function randomCidr(rnd: (n: number) => number, family: Family): ParsedCidr {
  const len = family === 4 ? 4 : 16;
  const alphabet = [0, 1, 10, 0x80, 0xfd, 0xff, 244, 64];
  const bytes = Buffer.from(Array.from({ length: len }, () => alphabet[rnd(alphabet.length)] ?? 0));
  const common = [8, 16, 20, 24, 32, 48, 56, 64, 120, 128][rnd(10)] ?? 24;
  const prefixLen = rnd(4) === 0 ? rnd(len * 8 + 1) : common % (len * 8 + 1);
  for (let bit = prefixLen; bit < len * 8; bit++) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return { family, bytes, prefixLen, text: '' };
}

/** An address of the family near one of the CIDRs (inside, or its last prefix bit flipped), or a random one. */
export function probe(rnd: (n: number) => number, cidrs: readonly ParsedCidr[], family: Family): Buffer {
  const len = family === 4 ? 4 : 16;
  const addr = Buffer.from(Array.from({ length: len }, () => rnd(256)));
  const same = cidrs.filter((c) => c.family === family);
  const c = same[rnd(same.length + 1)];
  if (c) {
    for (let bit = 0; bit < c.prefixLen; bit++) {
      const mask = 0x80 >> (bit & 7);
      addr[bit >> 3] = ((addr[bit >> 3] ?? 0) & ~mask) | ((c.bytes[bit >> 3] ?? 0) & mask);
    }
    const last = c.prefixLen - 1;
    if (last >= 0 && rnd(2) === 0) addr[last >> 3] = (addr[last >> 3] ?? 0) ^ (0x80 >> (last & 7));
  }
  return addr;
}

/** Address bytes as text (IPv6 uncompressed groups). */
export function addrText(family: Family, b: Uint8Array): string {
  if (family === 4) return [...b].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

export function cidrText(c: ParsedCidr): string {
  return `${addrText(c.family, c.bytes)}/${c.prefixLen}`;
}
