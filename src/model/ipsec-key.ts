// What makes an IPsec key version usable, stated once for every reader of keys: the Secret's payload decoder
// (src/secret/payload.ts), the key history the daemon holds and persists (src/keys/key-history.ts), peer
// validation (the SPI a KmeshNodeInfo may advertise) and the XFRM codec (the SPI an SA may carry). These are
// the Kmesh Secret format's rules: one AEAD, rfc4106(gcm(aes)), with a 36-byte key (32-byte AES-256 key +
// 4-byte GCM salt) and a 128-bit ICV, under an ESP SPI in 1..2^32-1 (0 is reserved by RFC 4303).
import type { IpsecKey } from './node.js';

/** The only AEAD algorithm Kmesh (and so this product) uses. */
export const AEAD_KEY_NAME = 'rfc4106(gcm(aes))';
/** Key material: 32-byte AES-256 key followed by the 4-byte GCM salt. */
export const AEAD_KEY_BYTES = 36;
/** ICV length in bits: what Kmesh writes into the Secret's `length`, and the only one accepted. */
export const ICV_BITS = 128;
/** ESP SPI range: a 32-bit field where 0 is reserved. */
export const SPI_MIN = 1;
export const SPI_MAX = 0xffffffff;

export function isValidSpi(spi: number): boolean {
  return Number.isInteger(spi) && spi >= SPI_MIN && spi <= SPI_MAX;
}

/** Why this key version is not one we can use (one line, never the key bytes), or undefined when it is. */
export function ipsecKeyProblem(key: IpsecKey): string | undefined {
  if (!isValidSpi(key.spi)) return `SPI ${String(key.spi)} is not an integer in ${SPI_MIN}..${SPI_MAX}`;
  if (key.aeadKeyName !== AEAD_KEY_NAME) {
    return `SPI ${key.spi}: algorithm "${key.aeadKeyName}" is not supported (only ${AEAD_KEY_NAME})`;
  }
  if (!Buffer.isBuffer(key.key) || key.key.length !== AEAD_KEY_BYTES) {
    return `SPI ${key.spi}: key must be ${AEAD_KEY_BYTES} bytes, got ${String((key.key as { length?: unknown }).length)}`;
  }
  if (key.icvBits !== ICV_BITS) return `SPI ${key.spi}: ICV length ${key.icvBits} bits is not ${ICV_BITS}`;
  return undefined;
}
