// Builds Ethernet frames for BPF_PROG_TEST_RUN and the benchmark: IPv4/IPv6 with a chosen protocol, ARP,
// and truncated variants. Checksums are left zero: the programs never look at them.
import { parseIpStrict } from '../../../src/model/ip-address.js';

export const PROTO_UDP = 17;
export const PROTO_ESP = 50;

function ethernet(ethertype: number, payload: Buffer): Buffer {
  const eth = Buffer.alloc(14);
  Buffer.from([2, 0, 0, 0, 0, 2]).copy(eth, 0);
  Buffer.from([2, 0, 0, 0, 0, 1]).copy(eth, 6);
  eth.writeUInt16BE(ethertype, 12);
  return Buffer.concat([eth, payload]);
}

/** An IPv4 or IPv6 frame (family taken from the addresses) carrying `payloadLen` zero bytes. */
export function ipFrame(src: string, dst: string, proto = PROTO_UDP, payloadLen = 16): Buffer {
  const s = parseIpStrict(src);
  const d = parseIpStrict(dst);
  if (s.family !== d.family) throw new Error(`mixed families ${src} -> ${dst}`);
  const payload = Buffer.alloc(payloadLen);
  if (s.family === 4) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + payloadLen, 2);
    ip[8] = 64;
    ip[9] = proto;
    s.bytes.copy(ip, 12);
    d.bytes.copy(ip, 16);
    return ethernet(0x0800, Buffer.concat([ip, payload]));
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(payloadLen, 4);
  ip[6] = proto;
  ip[7] = 64;
  s.bytes.copy(ip, 8);
  d.bytes.copy(ip, 24);
  return ethernet(0x86dd, Buffer.concat([ip, payload]));
}

/** An ARP request frame (not IP). */
export function arpFrame(): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(0x0800, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(1, 6);
  return ethernet(0x0806, arp);
}

/** The first `len` bytes of a frame: an IP ethertype whose header is cut short. */
export function truncated(frame: Buffer, len: number): Buffer {
  return Buffer.from(frame.subarray(0, len));
}

export const PROTO_TCP = 6;
export const TCP_SYN = 0x02;
export const TCP_ACK = 0x10;

export interface TcpFrameOptions {
  /** TCP flags byte; default SYN. */
  flags?: number;
  /** Raw TCP options (padded with EOL to a multiple of 4); default none. */
  options?: Buffer;
  /** Extra IPv4 header option bytes (a multiple of 4, NOPs) — IHL above 5. */
  ipv4Options?: number;
  /** IPv4 fragment offset field (units of 8 bytes); default 0. */
  fragmentOffset?: number;
  payloadLen?: number;
}

/** TCP options: MSS (kind 2, length 4). */
export function mssOption(mss: number): Buffer {
  return Buffer.from([2, 4, mss >> 8, mss & 0xff]);
}

/** The options a Linux SYN carries, MSS last: NOP NOP timestamps, SACK permitted, window scale, then MSS. */
export function linuxLikeOptions(mss: number): Buffer {
  return Buffer.concat([
    Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]),
    Buffer.from([4, 2]),
    Buffer.from([1, 3, 3, 7]),
    mssOption(mss),
  ]);
}

function onesSum(buf: Buffer, start = 0): number {
  let sum = start;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2 === 1) sum += (buf[buf.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** Where the TCP header of an Ethernet frame starts (after a fixed IPv6 header or the IPv4 IHL). */
function tcpOffset(frame: Buffer): number {
  return frame.readUInt16BE(12) === 0x0800 ? 14 + ((frame[14] ?? 0) & 0x0f) * 4 : 14 + 40;
}

function pseudoHeaderSum(frame: Buffer, tcpLen: number): number {
  const v4 = frame.readUInt16BE(12) === 0x0800;
  const addrs = v4 ? frame.subarray(26, 34) : frame.subarray(22, 54);
  const tail = Buffer.alloc(v4 ? 4 : 8);
  if (v4) {
    tail[1] = PROTO_TCP;
    tail.writeUInt16BE(tcpLen, 2);
  } else {
    tail.writeUInt32BE(tcpLen, 0);
    tail[7] = PROTO_TCP;
  }
  return onesSum(tail, onesSum(addrs));
}

/** True when the frame's TCP checksum (over the pseudo header) verifies. */
export function tcpChecksumOk(frame: Buffer): boolean {
  const tcp = frame.subarray(tcpOffset(frame));
  return onesSum(tcp, pseudoHeaderSum(frame, tcp.length)) === 0xffff;
}

/** The MSS option's value in a TCP frame, or undefined without one (options walked as RFC 9293 says). */
export function frameMss(frame: Buffer): number | undefined {
  const tcp = frame.subarray(tcpOffset(frame));
  const end = ((tcp[12] ?? 0) >> 4) * 4;
  for (let i = 20; i < end;) {
    const kind = tcp[i] ?? 0;
    if (kind === 0) return undefined;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = tcp[i + 1] ?? 0;
    if (kind === 2 && len === 4) return tcp.readUInt16BE(i + 2);
    if (len < 2) return undefined;
    i += len;
  }
  return undefined;
}

/** An IPv4 or IPv6 frame carrying a TCP segment with a valid checksum. */
export function tcpFrame(src: string, dst: string, opts: TcpFrameOptions = {}): Buffer {
  const rawOpts = opts.options ?? Buffer.alloc(0);
  const optBytes = Buffer.alloc(Math.ceil(rawOpts.length / 4) * 4);
  rawOpts.copy(optBytes);
  const tcp = Buffer.concat([Buffer.alloc(20), optBytes, Buffer.alloc(opts.payloadLen ?? 0)]);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(8080, 2);
  tcp.writeUInt32BE(0x01020304, 4);
  tcp[12] = ((20 + optBytes.length) / 4) << 4;
  tcp[13] = opts.flags ?? TCP_SYN;
  tcp.writeUInt16BE(64240, 14);
  let frame = ipFrame(src, dst, PROTO_TCP, tcp.length);
  if (frame.readUInt16BE(12) === 0x0800) {
    const extra = opts.ipv4Options ?? 0;
    if (extra > 0) {
      frame = Buffer.concat([frame.subarray(0, 34), Buffer.alloc(extra, 1), frame.subarray(34)]);
      frame[14] = 0x40 | ((20 + extra) / 4);
      frame.writeUInt16BE(20 + extra + tcp.length, 16);
    }
    frame.writeUInt16BE(opts.fragmentOffset ?? 0, 20);
  }
  tcp.copy(frame, tcpOffset(frame));
  const sum = onesSum(tcp, pseudoHeaderSum(frame, tcp.length));
  frame.writeUInt16BE(~sum & 0xffff, tcpOffset(frame) + 16);
  return frame;
}
