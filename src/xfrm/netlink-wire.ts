// Generic netlink framing (pure): message headers, attributes (TLVs), splitting a reply buffer into messages,
// and reading NLMSG_ERROR acks including the kernel's extended-ack text. Native byte order is little-endian
// (x86_64, arm64); the kernel adapter refuses to run elsewhere.

export const NLMSG_HDRLEN = 16;
export const NLA_HDRLEN = 4;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
/** On an NLMSG_ERROR: the echoed request was cut to its header (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
/** On an NLMSG_ERROR: extended-ack TLVs follow. */
export const NLM_F_ACK_TLVS = 0x200;

export const NLMSGERR_ATTR_MSG = 1;
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

/** One attribute: 4-byte header then data, padded to 4 bytes. */
export function netlinkAttr(type: number, data: Buffer): Buffer {
  const len = NLA_HDRLEN + data.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  data.copy(out, NLA_HDRLEN);
  return out;
}

export function u32Attr(type: number, value: number): Buffer {
  const data = Buffer.alloc(4);
  data.writeUInt32LE(value >>> 0, 0);
  return netlinkAttr(type, data);
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
