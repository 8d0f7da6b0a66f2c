// Skb mark layout shared by the eBPF programs (bpf/marks.h mirrors these numbers) and the XFRM planner.
//
// Bits 0-7 hold the IPsec "type" byte: 0xe0 = encrypt this packet, 0xd0 = this packet was decrypted.
// Bits 16-31 carry a per-peer id on ESP packets between tc_mark_decrypt and the inbound SA lookup, so each
// peer gets its own inbound SA even though every peer sends to the same (dst, SPI): with one shared inbound SA,
// as Kmesh installs it, only one peer of three or more can be decrypted. The inbound SA's output-mark rewrites
// the whole masked field to plain 0xd0, so the peer id never outlives decryption.
// Bits 8-15 are never touched (kube-proxy uses 0x4000/0x8000 there).

export const MARK_TYPE_MASK = 0x000000ff;
export const MARK_ENCRYPT = 0xe0;
export const MARK_DECRYPT = 0xd0;
export const PEER_ID_SHIFT = 16;
const PEER_ID_MASK = 0xffff0000;
/** Largest per-peer id that fits the mark field; 0 means "no peer". */
export const PEER_ID_MAX = 0xffff;
/** Mask covering the type byte and the peer id: what inbound SAs match and what their output-mark rewrites. */
export const MARK_INBOUND_MASK = (PEER_ID_MASK | MARK_TYPE_MASK) >>> 0;

/** Mark value tc_mark_decrypt gives an ESP packet from the peer with this id. */
export function inboundEspMark(peerId: number): number {
  if (!Number.isInteger(peerId) || peerId < 1 || peerId > PEER_ID_MAX) {
    throw new RangeError(`peer id ${peerId} is outside 1..${PEER_ID_MAX}`);
  }
  return ((peerId << PEER_ID_SHIFT) | MARK_DECRYPT) >>> 0;
}
