// The loaded BPF objects of the datapath: opens tc_mark_encrypt.o and tc_mark_decrypt.o with their maps pinned by
// name under <root>/map (an earlier process's pinned maps, and their contents, are reused), and pins each program
// under <root>/tc, adopting the pinned program when its code is unchanged. Owns the fds of both programs and of
// every map the datapath uses; fds the objects hold beyond those are closed at once. Also makes sure the root is
// on a BPF filesystem (mounting /sys/fs/bpf when that is where it belongs and nothing is mounted there). Pinned maps
// of an earlier build with a different definition are migrated (map-migration.ts), and then the programs are
// always replaced, so that no attached program keeps reading a replaced map.
import { promises as fs } from 'node:fs';
import path from 'node:path';

import { PROGRAM_NAMES, type AttachKind } from './datapath.js';
import {
  carryOver,
  exists,
  oldPinOf,
  setAsideChangedMaps,
  type MigrationLog,
  type SetAsideMap,
} from './map-migration.js';
import type { BpfFd, NativeBpf } from './native-bpf.js';

const MAP_NAMES = [
  'km_nodeinfo',
  'km_cidr_index',
  'km_ipsec_peers',
  'km_ipsec_stats',
  'km_ipsec_config',
  'km_local_pods',
  'km_pod_peers',
  'km_plaintext',
  'km_tc_attach',
] as const;
export type MapName = (typeof MAP_NAMES)[number];
export const KINDS: readonly AttachKind[] = ['encrypt', 'decrypt'];
const BPFFS_MOUNT = '/sys/fs/bpf';

/** Where the pins of one datapath live. */
export interface PinDirs {
  root: string;
  /** <root>/map: maps by name. */
  mapDir: string;
  /** <root>/tc: programs by name and TCX links. */
  tcDir: string;
}

function pinDirs(root: string): PinDirs {
  return { root, mapDir: path.join(root, 'map'), tcDir: path.join(root, 'tc') };
}

export interface LoadedProgram {
  fd: BpfFd;
  id: number;
  tag: string;
}

export async function unlinkIfPresent(p: string): Promise<void> {
  await fs.rm(p, { force: true });
}

async function ensureBpffs(bpf: NativeBpf, root: string): Promise<void> {
  let probe = root;
  while (!(await exists(probe))) probe = path.dirname(probe);
  if (bpf.isBpffs(probe)) return;
  if ((root === BPFFS_MOUNT || root.startsWith(`${BPFFS_MOUNT}/`)) && probe === BPFFS_MOUNT) {
    await bpf.mountBpffs(BPFFS_MOUNT);
    return;
  }
  throw new Error(`bpffs root ${root} is not on a BPF filesystem (mount one with: mount -t bpf bpf <dir>)`);
}

export class BpfPrograms {
  private constructor(
    readonly dirs: PinDirs,
    readonly progs: Readonly<Record<AttachKind, LoadedProgram>>,
    readonly maps: Readonly<Record<MapName, BpfFd>>,
    /** Kinds whose pinned program was replaced by different code: their attachments must follow. */
    readonly upgraded: readonly AttachKind[],
  ) {}

  /** Loads both objects under `root` (a bpffs directory, created when missing) from `objDir`. */
  static async load(bpf: NativeBpf, root: string, objDir: string, log: MigrationLog = () => {}): Promise<BpfPrograms> {
    await ensureBpffs(bpf, root);
    const dirs = pinDirs(root);
    await fs.mkdir(dirs.mapDir, { recursive: true });
    await fs.mkdir(dirs.tcDir, { recursive: true });

    const objPaths = KINDS.map((kind) => path.join(objDir, `${PROGRAM_NAMES[kind]}.o`));
    // Checked first: libbpf reports a missing file as "open BPF object ... errno 2", which says neither which file
    // nor how to get it.
    for (const objPath of objPaths) {
      if (!(await exists(objPath))) {
        throw new Error(`BPF object ${objPath} is missing (in a checkout, build it with: npm run build:bpf)`);
      }
    }
    // Pins of an earlier build's maps that this build defines differently: set aside, carried over below.
    const setAside = await setAsideChangedMaps(bpf, dirs.mapDir, objPaths);
    const maps: Partial<Record<MapName, BpfFd>> = {};
    const progs: Partial<Record<AttachKind, LoadedProgram>> = {};
    const upgraded: AttachKind[] = [];
    const opened: BpfFd[] = [];
    try {
      for (const [i, kind] of KINDS.entries()) {
        const progName = PROGRAM_NAMES[kind];
        const objPath = objPaths[i] as string;
        const obj = await bpf.loadObject({ path: objPath, mapPinDir: dirs.mapDir });
        opened.push(...obj.programs.map((p) => p.fd), ...obj.maps.map((m) => m.fd));
        for (const m of obj.maps) {
          if ((MAP_NAMES as readonly string[]).includes(m.name)) maps[m.name as MapName] ??= m.fd;
        }
        const fresh = obj.programs.find((p) => p.name === progName);
        if (!fresh) throw new Error(`${objPath} has no program named ${progName}`);
        const freshInfo = bpf.progInfo(fresh.fd);
        const pinPath = path.join(dirs.tcDir, progName);
        let chosen: LoadedProgram = { fd: fresh.fd, id: freshInfo.id, tag: freshInfo.tag };
        if (await exists(pinPath)) {
          const pinnedFd = await bpf.getPinned(pinPath);
          opened.push(pinnedFd);
          const pinned = bpf.progInfo(pinnedFd);
          // A pinned program with the same code still reads the old maps when any was replaced (the tag leaves map
          // references out): then the fresh one takes over too.
          if (pinned.tag === freshInfo.tag && pinned.name === progName && setAside.length === 0) {
            chosen = { fd: pinnedFd, id: pinned.id, tag: pinned.tag };
          } else {
            // Different code in the object file than in the pinned program: the new one takes over the pin and,
            // after loading, every attachment of the old one.
            await unlinkIfPresent(pinPath);
            await bpf.pinObject(fresh.fd, pinPath);
            upgraded.push(kind);
          }
        } else {
          await bpf.pinObject(fresh.fd, pinPath);
        }
        progs[kind] = chosen;
      }
      for (const name of MAP_NAMES) {
        if (maps[name] === undefined) throw new Error(`the BPF objects in ${objDir} define no map ${name}`);
      }
      // Before any attachment moves to the new programs (followUpgrades), so they never see an empty map.
      while (setAside.length > 0) {
        const old = setAside[0] as SetAsideMap;
        const successor = maps[old.name as MapName];
        if (successor) await carryOver(bpf, old, successor, log);
        else old.fd.close(); // no longer in the objects: its pin stays at <name>_old
        setAside.shift();
      }
    } catch (e) {
      for (const fd of opened) fd.close();
      for (const old of setAside) old.fd.close();
      throw e;
    }
    const keep = new Set<BpfFd>([...Object.values(maps), ...Object.values(progs).map((p) => p.fd)]);
    for (const fd of opened) if (!keep.has(fd)) fd.close();
    return new BpfPrograms(dirs, progs as Record<AttachKind, LoadedProgram>, maps as Record<MapName, BpfFd>, upgraded);
  }

  /** Kernel ids of the loaded programs. */
  ids(): Record<AttachKind, number> {
    return { encrypt: this.progs.encrypt.id, decrypt: this.progs.decrypt.id };
  }

  /** Whether a program id is one of ours. */
  isOurs(progId: number): boolean {
    return KINDS.some((k) => this.progs[k].id === progId);
  }

  /** Removes the program and map pins (attachments hold their programs on their own). */
  async unpin(): Promise<void> {
    for (const kind of KINDS) await unlinkIfPresent(path.join(this.dirs.tcDir, PROGRAM_NAMES[kind]));
    for (const name of MAP_NAMES) {
      await unlinkIfPresent(path.join(this.dirs.mapDir, name));
      await unlinkIfPresent(oldPinOf(path.join(this.dirs.mapDir, name))); // left by a failed migration
    }
  }

  /** Closes every fd this instance owns (idempotent); pins and attachments stay. */
  close(): void {
    for (const fd of Object.values(this.maps)) fd.close();
    for (const kind of KINDS) this.progs[kind].fd.close();
  }
}
