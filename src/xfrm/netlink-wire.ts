// Generic netlink framing (pure): message headers, attributes (TLVs), splitting a reply buffer into messages,
// and reading NLMSG_ERROR acks including the kernel's extended-ack text. Native byte order is little-endian
// (x86_64, arm64); the kernel adapter refuses to run elsewhere.

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
/** On an NLMSG_ERROR: the echoed request was cut to its header (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
/** On an NLMSG_ERROR: extended-ack TLVs follow. */
export const NLM_F_ACK_TLVS = 0x200;

const NLMSGERR_ATTR_MSG = 1;
const EPROTO = 71;
const NLMSGERR_HDRLEN = 4 + NLMSG_HDRLEN;

/** Rounds up to a multiple of 4 (plain arithmetic: bit operations would wrap lengths read from the wire). */
export function align4(n: number): number {
  return n + ((4 - (n % 4)) % 4);
}

/** One netlink message: a 16-byte header followed by `payload` (header + payload padded to 4 bytes). */
export function netlinkMessage(type: number, flags: number, seq: number, payload: Buffer): Buffer {
  const len = NLMSG_HDRLEN + payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(type, 4);
  out.writeUInt16LE(flags, 6);
  out.writeUInt32LE(seq >>> 0, 8);
  out.writeUInt32LE(0, 12);
  payload.copy(out, NLMSG_HDRLEN);
  return out;
}

/**
 * Builds many netlink messages back to back in one growing buffer (no allocation per message; integer writes go
 * through a DataView, which stays fast before the JIT warms up). Reserved space is zeroed; encoders reserve a
 * whole message, fill it, and roll back if they fail halfway.
 */
export class NetlinkWriter {
  private buf: Buffer;
  private view: DataView;
  /**
   * The backing bytes as a plain Uint8Array (whose fill/set are the engine's builtins); also what the native
   * encoder writes into before commit(). Replaced when the buffer grows: read it after reserve/ensureRoom.
   */
  raw: Uint8Array;
  private used = 0;

  constructor(capacity = 4096) {
    this.buf = Buffer.alloc(capacity);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.raw = new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  /** The backing buffer; valid until the next reserve(). */
  get bytes(): Buffer {
    return this.buf;
  }

  get length(): number {
    return this.used;
  }

  /** Reserves `n` zeroed bytes and returns their offset. */
  reserve(n: number): number {
    const at = this.used;
    if (at + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, at + n));
      this.buf.copy(next, 0, 0, at);
      this.buf = next;
      this.view = new DataView(next.buffer, next.byteOffset, next.length);
      this.raw = new Uint8Array(next.buffer, next.byteOffset, next.length);
    }
    this.used = at + n;
    return at;
  }

  /** Bytes left in the backing buffer after the used part. */
  get room(): number {
    return this.buf.length - this.used;
  }

  /** Grows the backing buffer (if needed) so that at least `n` bytes are left after the used part. */
  ensureRoom(n: number): void {
    if (this.buf.length - this.used < n) this.rollback(this.reserve(n));
  }

  /**
   * Marks the bytes up to `end` as used: for a writer that filled raw[length..end) itself (whole messages, zero
   * padding included).
   */
  commit(end: number): void {
    if (end < this.used || end > this.buf.length) {
      throw new RangeError(`commit(${end}) outside ${this.used}..${this.buf.length}`);
    }
    this.used = end;
  }

  /** Drops everything from `at` on (a message that failed to encode), leaving the space zeroed again. */
  rollback(at: number): void {
    this.buf.fill(0, at, this.used);
    this.used = at;
  }

  u8(at: number, v: number): void {
    this.view.setUint8(at, v);
  }

  u16(at: number, v: number): void {
    this.view.setUint16(at, v, true);
  }

  u32(at: number, v: number): void {
    this.view.setUint32(at, v, true);
  }

  /** Network byte order (SPIs). */
  u32be(at: number, v: number): void {
    this.view.setUint32(at, v, false);
  }

  // The typed-array builtins, not Buffer's fill/copy/write (argument checks in JS, then a call into C++): these
  // run once per message, thousands of times per batch.
  fill(at: number, end: number, byte: number): void {
    this.raw.fill(byte, at, end);
  }

  copy(at: number, data: Uint8Array): void {
    this.raw.set(data, at);
  }

  /** Message header for a message of `len` bytes starting at `at`. */
  header(at: number, len: number, type: number, flags: number, seq: number): void {
    this.u32(at, len);
    this.u16(at + 4, type);
    this.u16(at + 6, flags);
    this.u32(at + 8, seq >>> 0);
  }

  /** Attribute header at `at`; returns the offset of its data. */
  attr(at: number, type: number, len: number): number {
    this.u16(at, len);
    this.u16(at + 2, type);
    return at + NLA_HDRLEN;
  }

  /** The messages written so far (a view of the backing buffer). */
  finish(): Buffer {
    return this.buf.subarray(0, this.used);
  }
}

/**
 * The NLMSG_ERROR replies in `reply`, by sequence number. Plain acks (errno 0, no TLVs) are read in place; only
 * errors and acks with extended TLVs go through parseAck.
 */
export function readAcks(reply: Buffer): Map<number, NetlinkAck> {
  const acks = new Map<number, NetlinkAck>();
  const view = new DataView(reply.buffer, reply.byteOffset, reply.length);
  let off = 0;
  while (off + NLMSG_HDRLEN <= reply.length) {
    const len = view.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > reply.length) break;
    if (view.getUint16(off + 4, true) === NLMSG_ERROR) {
      const flags = view.getUint16(off + 6, true);
      const seq = view.getUint32(off + 8, true);
      const plain = len >= NLMSG_HDRLEN + 4 && view.getInt32(off + NLMSG_HDRLEN, true) === 0;
      if (plain && (flags & NLM_F_ACK_TLVS) === 0) {
        acks.set(seq, OK_ACK);
      } else {
        acks.set(
          seq,
          parseAck({ type: NLMSG_ERROR, flags, seq, payload: reply.subarray(off + NLMSG_HDRLEN, off + len) }),
        );
      }
    }
    off += align4(len);
  }
  return acks;
}

const OK_ACK: NetlinkAck = Object.freeze({ errno: 0 });

/** One attribute: 4-byte header then data, padded to 4 bytes. */
export function netlinkAttr(type: number, data: Buffer): Buffer {
  const len = NLA_HDRLEN + data.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  data.copy(out, NLA_HDRLEN);
  return out;
}

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  /** Bytes after the header, exactly nlmsg_len - 16 long. */
  payload: Buffer;
}

/** Splits a buffer of back-to-back messages; stops quietly at the first malformed header. */
export function splitMessages(buf: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/**
 * Attributes from `offset` to the end of `payload`, by type (last one wins; repeated types are not used by XFRM).
 * Returns undefined when an attribute header or body runs past the end: the object is truncated.
 */
export function parseAttributes(payload: Buffer, offset: number): Map<number, Buffer> | undefined {
  const attrs = new Map<number, Buffer>();
  let off = offset;
  while (off < payload.length) {
    if (off + NLA_HDRLEN > payload.length) return undefined;
    const len = payload.readUInt16LE(off);
    // Bit 15 (NLA_F_NESTED) and bit 14 (NLA_F_NET_BYTEORDER) are flags, not part of the type.
    const type = payload.readUInt16LE(off + 2) & 0x3fff;
    if (len < NLA_HDRLEN || off + len > payload.length) return undefined;
    attrs.set(type, payload.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return attrs;
}

export interface NetlinkAck {
  /** Positive errno; 0 for success. */
  errno: number;
  /** NLMSGERR_ATTR_MSG, when the kernel sent one. */
  message?: string;
}

/** Reads an NLMSG_ERROR message (ack or error), tolerating a missing or short extack section. */
export function parseAck(msg: NetlinkMessage): NetlinkAck {
  const p = msg.payload;
  if (p.length < 4) return { errno: EPROTO, message: 'malformed NLMSG_ERROR reply (shorter than 4 bytes)' };
  const errno = -p.readInt32LE(0);
  const ack: NetlinkAck = { errno };
  if ((msg.flags & NLM_F_ACK_TLVS) === 0 || p.length < NLMSGERR_HDRLEN) return ack;
  let tlvStart = NLMSGERR_HDRLEN;
  if ((msg.flags & NLM_F_CAPPED) === 0) {
    // The whole request was echoed: skip its payload too.
    const echoed = p.readUInt32LE(4);
    tlvStart = 4 + align4(Math.max(echoed, NLMSG_HDRLEN));
  }
  if (tlvStart > p.length) return ack;
  const attrs = parseAttributes(p, tlvStart);
  const text = attrs?.get(NLMSGERR_ATTR_MSG);
  if (text && text.length > 0) {
    const end = text.indexOf(0);
    const message = text.subarray(0, end < 0 ? text.length : end).toString('utf8');
    if (message !== '') ack.message = message;
  }
  return ack;
}
