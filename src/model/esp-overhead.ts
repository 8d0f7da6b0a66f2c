// The MTU/MSS rule of the ESP tunnel: how many bytes rfc4106(gcm(aes)) in tunnel mode adds to a packet, and the
// largest TCP MSS whose full segments still fit the underlay MTU once encrypted (what tc_mark_encrypt clamps
// SYN / SYN-ACK to, through km_ipsec_config). Tunnels never mix families (an IPv4 pod pair rides an IPv4
// underlay, IPv6 an IPv6 one), so inner and outer family are the same.
//
// Encrypted size of an inner packet of L bytes:
//   outer IP header (20 IPv4 / 40 IPv6) + ESP header 8 (SPI, sequence) + IV 8
//   + ciphertext: L + 2 (pad length, next header), padded to a multiple of 4 + ICV 16
// so the largest inner packet is L = floor((MTU - outer - 32) / 4) * 4 - 2, and
// MSS = L - inner IP header (20 / 40) - TCP header 20. For MTU 1500: IPv4 1406, IPv6 1366.

export const ESP_HEADER_BYTES = 8;
export const ESP_IV_BYTES = 8;
export const ESP_ICV_BYTES = 16;
/** Pad length and next header bytes of the ESP trailer, before the padding to ESP_ALIGN. */
export const ESP_TRAILER_BYTES = 2;
/** GCM is a stream mode: ESP pads the ciphertext only to 4-byte alignment (RFC 4303). */
export const ESP_ALIGN = 4;
export const IP_HEADER_BYTES = { 4: 20, 6: 40 } as const;
export const TCP_HEADER_BYTES = 20;
/** Smallest MTU we accept: IPv6's minimum link MTU (IPv4's 576 would leave IPv6 pods no MSS at all). */
export const MIN_IPSEC_MTU = 1280;
export const MAX_IPSEC_MTU = 65535;

/** Per-family MSS limits; 0 = no clamping for that family. */
export interface MssClamp {
  ipv4: number;
  ipv6: number;
}

export const NO_MSS_CLAMP: MssClamp = { ipv4: 0, ipv6: 0 };

/** Bytes an inner packet of `innerLen` bytes occupies on the underlay once ESP-encrypted in tunnel mode. */
export function espTunnelSize(innerLen: number, family: 4 | 6): number {
  const padded = Math.ceil((innerLen + ESP_TRAILER_BYTES) / ESP_ALIGN) * ESP_ALIGN;
  return IP_HEADER_BYTES[family] + ESP_HEADER_BYTES + ESP_IV_BYTES + padded + ESP_ICV_BYTES;
}

/** The largest inner packet that fits `mtu` once encrypted. */
export function maxInnerPacket(mtu: number, family: 4 | 6): number {
  const room = mtu - IP_HEADER_BYTES[family] - ESP_HEADER_BYTES - ESP_IV_BYTES - ESP_ICV_BYTES;
  return Math.floor(room / ESP_ALIGN) * ESP_ALIGN - ESP_TRAILER_BYTES;
}

/** MSS limits for an underlay MTU. Throws a one-line error for an MTU outside MIN_IPSEC_MTU..MAX_IPSEC_MTU. */
export function mssClampForMtu(mtu: number): MssClamp {
  if (!Number.isInteger(mtu) || mtu < MIN_IPSEC_MTU || mtu > MAX_IPSEC_MTU) {
    throw new Error(`IPsec MTU ${mtu} is outside ${MIN_IPSEC_MTU}..${MAX_IPSEC_MTU}`);
  }
  const mss = (family: 4 | 6): number => maxInnerPacket(mtu, family) - IP_HEADER_BYTES[family] - TCP_HEADER_BYTES;
  return { ipv4: mss(4), ipv6: mss(6) };
}
