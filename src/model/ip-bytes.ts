// Textual IPv4/IPv6 address -> network-order bytes, and prefix/host-bit tests on such bytes. The one strict
// parser behind the IPsec core (src/ipsec/ip-address.ts), the XFRM netlink encoder (src/xfrm/netlink-address.ts,
// a hot path: it writes straight into the caller's buffer) and the BPF map layout (src/datapath/addr.ts).
// Accepted: dotted quads without leading zeros; IPv6 in full or "::"-compressed form, hex groups of 1-4 digits in
// either case, optionally ending in a dotted quad. No zone ids, brackets, prefixes or surrounding spaces.
import type { Family } from '../xfrm/types.js';

const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Dotted quad written to out[at..at+4]; false when `text` is not one. (Hot path: no regex.) */
function writeIpv4(text: string, out: Uint8Array, at: number): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && value === 0) return false; // leading zero
      value = value * 10 + (c - 0x30);
      if (++digits > 3 || value > 255) return false;
    } else if (c === 0x2e && digits > 0 && part < 4) {
      out[at + part++] = value;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  return part === 4;
}

/** IPv6 text written to out[at..at+16]; false when `text` is not one. */
function writeIpv6(text: string, out: Uint8Array, at: number): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  const words: number[] = [];
  const v4 = new Uint8Array(4);
  const pushGroups = (groups: string[], allowV4Last: boolean): boolean => {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i] ?? '';
      if (allowV4Last && i === groups.length - 1 && g.includes('.')) {
        if (!writeIpv4(g, v4, 0)) return false;
        words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      } else if (IPV6_GROUP.test(g)) {
        words.push(parseInt(g, 16));
      } else {
        return false;
      }
    }
    return true;
  };
  if (!pushGroups(head, halves.length === 1)) return false;
  const headWords = words.length;
  if (!pushGroups(tail, true)) return false;
  const tailWords = words.length - headWords;
  if (halves.length === 1) {
    if (words.length !== 8) return false;
  } else {
    if (words.length > 7) return false;
    words.splice(headWords, 0, ...new Array<number>(8 - headWords - tailWords).fill(0));
  }
  for (let i = 0; i < 8; i++) {
    const w = words[i] ?? 0;
    out[at + 2 * i] = w >> 8;
    out[at + 2 * i + 1] = w & 0xff;
  }
  return true;
}

/**
 * Parses an IPv4 or IPv6 address and writes its bytes into out[at..] (4 for IPv4, 16 for IPv6); returns the
 * family, or undefined when `text` is not an address (out may then hold partial bytes).
 */
export function writeIpBytes(text: string, out: Uint8Array, at: number): Family | undefined {
  if (text.includes(':')) return writeIpv6(text, out, at) ? 6 : undefined;
  return writeIpv4(text, out, at) ? 4 : undefined;
}

/** Whether any bit after the first `prefixLen` of bytes[0..length) is set. */
export function hasHostBits(bytes: Uint8Array, prefixLen: number, length: number): boolean {
  const whole = prefixLen >> 3;
  const rest = prefixLen & 7;
  if (rest !== 0 && ((bytes[whole] ?? 0) & (0xff >> rest)) !== 0) return true;
  for (let i = whole + (rest !== 0 ? 1 : 0); i < length; i++) if (bytes[i] !== 0) return true;
  return false;
}

/** Whether a and b agree on their first `bits` bits. */
export function prefixMatches(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return ((a[whole] ?? 0) & mask) === ((b[whole] ?? 0) & mask);
}

/** Clears every bit of `bytes` after the first `prefixLen`, in place; returns `bytes`. */
export function clearHostBits<T extends Uint8Array>(bytes: T, prefixLen: number): T {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff00 >> keep) & 0xff);
  }
  return bytes;
}
