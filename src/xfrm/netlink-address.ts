// Textual IPv4/IPv6 addresses and CIDRs <-> the 16-byte xfrm_address_t of the XFRM netlink structs (IPv4 in
// the first 4 bytes, network order), parsed by src/model/ip-address.ts and cached. Formatting follows glibc's
// inet_ntop, so decoded text matches `ip xfrm`. A selector CIDR here may be a bare address (a host route) but
// must not have host bits set, as the kernel compares selectors byte for byte.
import { hasHostBits, writeIpBytes, type Family } from '../model/ip-address.js';

export const XFRM_ADDRESS_BYTES = 16;

interface Parsed {
  family: Family;
  /** The 16 bytes, as in xfrm_address_t, at `offset` in a shared slab (a view per entry would cost ~100 bytes). */
  slab: Buffer;
  offset: number;
  prefixLen: number;
}

// Parsed texts, so the thousands of repeats in one batch (the local address, "0.0.0.0/0", a peer's address in
// its SAs and policies) are parsed once. Bounded: cleared when it grows past CACHE_LIMIT entries.
const CACHE_LIMIT = 65536;
const addressCache = new Map<string, Parsed>();
const cidrCache = new Map<string, Parsed>();

// Cached address bytes live in shared slabs (one allocation per 256 entries instead of one per entry).
const SLAB_ENTRIES = 256;
let slab = Buffer.alloc(0);
let slabUsed = 0;

/** Takes the next 16 bytes of the current slab (a fresh slab when it is full); their offset in `slab`. */
function slabSlot(): number {
  if (slabUsed + XFRM_ADDRESS_BYTES > slab.length) {
    slab = Buffer.alloc(XFRM_ADDRESS_BYTES * SLAB_ENTRIES);
    slabUsed = 0;
  }
  slabUsed += XFRM_ADDRESS_BYTES;
  return slabUsed - XFRM_ADDRESS_BYTES;
}

/** Copies the 16 address bytes of `parsed` into out[at..at+16]. */
function copyBytes(parsed: Parsed, out: Buffer, at: number): void {
  parsed.slab.copy(out, at, parsed.offset, parsed.offset + XFRM_ADDRESS_BYTES);
}

function remember(cache: Map<string, Parsed>, text: string, parsed: Parsed): Parsed {
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(text, parsed);
  return parsed;
}

function parseAddressText(text: string): Parsed {
  const cached = addressCache.get(text);
  if (cached) return cached;
  const offset = slabSlot();
  const family = writeIpBytes(text, slab, offset);
  if (family === undefined) {
    slab.fill(0, offset, offset + XFRM_ADDRESS_BYTES);
    throw new Error(`"${text}" is not an IP address`);
  }
  return remember(addressCache, text, { family, slab, offset, prefixLen: family === 4 ? 32 : 128 });
}

function checkFamily(text: string, parsed: Family, family: Family | undefined): void {
  if (family !== undefined && parsed !== family) {
    throw new Error(`"${text}" is an IPv${parsed} address where IPv${family} was expected`);
  }
}

/**
 * Writes the address into out[at..at+16] (IPv4 in the first 4 bytes, zeros after) and returns its family; with
 * `family` given, the address must be of that family.
 */
export function writeAddress(text: string, out: Buffer, at: number, family?: Family): Family {
  const parsed = parseAddressText(text);
  checkFamily(text, parsed.family, family);
  copyBytes(parsed, out, at);
  return parsed.family;
}

/** Parses an IPv4 or IPv6 address; with `family` given, the address must be of that family. */
export function parseAddress(text: string, family?: Family): { family: Family; bytes: Buffer } {
  const parsed = parseAddressText(text);
  checkFamily(text, parsed.family, family);
  const bytes = Buffer.alloc(XFRM_ADDRESS_BYTES);
  copyBytes(parsed, bytes, 0);
  return { family: parsed.family, bytes };
}

function parseCidrText(text: string): Parsed {
  const cached = cidrCache.get(text);
  if (cached) return cached;
  const slash = text.indexOf('/');
  const address = parseAddressText(slash < 0 ? text : text.slice(0, slash));
  const maxLen = address.family === 4 ? 32 : 128;
  let prefixLen = maxLen;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > maxLen) {
      throw new Error(`"${text}" has a bad prefix length (0..${maxLen} for IPv${address.family})`);
    }
    prefixLen = Number(lenText);
  }
  const bytes = address.slab.subarray(address.offset, address.offset + XFRM_ADDRESS_BYTES);
  if (hasHostBits(bytes, prefixLen, maxLen >> 3)) throw new Error(`"${text}" has host bits set beyond /${prefixLen}`);
  return remember(cidrCache, text, { ...address, prefixLen });
}

/**
 * Writes the address of "addr/len" (or a bare address = host route) into out[at..at+16] and returns family and
 * prefix length; host bits must be zero, as the kernel compares selectors bytewise.
 */
export function writeCidr(
  text: string,
  out: Buffer,
  at: number,
  family?: Family,
): { family: Family; prefixLen: number } {
  const parsed = parseCidrText(text);
  checkFamily(text, parsed.family, family);
  copyBytes(parsed, out, at);
  return parsed;
}

// Decoded IPv4 texts by value (address, or address * 64 + prefix length for a CIDR): a dump of thousands of
// objects repeats the same few thousand addresses, and handing out one flat string per value spares the
// allocation of a new one per object and lets every later Map lookup reuse its cached hash. Bounded like the
// caches above.
const ipv4Texts = new Map<number, string>();
const ipv4CidrTexts = new Map<number, string>();

function ipv4Text(bytes: Buffer, offset: number): string {
  const value = bytes.readUInt32BE(offset);
  let text = ipv4Texts.get(value);
  if (text === undefined) {
    if (ipv4Texts.size >= CACHE_LIMIT) ipv4Texts.clear();
    text = `${bytes[offset]}.${bytes[offset + 1]}.${bytes[offset + 2]}.${bytes[offset + 3]}`;
    ipv4Texts.set(value, text);
  }
  return text;
}

/** Formats the first 4 (IPv4) or 16 (IPv6) bytes of `bytes` from `offset` like inet_ntop. */
export function formatAddress(bytes: Buffer, offset: number, family: Family): string {
  if (family === 4) return ipv4Text(bytes, offset);
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

/** formatAddress + "/prefixLen". */
export function formatCidr(bytes: Buffer, offset: number, family: Family, prefixLen: number): string {
  if (family !== 4 || !Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 63) {
    return `${formatAddress(bytes, offset, family)}/${prefixLen}`;
  }
  const value = bytes.readUInt32BE(offset) * 64 + prefixLen;
  let text = ipv4CidrTexts.get(value);
  if (text === undefined) {
    if (ipv4CidrTexts.size >= CACHE_LIMIT) ipv4CidrTexts.clear();
    text = `${ipv4Text(bytes, offset)}/${prefixLen}`;
    ipv4CidrTexts.set(value, text);
  }
  return text;
}
