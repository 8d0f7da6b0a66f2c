// Whether the bpffs under --bpf-fs-path is the host's or one private to this process's mount namespace.
// `ip netns exec` gives the command a new mount namespace with a fresh /sys, where start_kmesh.sh then mounts a
// new bpffs: pins made there vanish with the namespace, so the datapath would silently not survive a stop.
// Every bpffs mount is its own instance with its own device number, so the bpffs is shared exactly when PID 1 (the
// host's init, or a container's own init, which shares its mount namespace) sees a bpf mount with the same device
// (/proc/self/mountinfo against /proc/1/mountinfo). Parsing and the verdict are pure; readBpffsScope reads /proc.
import fs from 'node:fs/promises';
import path from 'node:path';

/** One line of /proc/PID/mountinfo (proc(5)), the fields we use. */
export interface MountEntry {
  /** `major:minor` of the filesystem instance. */
  dev: string;
  mountPoint: string;
  fsType: string;
}

/** The verdict on the bpffs that holds a path. */
export type BpffsScope =
  /** PID 1 sees the same bpffs instance: pins outlive this process and its mount namespace. */
  | { kind: 'shared'; mountPoint: string }
  /** A bpffs only this mount namespace sees: its pins go when the namespace does. */
  | { kind: 'private'; mountPoint: string }
  /** The path is not on a bpffs at all (nothing to say here: pinning will fail and say so). */
  | { kind: 'not-bpffs'; mountPoint: string; fsType: string }
  /** Could not tell (no /proc, or PID 1's mount table unreadable). */
  | { kind: 'unknown'; reason: string };

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parses mountinfo text; malformed lines are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    const dev = fields[2];
    const mountPoint = fields[4];
    const fsType = fields[separator + 1];
    if (separator < 0 || dev === undefined || mountPoint === undefined || fsType === undefined) continue;
    entries.push({ dev, mountPoint: unescape(mountPoint), fsType });
  }
  return entries;
}

function contains(mountPoint: string, target: string): boolean {
  return mountPoint === '/' || target === mountPoint || target.startsWith(`${mountPoint}/`);
}

/** The mount an absolute, resolved path lives on: the deepest mount point above it, the last one stacked there. */
export function mountOf(entries: readonly MountEntry[], target: string): MountEntry | undefined {
  let best: MountEntry | undefined;
  for (const entry of entries) {
    if (!contains(entry.mountPoint, target)) continue;
    if (best === undefined || entry.mountPoint.length >= best.mountPoint.length) best = entry;
  }
  return best;
}

/** The verdict for `target` from our mount table and PID 1's. */
export function bpffsScope(self: readonly MountEntry[], init: readonly MountEntry[], target: string): BpffsScope {
  const mount = mountOf(self, target);
  if (mount === undefined) return { kind: 'unknown', reason: `no mount holds ${target}` };
  if (mount.fsType !== 'bpf') return { kind: 'not-bpffs', mountPoint: mount.mountPoint, fsType: mount.fsType };
  const seenByInit = init.some((e) => e.fsType === 'bpf' && e.dev === mount.dev);
  return { kind: seenByInit ? 'shared' : 'private', mountPoint: mount.mountPoint };
}

/** `dir` with symlinks resolved as far as it exists (a missing tail is kept as written). */
async function resolveExisting(dir: string): Promise<string> {
  let existing = path.resolve(dir);
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(await fs.realpath(existing), ...tail);
    } catch {
      const parent = path.dirname(existing);
      if (parent === existing) return path.resolve(dir);
      tail.unshift(path.basename(existing));
      existing = parent;
    }
  }
}

/** Reads /proc (or `procRoot`) and judges the bpffs holding `bpfFsPath`. */
export async function readBpffsScope(bpfFsPath: string, procRoot = '/proc'): Promise<BpffsScope> {
  let self: string;
  let init: string;
  try {
    self = await fs.readFile(path.join(procRoot, 'self', 'mountinfo'), 'utf8');
    init = await fs.readFile(path.join(procRoot, '1', 'mountinfo'), 'utf8');
  } catch (err) {
    return { kind: 'unknown', reason: `cannot read the mount tables: ${(err as Error).message}` };
  }
  return bpffsScope(parseMountinfo(self), parseMountinfo(init), await resolveExisting(bpfFsPath));
}

/** The one-line explanation of a private bpffs, for the refusal, the warning and uninstall. */
export function privateBpffsMessage(bpfFsPath: string, mountPoint: string): string {
  return (
    `--bpf-fs-path ${bpfFsPath} is on a bpffs (mounted at ${mountPoint}) private to this mount namespace, not ` +
    `the one PID 1 sees (as under "ip netns exec", which remounts /sys): pins there vanish with the namespace, so ` +
    'the datapath would not survive a stop or be found by uninstall; run in the host mount namespace ' +
    '("nsenter --net=/run/netns/NAME" instead of "ip netns exec")'
  );
}
