// Byte layouts of the datapath's BPF maps (bpf/maps.h) and the pure computation of their desired contents.
// km_nodeinfo keys follow Kmesh (prefixlen counts the address's own bits, IPv4 in the first 4 bytes); the
// value carries per-family flags so that IPv4 and IPv6 prefixes sharing leading bytes cannot be confused.
import { parseIpStrict, parseCidrStrict, type Family, type ParsedCidr } from '../model/ip-address.js';
import type { MssClamp } from '../model/esp-overhead.js';
import { strictModeNumber, strictModeOf, type StrictMode } from '../model/strict-mode.js';
import { PEER_ID_MAX } from '../model/marks.js';
import { entryKeys, keepPairs, lastResult, sameCidrList, samePairs, sameTextList } from './entries-memo.js';

export const NODEINFO_V4 = 1;
export const NODEINFO_V6 = 2;
const AF_INET = 2;
const AF_INET6 = 10;

const NODEINFO_KEY_SIZE = 20;
const PEER_KEY_SIZE = 20;
export const ATTACH_KEY_SIZE = 16;
export const ATTACH_VALUE_SIZE = 144;

/** One map entry, ready for the addon. */
export interface MapEntry {
  key: Buffer;
  value: Buffer;
}

function familyFlag(family: Family): number {
  return family === 4 ? NODEINFO_V4 : NODEINFO_V6;
}

/**
 * A zeroed buffer of `size` bytes in Node's shared pool: a map's thousands of keys and values then share a few
 * array buffers instead of one each (an entry list held between steps weighs half as much).
 */
function zeroed(size: number): Buffer {
  return Buffer.allocUnsafe(size).fill(0);
}

export function nodeinfoKey(prefixLen: number, bytes: Buffer): Buffer {
  const key = zeroed(NODEINFO_KEY_SIZE);
  key.writeUInt32LE(prefixLen, 0);
  bytes.copy(key, 4);
  return key;
}

function u32(value: number): Buffer {
  const b = zeroed(4);
  b.writeUInt32LE(value >>> 0, 0);
  return b;
}

/**
 * The km_nodeinfo contents for these remote pod CIDRs: one entry per distinct key, whose flags say for which
 * families the key's prefix lies inside some remote CIDR of that family. The kernel's longest-prefix match
 * then answers "is this IPv4 (IPv6) address remote?" correctly even when an IPv4 and an IPv6 prefix share
 * leading bytes: the longest matching key K is covered by a family-f CIDR exactly when the address is.
 * Throws (naming the CIDR) on the first invalid one, before anything is computed. Like the other builders here,
 * it hands out its last (frozen) result again for an equal input (entries-memo.ts).
 */
export const nodeinfoEntries = lastResult(buildNodeinfoEntries, sameCidrList, (c) => [...c]);

function buildNodeinfoEntries(cidrs: readonly (string | ParsedCidr)[]): MapEntry[] {
  const parsed: ParsedCidr[] = cidrs.map((c) => (typeof c === 'string' ? parseCidrStrict(c) : c));
  const byKey = new Map<string, ParsedCidr>();
  for (const c of parsed) byKey.set(nodeinfoKey(c.prefixLen, c.bytes).toString('hex'), c);
  // CIDR c covers key k exactly when c.prefixLen <= k.prefixLen and their first c.prefixLen bits agree
  // (prefixMatches; the family does not enter). So the families covering each (length, leading bits) are
  // collected once, and each key asks only at the few distinct lengths: linear in the CIDRs instead of one
  // comparison per (key, CIDR) pair, 10^8 of them for 10,000 CIDRs.
  const covering = new Map<string, number>();
  const lengths = new Set<number>();
  for (const c of parsed) {
    const id = leadingBits(c.bytes, c.prefixLen);
    covering.set(id, (covering.get(id) ?? 0) | familyFlag(c.family));
    lengths.add(c.prefixLen);
  }
  const ascending = [...lengths].sort((a, b) => a - b);
  const entries: MapEntry[] = [];
  for (const k of byKey.values()) {
    let flags = 0;
    for (const length of ascending) {
      if (length > k.prefixLen) break;
      flags |= covering.get(leadingBits(k.bytes, length)) ?? 0;
    }
    entries.push({ key: nodeinfoKey(k.prefixLen, k.bytes), value: u32(flags) });
  }
  return entries;
}

/** "length/hex of the first `length` bits" (the rest of the last byte cleared): equal iff prefixMatches. */
function leadingBits(bytes: Uint8Array, length: number): string {
  let id = `${length}/`;
  const whole = length >> 3;
  for (let i = 0; i < whole; i++) id += ((bytes[i] ?? 0) | 0x100).toString(16);
  const rest = length & 7;
  if (rest !== 0) id += (((bytes[whole] ?? 0) & ((0xff00 >> rest) & 0xff)) | 0x100).toString(16);
  return id;
}

export function peerKey(address: string): Buffer {
  const a = parseIpStrict(address);
  const key = zeroed(PEER_KEY_SIZE);
  a.bytes.copy(key, 0);
  key.writeUInt32LE(a.family === 4 ? AF_INET : AF_INET6, 16);
  return key;
}

/** The km_ipsec_peers contents: underlay address -> peer id 1..65535. Throws naming the first bad pair. */
export const peerEntries = lastResult(buildPeerEntries, samePairs, keepPairs);

function buildPeerEntries(peers: ReadonlyMap<string, number>): MapEntry[] {
  const byKey = new Map<string, { address: string; id: number; key: Buffer }>();
  for (const [address, id] of peers) {
    let key: Buffer;
    try {
      key = peerKey(address);
    } catch {
      throw new Error(`peer address "${address}" is not an IPv4 or IPv6 address`);
    }
    if (!Number.isInteger(id) || id < 1 || id > PEER_ID_MAX) {
      throw new Error(`peer ${address}: id ${id} is outside 1..${PEER_ID_MAX}`);
    }
    const hex = key.toString('hex');
    const seen = byKey.get(hex);
    if (seen && seen.id !== id) {
      throw new Error(`peer ${address} is the same address as ${seen.address} but has id ${id}, not ${seen.id}`);
    }
    byKey.set(hex, { address, id, key });
  }
  return [...byKey.values()].map((p) => ({ key: p.key, value: u32(p.id) }));
}

export const CONFIG_VALUE_SIZE = 8;

/** What km_ipsec_config holds (struct km_config). */
export interface DatapathSettings {
  mss: MssClamp;
  strict: StrictMode;
}

export const DEFAULT_SETTINGS: DatapathSettings = { mss: { ipv4: 0, ipv6: 0 }, strict: 'off' };

/** The km_ipsec_config value: u16 mss4, u16 mss6, u32 strict, host order. Throws on a bad MSS. */
export function configValue(settings: DatapathSettings): Buffer {
  const { mss } = settings;
  for (const [family, value] of [
    ['IPv4', mss.ipv4],
    ['IPv6', mss.ipv6],
  ] as const) {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
      throw new Error(`${family} MSS clamp ${value} is outside 0..65535`);
    }
  }
  const value = Buffer.alloc(CONFIG_VALUE_SIZE);
  value.writeUInt16LE(mss.ipv4, 0);
  value.writeUInt16LE(mss.ipv6, 2);
  value.writeUInt32LE(strictModeNumber(settings.strict), 4);
  return value;
}

export function parseConfigValue(value: Buffer): DatapathSettings {
  return {
    mss: { ipv4: value.readUInt16LE(0), ipv6: value.readUInt16LE(2) },
    strict: strictModeOf(value.readUInt32LE(4)),
  };
}

/** km_local_pods: the managed pods on this node, by address. Throws naming the first bad address. */
export const localPodEntries = lastResult(buildLocalPodEntries, sameTextList, (ips) => [...ips]);

function buildLocalPodEntries(ips: readonly string[]): MapEntry[] {
  const byKey = new Map<string, MapEntry>();
  for (const ip of ips) {
    let key: Buffer;
    try {
      key = peerKey(ip);
    } catch {
      throw new Error(`pod address "${ip}" is not an IPv4 or IPv6 address`);
    }
    byKey.set(key.toString('hex'), { key, value: u32(1) });
  }
  return [...byKey.values()];
}

/**
 * The km_pod_peers key of a CIDR: like km_nodeinfo's, except that IPv4 is written IPv4-mapped (::ffff:a.b.c.d,
 * prefixlen 96 + its own), so an IPv4 and an IPv6 prefix can never share a key and the longest match is always
 * one of the packet's family.
 */
export function podPeerKey(c: ParsedCidr): Buffer {
  if (c.family === 6) return nodeinfoKey(c.prefixLen, c.bytes);
  const mapped = Buffer.alloc(16);
  mapped.writeUInt16BE(0xffff, 10);
  c.bytes.copy(mapped, 12, 0, 4);
  return nodeinfoKey(96 + c.prefixLen, mapped);
}

/** km_pod_peers: remote pod CIDR -> the id of the peer it belongs to. Throws naming the first bad pair. */
export const podPeerEntries = lastResult(buildPodPeerEntries, samePairs, keepPairs);

function buildPodPeerEntries(cidrs: ReadonlyMap<string, number>): MapEntry[] {
  const byKey = new Map<string, MapEntry>();
  for (const [cidr, id] of cidrs) {
    const parsed = parseCidrStrict(cidr);
    if (!Number.isInteger(id) || id < 1 || id > PEER_ID_MAX) {
      throw new Error(`pod CIDR ${cidr}: peer id ${id} is outside 1..${PEER_ID_MAX}`);
    }
    const key = podPeerKey(parsed);
    byKey.set(key.toString('hex'), { key, value: u32(id) });
  }
  return [...byKey.values()];
}

/** Plaintext packets from one peer's pod CIDR to managed local pods, seen in one strict mode (km_plaintext). */
export interface PlaintextCount {
  /** Peer id (km_pod_peers); 0 = a remote pod CIDR with no known peer id. */
  peer: number;
  mode: StrictMode;
  packets: number;
}

/** Sums a km_plaintext dump (per-CPU u64 values) into counts, sorted by peer then mode. */
export function plaintextCounts(dump: readonly MapEntry[]): PlaintextCount[] {
  const counts: PlaintextCount[] = [];
  for (const { key, value } of dump) {
    let sum = 0n;
    for (let off = 0; off + 8 <= value.length; off += 8) sum += value.readBigUInt64LE(off);
    counts.push({ peer: key.readUInt32LE(0), mode: strictModeOf(key.readUInt32LE(4)), packets: Number(sum) });
  }
  return counts.sort((a, b) => a.peer - b.peer || strictModeNumber(a.mode) - strictModeNumber(b.mode));
}

/**
 * max_entries of the maps the datapath fills from desired sets (bpf/maps.h; test/host/datapath-map-order.test.ts
 * checks them against the loaded maps). The real datapath reads them from the kernel; the fake uses these.
 */
export const MAP_CAPACITY = {
  km_nodeinfo: 16384,
  km_ipsec_peers: 32768,
  km_local_pods: 65536,
  km_pod_peers: 16384,
} as const;

/** One map operation for the addon: with a value an update, without one a delete. */
export interface MapOp {
  key: Buffer;
  value?: Buffer;
}

export interface MapChange {
  added: number;
  changed: number;
  removed: number;
}

/**
 * The operations turning `current` into `desired` for an exact-match map (hash): deletes of keys that are no longer
 * desired first, then updates (new and changed keys). A key that stays desired is never absent in between (it is
 * updated in place), and the map never holds more than the larger of both sets, so two disjoint sets that each fit
 * also fit one after the other. LPM tries, where a removal can change the answer for addresses under a kept
 * prefix, are ordered by diffPrefixEntries (prefix-map-order.ts) instead.
 */
export function diffEntries(
  current: readonly MapEntry[],
  desired: readonly MapEntry[],
  capacity = Infinity,
  mapName = 'map',
): { ops: MapOp[]; change: MapChange } {
  const have = entryKeys(current);
  const wanted = entryKeys(desired);
  const want = wanted.byHex;
  const updates: MapOp[] = [];
  const ops: MapOp[] = [];
  const change: MapChange = { added: 0, changed: 0, removed: 0 };
  for (let i = 0; i < desired.length; i++) {
    const e = desired[i] as MapEntry;
    const old = have.byHex.get(wanted.hex[i] as string);
    if (old === undefined) change.added++;
    else if (old.equals(e.value)) continue;
    else change.changed++;
    updates.push({ key: e.key, value: e.value });
  }
  for (let i = 0; i < current.length; i++) {
    if (!want.has(have.hex[i] as string)) {
      ops.push({ key: (current[i] as MapEntry).key });
      change.removed++;
    }
  }
  if (want.size > capacity) throw new Error(`${mapName} would need ${want.size} entries, more than its ${capacity}`);
  ops.push(...updates);
  return { ops, change };
}
