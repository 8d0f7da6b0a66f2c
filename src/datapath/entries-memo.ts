// The desired contents of the datapath's maps are rebuilt at every daemon step from inputs that seldom change:
// at 5,000 peers 15,000 keys and values, the hex form of each key for the diff against the map, and the garbage
// of it all (~25 ms and a third of the step's collections, profiled). Two memos keep that to the steps whose
// inputs changed, without giving up the dump and diff each step makes against the map (what repairs a hand-made
// change): a builder hands out its last result again for an equal input, and the diff reads the hex keys of an
// entry list it has seen before from a cache. Entry lists handed out are frozen: they are shared.
import type { ParsedCidr } from '../model/ip-address.js';
import type { MapEntry } from './map-layout.js';

/**
 * `build`, remembering its last input (as `keep` records it) and result: an input `same` as the recorded one gets
 * the last result. A build that throws leaves the memo as it was.
 */
export function lastResult<I, K>(
  build: (input: I) => MapEntry[],
  same: (kept: K, input: I) => boolean,
  keep: (input: I) => K,
): (input: I) => readonly MapEntry[] {
  let last: { kept: K; result: readonly MapEntry[] } | undefined;
  return (input: I) => {
    if (last !== undefined && same(last.kept, input)) return last.result;
    const result = Object.freeze(build(input));
    last = { kept: keep(input), result };
    return result;
  };
}

/** The same CIDRs in the same order (as texts, or parsed: the same parse). */
export function sameCidrList(a: readonly (string | ParsedCidr)[], b: readonly (string | ParsedCidr)[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as string | ParsedCidr;
    const y = b[i] as string | ParsedCidr;
    if (x === y) continue;
    if (typeof x === 'string' || typeof y === 'string') return false;
    if (x.text !== y.text || x.family !== y.family || x.prefixLen !== y.prefixLen || !x.bytes.equals(y.bytes)) {
      return false;
    }
  }
  return true;
}

/** The same texts in the same order. */
export function sameTextList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A map's pairs in order, as kept by lastResult (two flat arrays: compared without an entry object per pair). */
export interface KeptPairs {
  keys: string[];
  values: number[];
}

export function keepPairs(map: ReadonlyMap<string, number>): KeptPairs {
  return { keys: [...map.keys()], values: [...map.values()] };
}

/** The same keys with the same values, in the same order (the builders' results depend on the order). */
export function samePairs(kept: KeptPairs, map: ReadonlyMap<string, number>): boolean {
  if (kept.keys.length !== map.size) return false;
  let i = 0;
  let same = true;
  // forEach, not for-of over entries: that builds a pair per entry.
  map.forEach((value, key) => {
    if (same && (kept.keys[i] !== key || kept.values[i] !== value)) same = false;
    i++;
  });
  return same;
}

/** An entry list's keys in hex (in list order) and its values by hex key (the last entry of a key wins). */
export interface EntryKeys {
  hex: readonly string[];
  byHex: ReadonlyMap<string, Buffer>;
}

const keysOf = new WeakMap<readonly MapEntry[], EntryKeys>();

/**
 * The hex keys of `entries`, from the cache when the list was seen before. Only frozen lists (the builders'
 * results, which the fake datapath also holds as its maps' contents) are cached: a list that can still change
 * is read afresh.
 */
export function entryKeys(entries: readonly MapEntry[]): EntryKeys {
  const cached = keysOf.get(entries);
  if (cached !== undefined) return cached;
  const hex: string[] = new Array<string>(entries.length);
  const byHex = new Map<string, Buffer>();
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as MapEntry;
    const h = e.key.toString('hex');
    hex[i] = h;
    byHex.set(h, e.value);
  }
  const keys = { hex, byHex };
  if (Object.isFrozen(entries)) keysOf.set(entries, keys);
  return keys;
}
