// Textual IPv4/IPv6 addresses and CIDRs: strict parsing (src/model/ip-bytes.ts), canonical text (RFC 5952 for IPv6), host-bit
// normalisation and overlap tests. Pure; used to validate peers and to compare kernel objects by value,
// since the kernel stores binary addresses and dumps may spell them differently than we published them.

import { clearHostBits, prefixMatches, writeIpBytes } from '../model/ip-bytes.js';
import type { Family } from '../xfrm/types.js';

export interface ParsedIp {
  family: Family;
  /** 4 or 16 bytes, network order. */
  bytes: Uint8Array;
}

export interface ParsedCidr extends ParsedIp {
  prefixLength: number;
}

/** Parses a plain IPv4 or IPv6 address (no zone id, no prefix); undefined when it is not one. */
export function parseIp(text: string): ParsedIp | undefined {
  const bytes = new Uint8Array(text.includes(':') ? 16 : 4);
  const family = writeIpBytes(text, bytes, 0);
  return family && { family, bytes };
}

/** Canonical text of address bytes: dotted quad, or RFC 5952 compressed lowercase IPv6. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

// Reconciles compare thousands of addresses that repeat from run to run: memoise the canonical forms.
const CACHE_LIMIT = 65536;
const canonicalIpCache = new Map<string, string>();
const canonicalCidrCache = new Map<string, string>();

function memo(cache: Map<string, string>, text: string, compute: (text: string) => string): string {
  let value = cache.get(text);
  if (value === undefined) {
    if (cache.size >= CACHE_LIMIT) cache.clear();
    value = compute(text);
    cache.set(text, value);
  }
  return value;
}

/** Canonical text of an address, or the input unchanged when it does not parse (foreign junk stays comparable). */
export function canonicalIp(text: string): string {
  return memo(canonicalIpCache, text, (t) => {
    const parsed = parseIp(t);
    return parsed ? formatIp(parsed.bytes) : t;
  });
}

export function ipFamily(text: string): Family | undefined {
  return parseIp(text)?.family;
}

/** Parses "addr/len" with a decimal prefix length in range; host bits may be set (see normaliseCidr). */
export function parseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const lengthText = text.slice(slash + 1);
  if (!ip || !/^(0|[1-9][0-9]{0,2})$/.test(lengthText)) return undefined;
  const prefixLength = Number(lengthText);
  if (prefixLength > ip.bytes.length * 8) return undefined;
  return { ...ip, prefixLength };
}

/** "10.244.1.7/24" -> "10.244.1.0/24", IPv6 in canonical text; undefined when not a CIDR. */
export function normaliseCidr(text: string): string | undefined {
  const cidr = parseCidr(text);
  if (!cidr) return undefined;
  return `${formatIp(clearHostBits(Uint8Array.from(cidr.bytes), cidr.prefixLength))}/${cidr.prefixLength}`;
}

/**
 * Canonical address text with the prefix kept but host bits left as given: the kernel compares selectors
 * byte for byte, so "10.0.0.1/24" and "10.0.0.0/24" are different selectors. Unparseable input is returned as is.
 */
export function canonicalSelectorCidr(text: string): string {
  return memo(canonicalCidrCache, text, (t) => {
    const cidr = parseCidr(t);
    return cidr ? `${formatIp(cidr.bytes)}/${cidr.prefixLength}` : t;
  });
}

/** True when two CIDRs of the same family share at least one address (one contains the other). */
export function cidrsOverlap(a: ParsedCidr, b: ParsedCidr): boolean {
  return a.family === b.family && prefixMatches(a.bytes, b.bytes, Math.min(a.prefixLength, b.prefixLength));
}

/** The "any" selector for a family. */
export function anyCidr(family: Family): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}
