// The remote-pod-CIDR index (bpf/cidr_index.h): pure compilation of a CIDR list into the pool the TC programs
// walk instead of the km_nodeinfo LPM trie, its byte encoding, and a TypeScript walk of the same structure (the
// model the BPF code is tested against). A node is a 256-way branch on one address byte with u16 entries
// (0 = not remote, 1 = remote, 2..0xfff = next byte at that node, 0x8000 | r = tail record r, 0xc000 | n = remote
// exactly when the next n address bits are zero: a tail without a load, as cluster CIDRs end). Each family's
// root is wide: one 65,536-way branch on the two bytes after the skipped prefix, stored as 256 consecutive nodes,
// so every walk takes one dependent load less (a cluster's /24 or /64 is then one load, and a zero test for the /64).
// A tail record stands for a subtree holding a single CIDR: "the rest of the address must match these bits".
// Identical nodes and records are stored once, so the layout is canonical: the same set of addresses always
// compiles to the same bytes and fingerprint.
import { createHash } from 'node:crypto';

import { parseCidrStrict, type Family, type ParsedCidr } from '../model/ip-address.js';
import type { CidrIndexUse } from './datapath.js';

/** Nodes per pool (KM_CIDR_NODES): node 0 is the header, node 1 is never used (1 means "remote"). */
export const CIDR_INDEX_CAPACITY = 3072;
/** Tail records per pool (KM_CIDR_RECORDS). */
export const CIDR_RECORD_CAPACITY = 16384;
/** "KMC3": index format 3 (wide roots). A format-2 index left installed by an earlier build is not walked. */
export const CIDR_INDEX_MAGIC = 0x4b4d4333;
/** Nodes a wide root takes: 65,536 entries. */
export const WIDE_ROOT_NODES = 256;
export const CIDR_NODE_SIZE = 512;
const CIDR_RECORD_SIZE = 32;
export const CIDR_INDEX_KEY_SIZE = 4;
/** Byte offset of the records in the pool (KM_CIDR_RECORDS_OFF): after a 4096-node region. */
export const CIDR_RECORDS_OFFSET = 4096 * CIDR_NODE_SIZE - CIDR_RECORD_CAPACITY * CIDR_RECORD_SIZE;
/** Value size of an inner map: the whole pool (2 MiB). */
export const CIDR_POOL_SIZE = 4096 * CIDR_NODE_SIZE;
const EMPTY = 0;
const FULL = 1;
const RECORD = 0x8000;
/** RECORD | ZERO_TAIL | n: the next n bits must be zero (no record); record ids stay below it. */
const ZERO_TAIL = 0x4000;
const RECORD_ID_MASK = 0x3fff;
const FIRST_NODE = 2;

/** Where one family's walk starts. */
export interface FamilyRoot {
  /** Node of the first byte after the skipped prefix. */
  root: number;
  /** Leading bytes shared by every CIDR of the family (not walked). */
  skip: number;
  /** Those bytes (length `skip`). */
  prefix: Buffer;
}

/** The rest of a single CIDR below some node: its bits from the record's byte on, left-aligned in 16 bytes. */
export interface TailRecord {
  tail: Buffer;
  /** How many leading bits of `tail` must match. */
  bits: number;
}

export interface CidrIndex {
  /** nodes[i] = the 256 entries of node i; nodes[0] and nodes[1] are unused placeholders (header, "remote"). */
  nodes: Uint16Array[];
  records: TailRecord[];
  v4: FamilyRoot | undefined;
  v6: FamilyRoot | undefined;
  /** SHA-256 of the encoded index (header without the fingerprint, then every node and record), hex. */
  fingerprint: string;
}

interface Prefix {
  bytes: Buffer;
  prefixLen: number;
}

class Tables {
  readonly nodes: Uint16Array[] = [new Uint16Array(256), new Uint16Array(256)];
  readonly records: TailRecord[] = [];
  private readonly nodeIds = new Map<string, number>();
  private readonly recordIds = new Map<string, number>();

  node(entries: Uint16Array): number {
    const key = Buffer.from(entries.buffer, entries.byteOffset, entries.byteLength).toString('latin1');
    let id = this.nodeIds.get(key);
    if (id === undefined) {
      id = this.nodes.length;
      this.nodes.push(entries);
      this.nodeIds.set(key, id);
    }
    return id;
  }

  /** Stores a 65,536-entry root as WIDE_ROOT_NODES consecutive nodes (never shared); returns the first. */
  wide(entries: Uint16Array): number {
    const first = this.nodes.length;
    for (let i = 0; i < WIDE_ROOT_NODES; i++) this.nodes.push(entries.subarray(i * 256, (i + 1) * 256));
    return first;
  }

  /**
   * The entry for a subtree that holds only `p`, whose bytes before `depth` the walk has already matched: a zero
   * tail when p's remaining bits are all zero, else a tail record.
   */
  record(p: Prefix, depth: number): number {
    const tail = Buffer.alloc(16);
    p.bytes.copy(tail, 0, depth);
    const rec = { tail, bits: p.prefixLen - depth * 8 };
    if (tail.every((b) => b === 0)) return RECORD | ZERO_TAIL | rec.bits;
    const key = `${rec.bits}/${tail.toString('hex')}`;
    let id = this.recordIds.get(key);
    if (id === undefined) {
      id = this.records.length;
      this.records.push(rec);
      this.recordIds.set(key, id);
    }
    // Ids past the capacity still make a (non-fitting) index; the entry is masked so it stays a record.
    return RECORD | (id & RECORD_ID_MASK);
  }
}

function samePrefix(a: Prefix, b: Prefix): boolean {
  return a.prefixLen === b.prefixLen && a.bytes.equals(b.bytes);
}

/**
 * The entry for the address range below `depth` bytes covered by these prefixes (all sharing those bytes):
 * FULL, EMPTY, a tail record (one prefix left) or a node.
 */
function build(t: Tables, prefixes: readonly Prefix[], depth: number): number {
  if (prefixes.some((p) => p.prefixLen <= depth * 8)) return FULL;
  const first = prefixes[0] as Prefix;
  if (prefixes.every((p) => samePrefix(p, first))) return t.record(first, depth);
  const entries = new Uint16Array(256);
  const below = new Map<number, Prefix[]>();
  const end = (depth + 1) * 8;
  for (const p of prefixes) {
    const byte = p.bytes[depth] ?? 0;
    if (p.prefixLen <= end) {
      const span = 1 << (end - p.prefixLen);
      const base = byte & ~(span - 1) & 0xff;
      entries.fill(FULL, base, base + span);
    } else {
      let list = below.get(byte);
      if (!list) below.set(byte, (list = []));
      list.push(p);
    }
  }
  for (const [byte, list] of below) {
    if (entries[byte] !== FULL) entries[byte] = build(t, list, depth + 1);
  }
  if (entries.every((e) => e === FULL)) return FULL;
  return t.node(entries);
}

/**
 * The wide root for the two bytes after `depth`: a 65,536-entry table whose entries are what build() gives for the
 * range below each 16-bit value.
 */
function buildWide(t: Tables, prefixes: readonly Prefix[], depth: number): number {
  const entries = new Uint16Array(65536);
  const below = new Map<number, Prefix[]>();
  const end = (depth + 2) * 8;
  for (const p of prefixes) {
    const value = ((p.bytes[depth] ?? 0) << 8) | (p.bytes[depth + 1] ?? 0);
    if (p.prefixLen <= end) {
      const span = 2 ** (end - p.prefixLen);
      const base = value & ~(span - 1) & 0xffff;
      entries.fill(FULL, base, base + span);
    } else {
      let list = below.get(value);
      if (!list) below.set(value, (list = []));
      list.push(p);
    }
  }
  for (const [value, list] of below) {
    if (entries[value] !== FULL) entries[value] = build(t, list, depth + 2);
  }
  return t.wide(entries);
}

/**
 * Leading whole bytes every prefix shares and none ends within (so each still branches after them), leaving at
 * least the two bytes of the wide root.
 */
function sharedBytes(prefixes: readonly Prefix[], addressBytes: number): number {
  const first = prefixes[0];
  if (!first) return 0;
  const shortest = Math.min(...prefixes.map((p) => p.prefixLen));
  const limit = Math.min(addressBytes - 2, Math.max(0, Math.floor((shortest - 1) / 8)));
  let n = 0;
  while (n < limit && prefixes.every((p) => p.bytes[n] === first.bytes[n])) n++;
  return n;
}

function familyRoot(t: Tables, prefixes: readonly Prefix[], addressBytes: number): FamilyRoot | undefined {
  if (prefixes.length === 0) return undefined;
  const skip = sharedBytes(prefixes, addressBytes);
  const root = buildWide(t, prefixes, skip);
  return { root, skip, prefix: Buffer.from((prefixes[0] as Prefix).bytes.subarray(0, skip)) };
}

/**
 * Compiles remote pod CIDRs (IPv4 and IPv6, text as in km_nodeinfo) into an index. Throws naming the first
 * invalid CIDR. The result may exceed the pool's capacity: check `fitsCidrIndex` before installing.
 */
export function compileCidrIndex(cidrs: readonly (string | ParsedCidr)[]): CidrIndex {
  const parsed = cidrs.map((c) => (typeof c === 'string' ? parseCidrStrict(c) : c));
  const of = (family: Family): Prefix[] =>
    parsed.filter((c) => c.family === family).map((c) => ({ bytes: c.bytes, prefixLen: c.prefixLen }));
  const t = new Tables();
  const v4 = familyRoot(t, of(4), 4);
  const v6 = familyRoot(t, of(6), 16);
  const index: CidrIndex = { nodes: t.nodes, records: t.records, v4, v6, fingerprint: '' };
  index.fingerprint = fingerprintOf(index);
  return index;
}

export function fitsCidrIndex(index: CidrIndex): boolean {
  return index.nodes.length <= CIDR_INDEX_CAPACITY && index.records.length <= CIDR_RECORD_CAPACITY;
}

/** Use of capacity, as DatapathStats reports it. */
export function cidrIndexUse(nodes: number, records: number): CidrIndexUse {
  return { nodes, nodeCapacity: CIDR_INDEX_CAPACITY, records, recordCapacity: CIDR_RECORD_CAPACITY };
}

/** 16 bytes as the two host-order u64 the program compares (big-endian halves read as numbers). */
function writeHalves(out: Buffer, at: number, bytes: Buffer): void {
  out.writeBigUInt64LE(bytes.readBigUInt64BE(0), at);
  out.writeBigUInt64LE(bytes.readBigUInt64BE(8), at + 8);
}

function leadingBits(bits: number): Buffer {
  const mask = Buffer.alloc(16);
  mask.fill(0xff, 0, bits >> 3);
  if (bits & 7) mask[bits >> 3] = (0xff00 >> (bits & 7)) & 0xff;
  return mask;
}

/** The header (struct km_cidr_head), zero-padded to a node's size. */
export function encodeCidrHeader(index: CidrIndex, withFingerprint = true): Buffer {
  const h = Buffer.alloc(CIDR_NODE_SIZE);
  h.writeUInt32LE(CIDR_INDEX_MAGIC, 0);
  if (index.v4) {
    h.writeUInt32LE(index.v4.root, 4);
    h.writeUInt32LE(index.v4.skip, 8);
    index.v4.prefix.copy(h, 12);
    h.fill(0xff, 16, 16 + index.v4.skip);
  }
  if (index.v6) {
    h.writeUInt32LE(index.v6.root, 20);
    h.writeUInt32LE(index.v6.skip, 24);
    const prefix = Buffer.alloc(16);
    index.v6.prefix.copy(prefix);
    writeHalves(h, 32, prefix);
    writeHalves(h, 48, leadingBits(index.v6.skip * 8));
  }
  h.writeUInt32LE(index.nodes.length, 28);
  h.writeUInt32LE(index.records.length, 96);
  if (withFingerprint && index.fingerprint !== '') Buffer.from(index.fingerprint, 'hex').copy(h, 64);
  return h;
}

/** What userspace reads back from an installed header. */
export interface CidrHeader {
  fingerprint: string;
  nodes: number;
  records: number;
}

/** The header at the start of an installed pool ('' and zeros if it is not one). */
export function decodeCidrHeader(header: Buffer): CidrHeader {
  if (header.length < 100 || header.readUInt32LE(0) !== CIDR_INDEX_MAGIC) {
    return { fingerprint: '', nodes: 0, records: 0 };
  }
  return {
    fingerprint: header.subarray(64, 96).toString('hex'),
    nodes: header.readUInt32LE(28),
    records: header.readUInt32LE(96),
  };
}

function encodeCidrNode(entries: Uint16Array): Buffer {
  const b = Buffer.alloc(CIDR_NODE_SIZE);
  for (let i = 0; i < 256; i++) b.writeUInt16LE(entries[i] ?? 0, i * 2);
  return b;
}

/** struct km_cidr_record: value halves, then mask halves. */
function encodeCidrRecord(r: TailRecord): Buffer {
  const b = Buffer.alloc(CIDR_RECORD_SIZE);
  writeHalves(b, 0, r.tail);
  writeHalves(b, 16, leadingBits(r.bits));
  return b;
}

function fingerprintOf(index: CidrIndex): string {
  const hash = createHash('sha256');
  hash.update(encodeCidrHeader(index, false));
  for (let i = FIRST_NODE; i < index.nodes.length; i++) hash.update(encodeCidrNode(index.nodes[i] as Uint16Array));
  for (const r of index.records) hash.update(encodeCidrRecord(r));
  return hash.digest('hex');
}

/** The one value of an inner map (struct km_cidr_pool): node i at i * 512 (the header as node 0), records after. */
export function encodeCidrPool(index: CidrIndex): Buffer {
  if (!fitsCidrIndex(index)) {
    throw new Error(
      `the CIDR index needs ${index.nodes.length} nodes and ${index.records.length} tail records, ` +
        `more than its ${CIDR_INDEX_CAPACITY} and ${CIDR_RECORD_CAPACITY}`,
    );
  }
  const pool = Buffer.alloc(CIDR_POOL_SIZE);
  encodeCidrHeader(index).copy(pool, 0);
  for (let i = FIRST_NODE; i < index.nodes.length; i++) {
    encodeCidrNode(index.nodes[i] as Uint16Array).copy(pool, i * CIDR_NODE_SIZE);
  }
  for (const [i, r] of index.records.entries())
    encodeCidrRecord(r).copy(pool, CIDR_RECORDS_OFFSET + i * CIDR_RECORD_SIZE);
  return pool;
}

/** The walk of bpf/cidr_index.h in TypeScript: is this address (4 or 16 bytes) inside an indexed CIDR? */
export function lookupCidrIndex(index: CidrIndex, family: Family, addr: Uint8Array): boolean {
  const fr = family === 4 ? index.v4 : index.v6;
  if (!fr) return false;
  for (let i = 0; i < fr.skip; i++) if (addr[i] !== fr.prefix[i]) return false;
  let node = fr.root + (addr[fr.skip] ?? 0); // the wide root: node + first byte, entry at the second
  for (let depth = fr.skip + 1; depth < addr.length; depth++) {
    const e = index.nodes[node]?.[addr[depth] ?? 0] ?? EMPTY;
    if (e === EMPTY || e === FULL) return e === FULL;
    if (e & RECORD) {
      const r = e & ZERO_TAIL ? { tail: Buffer.alloc(16), bits: e & 0xff } : index.records[e & RECORD_ID_MASK];
      if (!r) return false;
      for (let bit = 0; bit < r.bits; bit++) {
        const byte = addr[depth + 1 + (bit >> 3)] ?? 0;
        const mask = 0x80 >> (bit & 7);
        if ((byte & mask) !== ((r.tail[bit >> 3] ?? 0) & mask)) return false;
      }
      return true;
    }
    node = e;
  }
  return false;
}
