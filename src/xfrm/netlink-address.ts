// Textual IPv4/IPv6 addresses and CIDRs <-> the 16-byte xfrm_address_t of the XFRM netlink structs (IPv4 in
// the first 4 bytes, network order). Formatting follows glibc's inet_ntop, so decoded text matches `ip xfrm`.
import type { Family } from './types.js';

export const XFRM_ADDRESS_BYTES = 16;

export interface ParsedCidr {
  family: Family;
  /** 16 bytes, host bits zero. */
  bytes: Buffer;
  prefixLen: number;
}

const IPV4_PART = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseIpv4Into(text: string, out: Buffer, at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const part = parts[i] ?? '';
    if (!IPV4_PART.test(part)) return false;
    out[at + i] = Number(part);
  }
  return true;
}

function parseIpv6Into(text: string, out: Buffer): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groupsOf(halves[0] ?? '');
  const tail = halves.length === 2 ? groupsOf(halves[1] ?? '') : [];
  const words: number[] = [];
  const pushGroups = (groups: string[], allowV4Last: boolean): boolean => {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i] ?? '';
      if (allowV4Last && i === groups.length - 1 && g.includes('.')) {
        const v4 = Buffer.alloc(4);
        if (!parseIpv4Into(g, v4, 0)) return false;
        words.push(v4.readUInt16BE(0), v4.readUInt16BE(2));
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
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return true;
}

/** Parses an IPv4 or IPv6 address; with `family` given, the address must be of that family. */
export function parseAddress(text: string, family?: Family): { family: Family; bytes: Buffer } {
  const bytes = Buffer.alloc(XFRM_ADDRESS_BYTES);
  let parsed: Family | undefined;
  if (text.includes(':')) {
    if (parseIpv6Into(text, bytes)) parsed = 6;
  } else if (parseIpv4Into(text, bytes, 0)) {
    parsed = 4;
  }
  if (parsed === undefined) throw new Error(`"${text}" is not an IP address`);
  if (family !== undefined && parsed !== family) {
    throw new Error(`"${text}" is an IPv${parsed} address where IPv${family} was expected`);
  }
  return { family: parsed, bytes };
}

/** Parses "addr/len" (or a bare address = host route); host bits must be zero, as the kernel compares selectors bytewise. */
export function parseCidr(text: string, family?: Family): ParsedCidr {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const { family: fam, bytes } = parseAddress(addrText, family);
  const maxLen = fam === 4 ? 32 : 128;
  let prefixLen = maxLen;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > maxLen) {
      throw new Error(`"${text}" has a bad prefix length (0..${maxLen} for IPv${fam})`);
    }
    prefixLen = Number(lenText);
  }
  for (let bit = prefixLen; bit < maxLen; bit++) {
    if (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) {
      throw new Error(`"${text}" has host bits set beyond /${prefixLen}`);
    }
  }
  return { family: fam, bytes, prefixLen };
}

/** Formats the first 4 (IPv4) or 16 (IPv6) bytes of `bytes` from `offset` like inet_ntop. */
export function formatAddress(bytes: Buffer, offset: number, family: Family): string {
  if (family === 4) {
    return `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
  }
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(bytes.readUInt16BE(offset + i * 2));
  // Longest run (first on ties) of at least two zero words collapses to "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  const v4Tail = bestStart === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff));
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    if (i === 6 && v4Tail) {
      out += `${bytes[offset + 12]}.${bytes[offset + 13]}.${bytes[offset + 14]}.${bytes[offset + 15]}`;
      break;
    }
    out += (words[i] ?? 0).toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

export function formatCidr(bytes: Buffer, offset: number, family: Family, prefixLen: number): string {
  return `${formatAddress(bytes, offset, family)}/${prefixLen}`;
}
