// IP address and CIDR text -> bytes in network order, as the BPF maps store them. Pure; every rejection is a
// one-line error naming the offending text.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface ParsedAddr {
  family: Family;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  bytes: Buffer;
}

export interface ParsedCidr extends ParsedAddr {
  prefixLen: number;
  /** The CIDR as given. */
  text: string;
}

function ipv4Bytes(text: string): Buffer {
  return Buffer.from(text.split('.').map((part) => Number(part)));
}

function ipv6Bytes(text: string): Buffer {
  // A dotted IPv4 tail (::ffff:192.0.2.1) becomes its two 16-bit groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  const hex = tail.includes('.')
    ? `${text.slice(0, lastColon + 1)}${ipv4Bytes(tail).readUInt16BE(0).toString(16)}:${ipv4Bytes(tail).readUInt16BE(2).toString(16)}`
    : text;
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const gap = hex.indexOf('::');
  let words: number[];
  if (gap >= 0) {
    const left = groups(hex.slice(0, gap));
    const right = groups(hex.slice(gap + 2));
    words = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  } else {
    words = groups(hex);
  }
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** Parses an IPv4 or IPv6 address (no zone, no brackets). */
export function parseAddr(text: string): ParsedAddr {
  if (isIPv4(text)) return { family: 4, bytes: ipv4Bytes(text) };
  if (isIPv6(text) && !text.includes('%')) return { family: 6, bytes: ipv6Bytes(text) };
  throw new Error(`"${text}" is not an IPv4 or IPv6 address`);
}

/** Parses "addr/len"; the address must be the network address (no host bits set). */
export function parseCidr(text: string): ParsedCidr {
  const slash = text.indexOf('/');
  if (slash < 0) throw new Error(`CIDR "${text}" has no /prefix length`);
  const lenText = text.slice(slash + 1);
  let addr: ParsedAddr;
  try {
    addr = parseAddr(text.slice(0, slash));
  } catch {
    throw new Error(`CIDR "${text}" does not start with an IPv4 or IPv6 address`);
  }
  const max = addr.family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new Error(`CIDR "${text}" has a prefix length outside 0..${max}`);
  }
  const prefixLen = Number(lenText);
  if (!prefixMatches(addr.bytes, maskedCopy(addr.bytes, prefixLen), addr.bytes.length * 8)) {
    throw new Error(`CIDR "${text}" has host bits set beyond /${prefixLen}`);
  }
  return { ...addr, prefixLen, text };
}

/** A copy of bytes with every bit after the first prefixLen cleared. */
export function maskedCopy(bytes: Buffer, prefixLen: number): Buffer {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLen - i * 8));
    out[i] = (out[i] ?? 0) & ((0xff00 >> keep) & 0xff);
  }
  return out;
}

/** Whether a and b agree on their first `bits` bits. */
export function prefixMatches(a: Buffer, b: Buffer, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return ((a[whole] ?? 0) & mask) === ((b[whole] ?? 0) & mask);
}
