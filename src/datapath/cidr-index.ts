// The remote-pod-CIDR index (bpf/cidr_index.h): pure compilation of a CIDR list into the node array the TC
// programs walk instead of the km_nodeinfo LPM trie, its byte encoding, and a TypeScript walk of the same
// structure (the model the BPF code is tested against). A node is a 256-way branch on one address byte with
// u16 entries (0 = not remote, 1 = remote, n >= 2 = next byte at node n); identical nodes are stored once, so
// the layout is canonical: the same set of addresses always compiles to the same bytes and fingerprint.
import { createHash } from 'node:crypto';

import { parseCidr, type Family, type ParsedCidr } from './addr.js';

/** Nodes per index (KM_CIDR_NODES): node 0 is the header, node 1 is never used (1 means "remote"). */
export const CIDR_INDEX_CAPACITY = 4096;
export const CIDR_INDEX_MAGIC = 0x4b4d4331;
export const CIDR_NODE_SIZE = 512;
export const CIDR_INDEX_KEY_SIZE = 4;
/** Value size of an inner map: the whole pool. */
export const CIDR_POOL_SIZE = CIDR_INDEX_CAPACITY * CIDR_NODE_SIZE;
const EMPTY = 0;
const FULL = 1;
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

export interface CidrIndex {
  /** nodes[i] = the 256 entries of node i; nodes[0] and nodes[1] are unused placeholders (header, "remote"). */
  nodes: Uint16Array[];
  v4: FamilyRoot | undefined;
  v6: FamilyRoot | undefined;
  /** SHA-256 of the encoded index (header without the fingerprint, then every node), hex. */
  fingerprint: string;
}

interface Prefix {
  bytes: Buffer;
  prefixLen: number;
}

class NodeTable {
  readonly nodes: Uint16Array[] = [new Uint16Array(256), new Uint16Array(256)];
  private readonly byContent = new Map<string, number>();

  intern(entries: Uint16Array): number {
    const key = Buffer.from(entries.buffer, entries.byteOffset, entries.byteLength).toString('latin1');
    let index = this.byContent.get(key);
    if (index === undefined) {
      index = this.nodes.length;
      this.nodes.push(entries);
      this.byContent.set(key, index);
    }
    return index;
  }
}

/** The entry for the address range below `depth` bytes that these prefixes (all sharing those bytes) cover. */
function build(table: NodeTable, prefixes: readonly Prefix[], depth: number): number {
  const entries = new Uint16Array(256);
  const below = new Map<number, Prefix[]>();
  const end = (depth + 1) * 8;
  for (const p of prefixes) {
    if (p.prefixLen <= depth * 8) return FULL;
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
    if (entries[byte] !== FULL) entries[byte] = build(table, list, depth + 1);
  }
  if (entries.every((e) => e === FULL)) return FULL;
  return table.intern(entries);
}

/** Leading whole bytes every prefix shares and none ends within (so each still branches after them). */
function sharedBytes(prefixes: readonly Prefix[]): number {
  const first = prefixes[0];
  if (!first) return 0;
  const shortest = Math.min(...prefixes.map((p) => p.prefixLen));
  const limit = Math.max(0, Math.floor((shortest - 1) / 8));
  let n = 0;
  while (n < limit && prefixes.every((p) => p.bytes[n] === first.bytes[n])) n++;
  return n;
}

function familyRoot(table: NodeTable, prefixes: readonly Prefix[]): FamilyRoot | undefined {
  if (prefixes.length === 0) return undefined;
  const skip = sharedBytes(prefixes);
  let root = build(table, prefixes, skip);
  if (root === FULL) root = table.intern(new Uint16Array(256).fill(FULL));
  return { root, skip, prefix: Buffer.from((prefixes[0] as Prefix).bytes.subarray(0, skip)) };
}

/**
 * Compiles remote pod CIDRs (IPv4 and IPv6, text as in km_nodeinfo) into an index. Throws naming the first
 * invalid CIDR. The result may need more than CIDR_INDEX_CAPACITY nodes: check `fitsCidrIndex` before installing.
 */
export function compileCidrIndex(cidrs: readonly (string | ParsedCidr)[]): CidrIndex {
  const parsed = cidrs.map((c) => (typeof c === 'string' ? parseCidr(c) : c));
  const of = (family: Family): Prefix[] =>
    parsed.filter((c) => c.family === family).map((c) => ({ bytes: c.bytes, prefixLen: c.prefixLen }));
  const table = new NodeTable();
  const v4 = familyRoot(table, of(4));
  const v6 = familyRoot(table, of(6));
  const index: CidrIndex = { nodes: table.nodes, v4, v6, fingerprint: '' };
  index.fingerprint = fingerprintOf(index);
  return index;
}

export function fitsCidrIndex(index: CidrIndex): boolean {
  return index.nodes.length <= CIDR_INDEX_CAPACITY;
}

/** The header node (struct km_cidr_head), zero-padded to a node's size. */
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
    const mask = Buffer.alloc(16);
    index.v6.prefix.copy(prefix);
    mask.fill(0xff, 0, index.v6.skip);
    // The program compares the address as two big-endian halves converted to host (little-endian) order.
    h.writeBigUInt64LE(prefix.readBigUInt64BE(0), 32);
    h.writeBigUInt64LE(prefix.readBigUInt64BE(8), 40);
    h.writeBigUInt64LE(mask.readBigUInt64BE(0), 48);
    h.writeBigUInt64LE(mask.readBigUInt64BE(8), 56);
  }
  h.writeUInt32LE(index.nodes.length, 28);
  if (withFingerprint && index.fingerprint !== '') Buffer.from(index.fingerprint, 'hex').copy(h, 64);
  return h;
}

/** What userspace reads back from an installed header: its fingerprint and node count (0/'' if not a header). */
export function decodeCidrHeader(header: Buffer): { fingerprint: string; nodes: number } {
  if (header.length < 96 || header.readUInt32LE(0) !== CIDR_INDEX_MAGIC) return { fingerprint: '', nodes: 0 };
  return { fingerprint: header.subarray(64, 96).toString('hex'), nodes: header.readUInt32LE(28) };
}

export function encodeCidrNode(entries: Uint16Array): Buffer {
  const b = Buffer.alloc(CIDR_NODE_SIZE);
  for (let i = 0; i < 256; i++) b.writeUInt16LE(entries[i] ?? 0, i * 2);
  return b;
}

function fingerprintOf(index: CidrIndex): string {
  const hash = createHash('sha256');
  hash.update(encodeCidrHeader(index, false));
  for (let i = FIRST_NODE; i < index.nodes.length; i++) hash.update(encodeCidrNode(index.nodes[i] as Uint16Array));
  return hash.digest('hex');
}

/** The one value of an inner map (struct km_cidr_pool): node i at offset i * 512, the header as node 0. */
export function encodeCidrPool(index: CidrIndex): Buffer {
  if (!fitsCidrIndex(index)) {
    throw new Error(`the CIDR index needs ${index.nodes.length} nodes, more than its ${CIDR_INDEX_CAPACITY}`);
  }
  const pool = Buffer.alloc(CIDR_POOL_SIZE);
  encodeCidrHeader(index).copy(pool, 0);
  for (let i = FIRST_NODE; i < index.nodes.length; i++) {
    const entries = index.nodes[i] as Uint16Array;
    for (let j = 0; j < 256; j++) pool.writeUInt16LE(entries[j] ?? 0, i * CIDR_NODE_SIZE + j * 2);
  }
  return pool;
}

/** The walk of bpf/cidr_index.h in TypeScript: is this address (4 or 16 bytes) inside an indexed CIDR? */
export function lookupCidrIndex(index: CidrIndex, family: Family, addr: Uint8Array): boolean {
  const fr = family === 4 ? index.v4 : index.v6;
  if (!fr) return false;
  for (let i = 0; i < fr.skip; i++) if (addr[i] !== fr.prefix[i]) return false;
  let node = fr.root;
  for (let depth = fr.skip; depth < addr.length; depth++) {
    const e = index.nodes[node]?.[addr[depth] ?? 0] ?? EMPTY;
    if (e === EMPTY || e === FULL) return e === FULL;
    node = e;
  }
  return false;
}
