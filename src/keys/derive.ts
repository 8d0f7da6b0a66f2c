// Kmesh-compatible per-pair key derivation, byte for byte (a mismatch would make a mixed cluster unable to decrypt):
//   K(src→dst) = SHA-512(PSK ‖ srcIP ‖ dstIP ‖ srcBootID[:36] ‖ dstBootID[:36])[:36]
// IPs are the textual strings exactly as a node publishes them; boot IDs are their UTF-8 bytes, at most 36
// of them. Shorter boot IDs are used whole (Kmesh slices blindly and panics; we must not).
// This is the definition, one key at a time through node:crypto: the planner derives its keys in batches through
// the native addon (src/ipsec/pair-key-batch.ts), tested equal to this.

import { createHash } from 'node:crypto';
import { AEAD_KEY_BYTES } from '../model/ipsec-key.js';

/** At most this many bytes of each boot ID enter the hash. */
export const BOOT_ID_BYTES = 36;

/** One end of an encrypted direction: the node's published underlay address and its boot ID. */
export interface KeyEndpoint {
  ip: string;
  bootID: string;
}

/** Throws the derivation's one-line error for an empty pre-shared key. */
export function requirePsk(psk: Buffer): void {
  if (psk.length === 0) throw new Error('key derivation: the pre-shared key is empty');
}

/** Throws the derivation's one-line error for an empty address or boot ID (`what` names it). */
export function requireText(what: string, value: string): void {
  if (value.length === 0) throw new Error(`key derivation: ${what} is empty`);
}

/** The first 36 bytes of a boot ID (fewer when it is shorter). */
export function bootIdBytes(bootID: string): Buffer {
  const bytes = Buffer.from(bootID, 'utf8');
  return bytes.length <= BOOT_ID_BYTES ? bytes : bytes.subarray(0, BOOT_ID_BYTES);
}

/** Key for traffic from `src` to `dst` under this PSK; the sender's outbound SA and the receiver's inbound SA use it. */
export function derivePairKey(psk: Buffer, src: KeyEndpoint, dst: KeyEndpoint): Buffer {
  requirePsk(psk);
  requireText('source IP', src.ip);
  requireText(`boot ID of ${src.ip}`, src.bootID);
  requireText('destination IP', dst.ip);
  requireText(`boot ID of ${dst.ip}`, dst.bootID);
  const digest = createHash('sha512')
    .update(psk)
    .update(src.ip, 'utf8')
    .update(dst.ip, 'utf8')
    .update(bootIdBytes(src.bootID))
    .update(bootIdBytes(dst.bootID))
    .digest();
  const key = Buffer.from(digest.subarray(0, AEAD_KEY_BYTES));
  digest.fill(0);
  return key;
}
