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
