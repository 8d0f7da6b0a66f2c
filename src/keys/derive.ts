// Kmesh-compatible per-pair key derivation, byte for byte (a mismatch would make a mixed cluster unable to decrypt):
//   K(src→dst) = SHA-512(PSK ‖ srcIP ‖ dstIP ‖ srcBootID[:36] ‖ dstBootID[:36])[:36]
// IPs are the textual strings exactly as a node publishes them; boot IDs are their UTF-8 bytes, at most 36
// of them. Shorter boot IDs are used whole (Kmesh slices blindly and panics; we must not).

import { hash } from 'node:crypto';
import { AEAD_KEY_BYTES } from '../model/ipsec-key.js';

/** At most this many bytes of each boot ID enter the hash. */
export const BOOT_ID_BYTES = 36;

/** One end of an encrypted direction: the node's published underlay address and its boot ID. */
export interface KeyEndpoint {
  ip: string;
  bootID: string;
}

function requireText(what: string, value: string): void {
  if (value.length === 0) throw new Error(`key derivation: ${what} is empty`);
}

/** The first 36 bytes of a boot ID (fewer when it is shorter). */
export function bootIdBytes(bootID: string): Buffer {
  return Buffer.from(bootID, 'utf8').subarray(0, BOOT_ID_BYTES);
}

/** Key for traffic from `src` to `dst` under this PSK; the sender's outbound SA and the receiver's inbound SA use it. */
export function derivePairKey(psk: Buffer, src: KeyEndpoint, dst: KeyEndpoint): Buffer {
  return Buffer.from(pairKeyDigest(psk, src, dst).slice(0, AEAD_KEY_BYTES), 'latin1');
}

/**
 * The SHA-512 digest of the pair key's input, as a latin1 string (one character per byte): a string costs V8 one
 * heap object, where a digest Buffer costs an array buffer with a native backing store of its own, allocated and
 * freed per key (10,000 of them in a first 5,000-peer plan).
 */
function pairKeyDigest(psk: Buffer, src: KeyEndpoint, dst: KeyEndpoint): string {
  if (psk.length === 0) throw new Error('key derivation: the pre-shared key is empty');
  requireText('source IP', src.ip);
  requireText('destination IP', dst.ip);
  requireText(`boot ID of ${src.ip}`, src.bootID);
  requireText(`boot ID of ${dst.ip}`, dst.bootID);
  // One-shot SHA-512 of the whole input, laid out in a reused buffer: a hash object and five updates per key
  // cost a cold 5,000-peer plan (10,000 keys) ~40 ms more.
  const most = psk.length + 3 * (src.ip.length + dst.ip.length) + 2 * BOOT_ID_BYTES;
  if (scratch.length < most) scratch = Buffer.allocUnsafeSlow(Math.max(most, 2 * scratch.length));
  let at = psk.copy(scratch, 0);
  at += scratch.write(src.ip, at, 'utf8');
  at += scratch.write(dst.ip, at, 'utf8');
  at = writeBootId(src.bootID, at);
  at = writeBootId(dst.bootID, at);
  const digest = hash('sha512', scratch.subarray(0, at), 'binary'); // 'binary' is latin1
  scratch.fill(0, 0, at); // the PSK is not left behind in a second place
  return digest;
}

/** Where derivePairKey lays out a hash input; zeroed after each use. */
let scratch = Buffer.alloc(1024);

/** Writes the first BOOT_ID_BYTES bytes of a boot ID's UTF-8 at `at`; the offset after them. */
function writeBootId(bootID: string, at: number): number {
  // Buffer.write stops before a character that does not fit whole; the cut must fall where 36 bytes end, even
  // inside a character (bootIdBytes). Whole characters up to 36 bytes, or the whole boot ID, are that cut.
  const n = scratch.write(bootID, at, BOOT_ID_BYTES, 'utf8');
  if (n === BOOT_ID_BYTES || n === Buffer.byteLength(bootID, 'utf8')) return at + n;
  return at + bootIdBytes(bootID).copy(scratch, at);
}

// A plan keeps its derived keys for as long as it holds their SAs: 20,000 of them at 5,000 peers through a
// rotation. Each is copied into a shared slab (the digest's own 64-byte buffer, which a subarray keeps alive,
// costs an array buffer and a native backing store per key). Not remembered here: the planner hands a tunnel's
// keys on from its previous plan when the PSK buffer and the endpoints are the same (src/ipsec/planner.ts).
const SLAB_KEYS = 256;
let slab = Buffer.alloc(0);
let slabUsed = 0;

/** derivePairKey, its 36 bytes kept in a shared slab: the buffers handed out must not be written to. */
export function derivePairKeyKept(psk: Buffer, src: KeyEndpoint, dst: KeyEndpoint): Buffer {
  const digest = pairKeyDigest(psk, src, dst);
  if (slabUsed + AEAD_KEY_BYTES > slab.length) {
    slab = Buffer.allocUnsafeSlow(AEAD_KEY_BYTES * SLAB_KEYS);
    slabUsed = 0;
  }
  const key = slab.subarray(slabUsed, slabUsed + AEAD_KEY_BYTES);
  key.write(digest, 0, AEAD_KEY_BYTES, 'latin1');
  slabUsed += AEAD_KEY_BYTES;
  return key;
}
