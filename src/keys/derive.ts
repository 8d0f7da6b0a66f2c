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
  const bytes = Buffer.from(bootID, 'utf8');
  return bytes.length <= BOOT_ID_BYTES ? bytes : bytes.subarray(0, BOOT_ID_BYTES);
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
  const from = endpointBytes(src, 'source IP');
  const to = endpointBytes(dst, 'destination IP');
  // One-shot SHA-512 of the whole input, laid out in a reused buffer: a hash object and five updates per key
  // cost a cold 5,000-peer plan (10,000 keys) ~40 ms more. The pieces are copied in by TypedArray.set.
  const length = psk.length + from.ip.length + to.ip.length + from.bootID.length + to.bootID.length;
  if (scratch.length < length) {
    scratch = Buffer.allocUnsafeSlow(Math.max(length, 2 * scratch.length));
    scratchViews = [];
  }
  scratch.set(psk, 0);
  let at = psk.length;
  scratch.set(from.ip, at);
  at += from.ip.length;
  scratch.set(to.ip, at);
  at += to.ip.length;
  scratch.set(from.bootID, at);
  at += from.bootID.length;
  scratch.set(to.bootID, at);
  const digest = hash('sha512', scratchView(length), 'binary'); // 'binary' is latin1
  scratch.fill(0, 0, length); // the PSK is not left behind in a second place
  return digest;
}

/** Where derivePairKey lays out a hash input; zeroed after each use. */
let scratch = Buffer.alloc(1024);
/** scratch[0, n) by n: a view per input length, not one per key. */
let scratchViews: Buffer[] = [];

function scratchView(length: number): Buffer {
  return (scratchViews[length] ??= scratch.subarray(0, length));
}

/** An endpoint's pieces of the hash input: its IP's UTF-8, and the first BOOT_ID_BYTES bytes of its boot ID's. */
interface EndpointBytes {
  endpoint: KeyEndpoint;
  ip: Uint8Array;
  bootID: Uint8Array;
}

// The two endpoints encoded last: a plan derives each peer's two keys one after the other (local -> peer, then
// peer -> local), so the local node's pieces and then the peer's are encoded once, not once per key. Public
// values only (the PSK is never kept here).
let recentA: EndpointBytes | undefined;
let recentB: EndpointBytes | undefined;

function endpointBytes(e: KeyEndpoint, what: string): EndpointBytes {
  if (recentA !== undefined && recentA.endpoint.ip === e.ip && recentA.endpoint.bootID === e.bootID) return recentA;
  if (recentB !== undefined && recentB.endpoint.ip === e.ip && recentB.endpoint.bootID === e.bootID) return recentB;
  requireText(what, e.ip);
  requireText(`boot ID of ${e.ip}`, e.bootID);
  const encoded: EndpointBytes = {
    endpoint: { ip: e.ip, bootID: e.bootID },
    ip: Buffer.from(e.ip, 'utf8'),
    // Cut where 36 bytes end, even inside a character (Kmesh slices the bytes).
    bootID: bootIdBytes(e.bootID),
  };
  recentB = recentA;
  recentA = encoded;
  return encoded;
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
