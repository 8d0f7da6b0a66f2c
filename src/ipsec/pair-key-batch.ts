// A plan's pair keys (derive.ts's K(src→dst), byte for byte), derived in batches by the native addon: a key asked
// for is handed out at once as its 36 bytes' place in a shared slab, and those bytes are written when the slab's
// batch is derived — when the slab is full, or at settlePairKeys(), which whoever asks must call before the keys
// are used (the planner does, whatever happens to the plan). Through node:crypto's hash() a first 5,000-peer plan
// paid ~4 µs of JavaScript per key around ~0.3 µs of hashing (docs/benchmarks.md, twelfth session); here a key
// costs its request (four numbers) and its view of the slab, and each peer's address and boot ID are handed over
// once per batch, as the strings they are (the addon reads them as UTF-8). PSKs are handed over by reference.
import { loadAddon } from '../native/addon.js';
import { requirePsk, requireText, type KeyEndpoint } from '../keys/derive.js';
import { AEAD_KEY_BYTES } from '../model/ipsec-key.js';

interface PairKeysAddon {
  derive(psks: Buffer[], endpoints: string[], requests: Uint32Array, count: number, out: Buffer): void;
}

/** Keys per slab, and so per batch (a slab is freed when none of its keys is held any longer). */
const SLAB_KEYS = 256;
/** Uint32 words per request (PSK index, source endpoint, destination endpoint, offset in the slab). */
const REQUEST_WORDS = 4;

let addon: PairKeysAddon | undefined;
let slab = Buffer.alloc(0);
/** Keys handed out of the slab; those from `settledKeys` on are not derived yet. */
let slabKeys = SLAB_KEYS;
let settledKeys = SLAB_KEYS;
const requests = new Uint32Array(SLAB_KEYS * REQUEST_WORDS);
/** Each endpoint of the pending batch: its IP and its boot ID (the addon cuts that to BOOT_ID_BYTES of UTF-8). */
let endpoints: string[] = [];
/** The PSKs of the pending batch (a plan holds one to three). */
let psks: Buffer[] = [];
/** The error of a batch derived when its slab filled, until settlePairKeys() throws it to whoever settles. */
let failure: Error | undefined;

// The two endpoints added last to the pending batch (A the last): a plan asks for each peer's keys one after the
// other (peer -> local, then local -> peer), so the local node and then the peer are added once, not once per key.
// Held as fields, not as an object per endpoint added (5,000 of them in a first 5,000-peer plan). Index -1: none.
let recentAIp = '';
let recentABootID = '';
let recentAIndex = -1;
let recentBIp = '';
let recentBBootID = '';
let recentBIndex = -1;

/** The index of `e` among the pending batch's endpoints, added now if it is not yet. */
function endpointIndex(e: KeyEndpoint, what: string): number {
  const { ip, bootID } = e;
  if (recentAIndex >= 0 && recentAIp === ip && recentABootID === bootID) return recentAIndex;
  if (recentBIndex >= 0 && recentBIp === ip && recentBBootID === bootID) return recentBIndex;
  requireText(what, ip);
  requireText(`boot ID of ${ip}`, bootID);
  const index = endpoints.length / 2;
  endpoints.push(ip, bootID);
  recentBIp = recentAIp;
  recentBBootID = recentABootID;
  recentBIndex = recentAIndex;
  recentAIp = ip;
  recentABootID = bootID;
  recentAIndex = index;
  return index;
}

/**
 * The pair key of `src` → `dst` under `psk` (derive.ts's derivePairKey), as 36 bytes of a shared slab that must
 * not be written to. Its bytes are written at the latest by settlePairKeys(): call it before the key is used.
 */
export function requestPairKey(psk: Buffer, src: KeyEndpoint, dst: KeyEndpoint): Buffer {
  requirePsk(psk);
  if (slabKeys === SLAB_KEYS) {
    try {
      derivePending();
    } catch (e) {
      // Those keys were handed out already: whoever asked for them learns of it when settling, as well as here.
      failure = e instanceof Error ? e : new Error(String(e));
      throw e;
    }
    // Zeroed: its keys' bytes are written only when their batch is derived.
    slab = Buffer.alloc(SLAB_KEYS * AEAD_KEY_BYTES);
    slabKeys = 0;
    settledKeys = 0;
  }
  const from = endpointIndex(src, 'source IP');
  const to = endpointIndex(dst, 'destination IP');
  let p = psks.indexOf(psk);
  if (p < 0) p = psks.push(psk) - 1;
  const at = slabKeys * AEAD_KEY_BYTES;
  const w = (slabKeys - settledKeys) * REQUEST_WORDS;
  requests[w] = p;
  requests[w + 1] = from;
  requests[w + 2] = to;
  requests[w + 3] = at;
  slabKeys++;
  return slab.subarray(at, at + AEAD_KEY_BYTES);
}

/**
 * Derives every key asked for and not derived yet (a no-op when there is none). Throws when that fails, or when a
 * batch derived earlier because its slab filled failed since the last call: keys handed out since then must not be
 * used.
 */
export function settlePairKeys(): void {
  if (failure !== undefined) {
    const e = failure;
    failure = undefined;
    slabKeys = SLAB_KEYS;
    settledKeys = SLAB_KEYS;
    clearBatch();
    throw e;
  }
  derivePending();
}

/** Derives the pending batch; on failure none of its keys is handed out again and the error is thrown. */
function derivePending(): void {
  const count = slabKeys - settledKeys;
  if (count > 0) {
    addon ??= (loadAddon() as { pairKeys: PairKeysAddon }).pairKeys;
    try {
      addon.derive(psks, endpoints, requests, count, slab);
    } catch (e) {
      // The slab's pending keys are not trustworthy: none of them is handed out again, and the caller fails.
      slabKeys = SLAB_KEYS;
      throw e;
    } finally {
      settledKeys = slabKeys;
      clearBatch();
    }
  }
}

/** Empties the batch's layout (its keys were derived, or are given up). */
function clearBatch(): void {
  psks = [];
  endpoints = [];
  recentAIndex = -1;
  recentBIndex = -1;
}

/** Keys asked for and not derived yet (tests). */
export function pendingPairKeys(): number {
  return slabKeys - settledKeys;
}
