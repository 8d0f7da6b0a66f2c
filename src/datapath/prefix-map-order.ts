// The order of the writes that turn one LPM-trie map's contents (km_nodeinfo, km_pod_peers) into another, so
// that an address covered before and after the change never loses its answer in between, and so that the map
// never holds more entries than it must. A longest-prefix lookup of address A only involves keys containing A,
// and keys containing one address are nested; so the changed keys fall into groups of overlapping prefixes
// ("components", disjoint address ranges) that can be changed one after another without affecting each other.
// Within a component: updates longest prefix first, then deletes shortest prefix first. Then every lookup answers
// either with the old contents' answer or with the new one's, never with a mix (test/unit/prefix-map-order.test.ts
// replays the writes through a model of the trie and checks every step). Components that shrink the map go first,
// so two disjoint sets that fit one at a time also fit one after the other; a change whose peak would still exceed
// the map's capacity throws before anything is written.
import { entryKeys } from './entries-memo.js';
import type { MapChange, MapEntry, MapOp } from './map-layout.js';

/** An LPM key as the kernel reads it (u32 prefixlen, host order, then the address bytes), with its range. */
interface PrefixKey {
  key: Buffer;
  prefixLen: number;
  /** First and last address of the prefix (host bits cleared / set), for overlap. */
  first: Buffer;
  last: Buffer;
  /** The value to write; absent for a delete. */
  value?: Buffer;
  /** A key the map does not hold yet. */
  isNew: boolean;
}

function prefixKey(key: Buffer, value: Buffer | undefined, isNew: boolean): PrefixKey {
  const prefixLen = key.readUInt32LE(0);
  const first = Buffer.from(key.subarray(4));
  const last = Buffer.from(first);
  const whole = prefixLen >> 3;
  if (whole < first.length) {
    const keep = (0xff00 >> (prefixLen & 7)) & 0xff;
    first[whole] = (first[whole] ?? 0) & keep;
    last[whole] = (last[whole] ?? 0) | (~keep & 0xff);
    first.fill(0, whole + 1);
    last.fill(0xff, whole + 1);
  }
  return { key, prefixLen, first, last, value, isNew };
}

interface Component {
  updates: PrefixKey[];
  deletes: PrefixKey[];
}

/** Entries after the ops, at most, when applied in `components` order from `start` entries (see fits()). */
function peakOf(start: number, components: readonly Component[]): number {
  let count = start;
  let peak = start;
  for (const c of components) {
    for (const u of c.updates) {
      // Linux before 6.13 refuses even an in-place update of a full trie (-ENOSPC): count one spare entry.
      peak = Math.max(peak, count + 1);
      if (u.isNew) count++;
    }
    count -= c.deletes.length;
  }
  return peak;
}

/**
 * The writes turning `current` into `desired` for an LPM-trie map of `capacity` entries (see the header), with the
 * change counts. Throws, naming the counts, when the change cannot be made within the capacity.
 */
export function diffPrefixEntries(
  current: readonly MapEntry[],
  desired: readonly MapEntry[],
  capacity: number,
  mapName = 'LPM map',
): { ops: MapOp[]; change: MapChange } {
  const have = entryKeys(current);
  const wanted = entryKeys(desired);
  const want = wanted.byHex;
  const touched: PrefixKey[] = [];
  const change: MapChange = { added: 0, changed: 0, removed: 0 };
  // A key listed twice is written once, with its first value.
  const done = want.size === desired.length ? undefined : new Set<string>();
  for (let i = 0; i < desired.length; i++) {
    const e = desired[i] as MapEntry;
    const hex = wanted.hex[i] as string;
    if (done !== undefined) {
      if (done.has(hex)) continue;
      done.add(hex);
    }
    const old = have.byHex.get(hex);
    if (old?.equals(e.value)) continue;
    if (old === undefined) change.added++;
    else change.changed++;
    touched.push(prefixKey(e.key, e.value, old === undefined));
  }
  for (let i = 0; i < current.length; i++) {
    if (!want.has(have.hex[i] as string)) {
      touched.push(prefixKey((current[i] as MapEntry).key, undefined, false));
      change.removed++;
    }
  }
  if (want.size > capacity) {
    throw new Error(`${mapName} would need ${want.size} entries, more than its ${capacity}`);
  }

  // Components: sorted by first address, outer prefixes first, a prefix starting inside the running range joins it.
  touched.sort((a, b) => Buffer.compare(a.first, b.first) || a.prefixLen - b.prefixLen);
  const components: Component[] = [];
  let c: Component = { updates: [], deletes: [] };
  let end: Buffer | undefined;
  for (const k of touched) {
    if (!end || Buffer.compare(k.first, end) > 0) {
      c = { updates: [], deletes: [] };
      components.push(c);
      end = k.last;
    } else if (Buffer.compare(k.last, end) > 0) {
      end = k.last;
    }
    if (k.value) c.updates.push(k);
    else c.deletes.push(k);
  }
  const growth = (c: Component): number => c.updates.filter((u) => u.isNew).length - c.deletes.length;
  const shrinking = components.filter((c) => growth(c) <= 0);
  const growing = components.filter((c) => growth(c) > 0);
  // Shrinking ones first (fewest additions first, so the spare room grows before it is needed), then growing ones
  // that give most back at their end first: the order that keeps the running peak lowest.
  shrinking.sort((a, b) => a.updates.length - b.updates.length);
  growing.sort((a, b) => b.deletes.length - a.deletes.length);
  const ordered = [...shrinking, ...growing];
  const peak = peakOf(current.length, ordered);
  if (peak > capacity) {
    throw new Error(
      `${mapName}: changing ${current.length} entries into ${want.size} needs ${peak} at once ` +
        `(overlapping old and new prefixes are replaced together), more than its ${capacity}`,
    );
  }
  const ops: MapOp[] = [];
  for (const c of ordered) {
    c.updates.sort((a, b) => b.prefixLen - a.prefixLen);
    c.deletes.sort((a, b) => a.prefixLen - b.prefixLen);
    for (const u of c.updates) ops.push({ key: u.key, value: u.value });
    for (const d of c.deletes) ops.push({ key: d.key });
  }
  return { ops, change };
}
