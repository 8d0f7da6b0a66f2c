// The marking rules of tc_mark_encrypt / tc_mark_decrypt restated in TypeScript over plain inputs (a frame,
// the incoming mark, the remote pod CIDRs and the peer ids). Used by the fake datapath, and by tests as an
// independent oracle: it decides "remote" by direct CIDR containment per family, not through the LPM-key
// encoding the real programs rely on, so a flaw in that encoding shows up as a disagreement.
import {
  parseIpStrict,
  parseCidrStrict,
  prefixMatches,
  type Family,
  type ParsedCidr,
} from '../../src/model/ip-address.js';
import { MARK_DECRYPT, MARK_ENCRYPT, MARK_INBOUND_MASK, MARK_TYPE_MASK, PEER_ID_SHIFT } from '../../src/model/marks.js';

const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const IPPROTO_ESP = 50;

export interface ParsedFrame {
  family: Family;
  proto: number;
  src: Buffer;
  dst: Buffer;
}

/** Ethernet + fixed IPv4/IPv6 header, exactly as far as the programs look; undefined when they would not parse. */
export function parseFrame(frame: Buffer): ParsedFrame | undefined {
  if (frame.length < 14) return undefined;
  const ethertype = frame.readUInt16BE(12);
  if (ethertype === ETH_P_IP && frame.length >= 14 + 20) {
    return { family: 4, proto: frame[14 + 9] ?? 0, src: frame.subarray(26, 30), dst: frame.subarray(30, 34) };
  }
  if (ethertype === ETH_P_IPV6 && frame.length >= 14 + 40) {
    return { family: 6, proto: frame[14 + 6] ?? 0, src: frame.subarray(22, 38), dst: frame.subarray(38, 54) };
  }
  return undefined;
}

/** What the programs consult, in its natural form. */
export interface MarkTables {
  remoteCidrs: readonly string[];
  peers: ReadonlyMap<string, number>;
}

/** Precomputed lookups over MarkTables. */
export class MarkOracle {
  private readonly cidrs: ParsedCidr[];
  private readonly peerIds = new Map<string, number>();

  constructor(tables: MarkTables) {
    this.cidrs = tables.remoteCidrs.map((c) => parseCidrStrict(c));
    for (const [address, id] of tables.peers) {
      const a = parseIpStrict(address);
      this.peerIds.set(`${a.family}/${a.bytes.toString('hex')}`, id);
    }
  }

  isRemote(family: Family, addr: Buffer): boolean {
    return this.cidrs.some((c) => c.family === family && prefixMatches(c.bytes, addr, c.prefixLen));
  }

  peerId(family: Family, addr: Buffer): number {
    return this.peerIds.get(`${family}/${addr.toString('hex')}`) ?? 0;
  }

  /** The mark tc_mark_encrypt leaves on this frame. */
  encrypt(frame: Buffer, mark: number): number {
    const p = parseFrame(frame);
    if (p && this.isRemote(p.family, p.dst)) return ((mark & ~MARK_TYPE_MASK) | MARK_ENCRYPT) >>> 0;
    return mark >>> 0;
  }

  /** The mark tc_mark_decrypt leaves on this frame. */
  decrypt(frame: Buffer, mark: number): number {
    const p = parseFrame(frame);
    const decrypted = (mark & MARK_TYPE_MASK) === MARK_DECRYPT;
    const cleared = (mark & ~MARK_TYPE_MASK) >>> 0;
    if (!p) return decrypted ? cleared : mark >>> 0;
    if (p.proto === IPPROTO_ESP) {
      const id = this.peerId(p.family, p.src);
      if (id) return ((mark & ~MARK_INBOUND_MASK) | (id << PEER_ID_SHIFT) | MARK_DECRYPT) >>> 0;
      return decrypted ? cleared : mark >>> 0;
    }
    if (!decrypted || this.isRemote(p.family, p.src)) return mark >>> 0;
    return cleared;
  }
}
