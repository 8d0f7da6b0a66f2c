// Pinned maps whose definition changed between builds (e.g. km_ipsec_peers from 8,192 preallocated entries to
// 32,768 allocated as used). libbpf reuses a pinned map only when type, key and value size, max_entries and flags
// all equal the object's, and refuses to load otherwise, so an upgraded node would stop at load. Before the objects
// are loaded, every such pin is set aside (renamed to <name>_old: bpffs refuses names with a dot); libbpf then
// creates and pins the new map, its entries are carried over from the old one, and the old pin is removed, with one
// log line per map. The running programs keep their old maps (an attached program holds its maps, pinned or not)
// until the new programs, which bpf-programs.ts then always installs, replace them with their maps already filled.
// A pin left at <name>_old by an interrupted migration is carried over on the next load. Map-in-map values
// (km_cidr_index) and entries whose key or value size changed cannot be carried: those maps start empty and their
// writer fills them again.
import { promises as fs } from 'node:fs';
import path from 'node:path';

import { withFd, type BpfFd, type MapDefinition, type NativeBpf } from './native-bpf.js';

const BPF_MAP_TYPE_ARRAY_OF_MAPS = 12;
const BPF_MAP_TYPE_HASH_OF_MAPS = 13;

/** Receives one line per migrated map (and its fields for structured logs). */
export type MigrationLog = (msg: string, fields: Record<string, unknown>) => void;

/** A pinned map of an earlier build, set aside under <name>_old until its entries are in the new map. */
export interface SetAsideMap {
  name: string;
  oldPin: string;
  fd: BpfFd;
  /** What differs, e.g. "max_entries 8192 -> 32768, flags 0x0 -> 0x1". */
  change: string;
  pinned: MapDefinition & { id: number };
}

/** Where a set-aside map is pinned until its entries are carried over. */
export function oldPinOf(pin: string): string {
  return `${pin}_old`;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** How the pinned map's definition differs from the object's (undefined: libbpf reuses it as it is). */
export function definitionChange(pinned: MapDefinition, wanted: MapDefinition): string | undefined {
  const parts: string[] = [];
  if (pinned.type !== wanted.type) parts.push(`type ${pinned.type} -> ${wanted.type}`);
  if (pinned.keySize !== wanted.keySize) parts.push(`key size ${pinned.keySize} -> ${wanted.keySize}`);
  if (pinned.valueSize !== wanted.valueSize) parts.push(`value size ${pinned.valueSize} -> ${wanted.valueSize}`);
  if (pinned.maxEntries !== wanted.maxEntries) parts.push(`max_entries ${pinned.maxEntries} -> ${wanted.maxEntries}`);
  if (pinned.flags !== wanted.flags) parts.push(`flags ${hex(pinned.flags)} -> ${hex(wanted.flags)}`);
  return parts.length > 0 ? parts.join(', ') : undefined;
}

/** Why the entries of `from` cannot be written into a map of definition `to` (undefined: they can). */
export function notCarriable(from: MapDefinition, to: MapDefinition): string | undefined {
  const mapInMap = (t: number): boolean => t === BPF_MAP_TYPE_ARRAY_OF_MAPS || t === BPF_MAP_TYPE_HASH_OF_MAPS;
  if (mapInMap(from.type) || mapInMap(to.type)) return 'its values are maps (its writer fills it again)';
  if (from.type !== to.type) return 'its type changed';
  if (from.keySize !== to.keySize || from.valueSize !== to.valueSize) return 'its key or value size changed';
  return undefined;
}

/**
 * Sets aside every pin under `mapDir` whose definition differs from the one in these objects (and picks up the
 * <name>_old pins an interrupted migration left). Nothing is removed: the old maps stay pinned as <name>_old.
 */
export async function setAsideChangedMaps(
  bpf: NativeBpf,
  mapDir: string,
  objPaths: readonly string[],
): Promise<SetAsideMap[]> {
  const wanted = new Map<string, MapDefinition>();
  for (const obj of objPaths) for (const d of await bpf.objectMaps(obj)) if (!wanted.has(d.name)) wanted.set(d.name, d);
  const out: SetAsideMap[] = [];
  try {
    for (const [name, def] of wanted) {
      const pin = path.join(mapDir, name);
      const oldPin = oldPinOf(pin);
      if (await exists(oldPin)) {
        const fd = await bpf.getPinned(oldPin);
        const pinned = bpf.mapInfo(fd);
        out.push({ name, oldPin, fd, pinned, change: definitionChange(pinned, def) ?? 'interrupted migration' });
        // A pin at <name> beside it is the new map of that migration (carried into again) or, if it too differs,
        // an older one still: the _old pin is the one carried, that one goes.
        if (await exists(pin)) {
          const differs = await withFd(bpf.getPinned(pin), (f) => definitionChange(bpf.mapInfo(f), def) !== undefined);
          if (differs) await fs.rm(pin, { force: true });
        }
        continue;
      }
      if (!(await exists(pin))) continue;
      const fd = await bpf.getPinned(pin);
      const pinned = bpf.mapInfo(fd);
      const change = definitionChange(pinned, def);
      if (change === undefined) {
        fd.close();
        continue;
      }
      await fs.rename(pin, oldPin);
      out.push({ name, oldPin, fd, pinned, change });
    }
  } catch (e) {
    for (const s of out) s.fd.close();
    throw e;
  }
  return out;
}

/**
 * Writes the set-aside map's entries into its successor, then removes the old pin and logs what happened. Throws
 * (keeping the old pin, so the next load carries it again) when the successor refuses an entry.
 */
export async function carryOver(bpf: NativeBpf, old: SetAsideMap, successor: BpfFd, log: MigrationLog): Promise<void> {
  try {
    const to = bpf.mapInfo(successor);
    const why = notCarriable(old.pinned, to);
    let carried = 0;
    if (why === undefined) {
      const entries = await bpf.mapDump(old.fd);
      try {
        await bpf.mapApply(successor, entries);
      } catch (e) {
        throw new Error(
          `pinned map ${old.name} (${old.change}): carrying its ${entries.length} entries into the new map failed: ` +
            `${e instanceof Error ? e.message : String(e)}; the old map stays pinned at ${old.oldPin}`,
          { cause: e },
        );
      }
      carried = entries.length;
    }
    await fs.rm(old.oldPin, { force: true });
    log(
      `pinned BPF map ${old.name} has a different definition in this build (${old.change}): replaced by a new map, ` +
        (why === undefined ? `${carried} entries carried over` : `entries not carried (${why})`),
      { map: old.name, change: old.change, carried, oldMapId: old.pinned.id, newMapId: to.id },
    );
  } finally {
    old.fd.close();
  }
}

/** Whether anything (file, pin, dangling link) is at `p`. */
export async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}
