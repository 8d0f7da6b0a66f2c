// IP address and CIDR text -> bytes in network order, as the BPF maps store them (parsed by
// src/model/ip-bytes.ts). Pure; every rejection is a one-line error naming the offending text.
import { clearHostBits, hasHostBits, prefixMatches, writeIpBytes } from '../model/ip-bytes.js';

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

/** Parses an IPv4 or IPv6 address (no zone, no brackets). */
export function parseAddr(text: string): ParsedAddr {
  const bytes = Buffer.alloc(text.includes(':') ? 16 : 4);
  const family = writeIpBytes(text, bytes, 0);
  if (family === undefined) throw new Error(`"${text}" is not an IPv4 or IPv6 address`);
  return { family, bytes };
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
  if (hasHostBits(addr.bytes, prefixLen, addr.bytes.length)) {
    throw new Error(`CIDR "${text}" has host bits set beyond /${prefixLen}`);
  }
  return { ...addr, prefixLen, text };
}

/** A copy of bytes with every bit after the first prefixLen cleared. */
export function maskedCopy(bytes: Buffer, prefixLen: number): Buffer {
  return clearHostBits(Buffer.from(bytes), prefixLen);
}

/** Whether a and b agree on their first `bits` bits. */
export { prefixMatches };
