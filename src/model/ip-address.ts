// IPv4/IPv6 addresses and CIDRs as values, for every layer: text -> network-order bytes (one strict syntax),
// prefix and host-bit tests on such bytes, canonical text (RFC 5952 for IPv6) and CIDR overlap. Pure.
// Accepted syntax: dotted quads without leading zeros; IPv6 in full or "::"-compressed form, hex groups of 1-4
// digits in either case, optionally ending in a dotted quad. No zone ids, brackets or surrounding spaces.
//
// CIDRs come in two contracts, named as such:
// - parseCidrStrict: a network ("addr/len", no host bits), throws a one-line error naming the text. For what
//   we write (BPF maps, pod CIDRs we program).
// - parseCidrLenient: "addr/len" with host bits allowed, undefined when it is not one. For what we read and
//   compare (peer objects before normalisation, kernel dumps that may hold anyone's selectors).
// The XFRM codec's 16-byte xfrm_address_t form lives in src/xfrm/netlink-address.ts, on top of writeIpBytes.

/** Address family: 4 = IPv4 (4 bytes), 6 = IPv6 (16 bytes). The one declaration of it. */
export type Family = 4 | 6;

export interface ParsedIp {
  family: Family;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  bytes: Buffer;
}

export interface ParsedCidr extends ParsedIp {
  prefixLen: number;
  /** The CIDR as given. */
  text: string;
}

const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Dotted quad text[0..end) written to out[at..at+4]; false when it is not one. (Hot path: no regex, no slice.) */
function writeIpv4(text: string, out: Uint8Array, at: number, end = text.length): boolean {
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= end; i++) {
    const c = i < end ? text.charCodeAt(i) : 0x2e;
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

/**
 * Room for the bytes of address `text` (16 for IPv6, 4 otherwise), for writeIpBytes to fill: a slice of Node's shared
 * buffer pool, not a Buffer of its own. Buffer.alloc gave every parsed address and CIDR an ArrayBuffer and a backing
 * store of its own (5,000 each, ~0.9 MiB, for the pod CIDRs of a first 5,000-peer screening) that the garbage
 * collector then tracks one by one. Not zeroed: writeIpBytes writes every byte when it parses, and the bytes of a
 * text that does not parse are dropped (test/unit/model-ip-address.test.ts parses over a pool filled with ones). A
 * slice kept keeps its 8 KiB pool alive: ~1,000 addresses share one.
 */
function addressBytes(text: string): Buffer {
  return Buffer.allocUnsafe(text.includes(':') ? 16 : 4);
}

/** Parses a plain IPv4 or IPv6 address (no zone id, no prefix); undefined when it is not one. */
export function parseIp(text: string): ParsedIp | undefined {
  const bytes = addressBytes(text);
  const family = writeIpBytes(text, bytes, 0);
  return family && { family, bytes };
}

/** parseIp that throws a one-line error naming the text instead of returning undefined. */
export function parseIpStrict(text: string): ParsedIp {
  const parsed = parseIp(text);
  if (!parsed) throw new Error(`"${text}" is not an IPv4 or IPv6 address`);
  return parsed;
}

/** Room for writeIpBytes when only the syntax is checked. */
const ADDRESS_SCRATCH = new Uint8Array(16);

/** The IPv4 address of the first 4 network-order bytes as a signed 32-bit number (a small integer to V8). */
export function ipv4Number(bytes: Uint8Array): number {
  return ((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
}

/** True when `text` is an IPv4 or IPv6 address (parseIp's syntax, without building its bytes). */
export function isIpAddress(text: string): boolean {
  return writeIpBytes(text, ADDRESS_SCRATCH, 0) !== undefined;
}

export function ipFamily(text: string): Family | undefined {
  return parseIp(text)?.family;
}

/**
 * "addr/len" split and parsed, host bits as given; a reason when it is not one. Called for every peer CIDR on
 * every screening, so it builds the result directly: no intermediate ParsedIp, no spread copy, no regex.
 */
function splitCidr(text: string): ParsedCidr | string {
  const slash = text.indexOf('/');
  if (slash < 0) return 'has no /prefix length';
  const address = text.slice(0, slash);
  const bytes = addressBytes(address);
  const family = writeIpBytes(address, bytes, 0);
  if (family === undefined) return 'does not start with an IPv4 or IPv6 address';
  const max = bytes.length * 8;
  const prefixLen = prefixLength(text, slash + 1);
  if (prefixLen === undefined || prefixLen > max) return `has a prefix length outside 0..${max}`;
  return { family, bytes, prefixLen, text };
}

/** The decimal number text[from..] spells: "0" or 1-3 digits without a leading zero; undefined otherwise. */
function prefixLength(text: string, from: number): number | undefined {
  const digits = text.length - from;
  if (digits < 1 || digits > 3) return undefined;
  let n = 0;
  for (let i = from; i < text.length; i++) {
    const d = text.charCodeAt(i) - 48;
    if (d < 0 || d > 9 || (d === 0 && i === from && digits > 1)) return undefined;
    n = n * 10 + d;
  }
  return n;
}

/**
 * An IPv4 CIDR in splitCidr's syntax ("a.b.c.d/len", host bits allowed) read without building anything: writes its
 * address as a signed 32-bit number (a small integer to V8) to `out.v4` and its prefix length to `out.prefixLen`;
 * false, with `out` as it was, when `text` is not one (IPv6 included). For what reads thousands of pod CIDRs at once
 * (a first screening of 5,000 peers), where parseCidrLenient's bytes, slice and record are three objects per CIDR.
 */
export function readIpv4Cidr(text: string, out: { v4: number; prefixLen: number }): boolean {
  const slash = text.indexOf('/');
  if (slash < 0 || !writeIpv4(text, ADDRESS_SCRATCH, 0, slash)) return false;
  const prefixLen = prefixLength(text, slash + 1);
  if (prefixLen === undefined || prefixLen > 32) return false;
  out.v4 = ipv4Number(ADDRESS_SCRATCH);
  out.prefixLen = prefixLen;
  return true;
}

/**
 * Strict: "addr/len" naming a network (no host bits set beyond the prefix). Throws a one-line error naming the
 * text otherwise.
 */
export function parseCidrStrict(text: string): ParsedCidr {
  const parsed = splitCidr(text);
  if (typeof parsed === 'string') throw new Error(`CIDR "${text}" ${parsed}`);
  if (hasHostBits(parsed.bytes, parsed.prefixLen, parsed.bytes.length)) {
    throw new Error(`CIDR "${text}" has host bits set beyond /${parsed.prefixLen}`);
  }
  return parsed;
}

/** Lenient: "addr/len" with host bits allowed (see normaliseCidr); undefined when the text is not a CIDR. */
export function parseCidrLenient(text: string): ParsedCidr | undefined {
  const parsed = splitCidr(text);
  return typeof parsed === 'string' ? undefined : parsed;
}

// Texts built here are kept for as long as a plan is (selectors, claims, memoised forms: tens of thousands at
// 5,000 peers), so they are built by join, which makes one flat string, not by template literals and +, which
// make chains of rope nodes (ConsStrings: measured ~5 MiB of them in a 5,000-peer plan).

/** Canonical text of address bytes: dotted quad, or RFC 5952 compressed lowercase IPv6. */
export function formatIp(bytes: Uint8Array): string {
  // Indexed, not Array.from: no iterator per address in code V8 has not optimised yet (a first plan).
  if (bytes.length === 4) return [bytes[0], bytes[1], bytes[2], bytes[3]].join('.');
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
  return [hex.slice(0, bestStart).join(':'), hex.slice(bestStart + bestLength).join(':')].join('::');
}

// Reconciles compare thousands of addresses that repeat from run to run: memoise the canonical forms of IPv6 texts
// (an IPv4 text is its own; see canonicalIp).
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

// The compute functions of the memoised forms, defined once: an arrow function per call would be allocated
// on every lookup, thousands of times per reconcile. They see IPv6 texts only (texts with a colon).
function computeCanonicalIp(t: string): string {
  const parsed = parseIp(t);
  return parsed ? formatIp(parsed.bytes) : t;
}

function computeSelectorCidr(t: string): string {
  const cidr = parseCidrLenient(t);
  return cidr ? [formatIp(cidr.bytes), cidr.prefixLen].join('/') : t;
}

/**
 * Canonical text of an address, or the input unchanged when it does not parse (foreign junk stays comparable). A
 * text without a colon is its own canonical form either way (a dotted quad in the one syntax taken, or junk): only
 * IPv6 texts are looked up, so the IPv4 addresses of a first plan cost no memo entry each.
 */
export function canonicalIp(text: string): string {
  return text.includes(':') ? memo(canonicalIpCache, text, computeCanonicalIp) : text;
}

/** "10.244.1.7/24" -> "10.244.1.0/24", IPv6 in canonical text; undefined when not a CIDR. */
export function normaliseCidr(text: string): string | undefined {
  const cidr = parseCidrLenient(text);
  return cidr ? normalisedCidrText(cidr) : undefined;
}

/** normaliseCidr of a CIDR parsed already (its bytes are not changed). */
export function normalisedCidrText(cidr: ParsedCidr): string {
  // A dotted quad and a prefix length without leading zeros (the one syntax splitCidr takes) are canonical: an
  // IPv4 network without host bits is its own text.
  if (cidr.family === 4 && !hasHostBits(cidr.bytes, cidr.prefixLen, 4)) return cidr.text;
  return [formatIp(clearHostBits(new Uint8Array(cidr.bytes), cidr.prefixLen)), cidr.prefixLen].join('/');
}

/**
 * Canonical address text with the prefix kept but host bits left as given: the kernel compares selectors
 * byte for byte, so "10.0.0.1/24" and "10.0.0.0/24" are different selectors. Unparseable input is returned as is.
 */
export function canonicalSelectorCidr(text: string): string {
  // Without a colon, an IPv4 CIDR in the one syntax or junk: its own form either way (as in canonicalIp).
  return text.includes(':') ? memo(canonicalCidrCache, text, computeSelectorCidr) : text;
}

/** True when two CIDRs of the same family share at least one address (one contains the other). */
export function cidrsOverlap(a: ParsedCidr, b: ParsedCidr): boolean {
  return a.family === b.family && prefixMatches(a.bytes, b.bytes, Math.min(a.prefixLen, b.prefixLen));
}

/** The "any" selector for a family. */
export function anyCidr(family: Family): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}
