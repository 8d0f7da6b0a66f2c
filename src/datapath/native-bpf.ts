// Typed view of the addon's `bpf` namespace (native/bpf.cc, native/bpf_tc.cc, native/bpf_fd.cc). File
// descriptors never appear as numbers: the addon hands out BpfFd objects that own them and takes them back as
// arguments. Calls with more than two parameters take one option object. Every promise rejects with an Error
// whose .code is 'KMESH_ERRNO' and which carries .errno, .syscall (the operation) and .object.
import { loadAddon } from '../native/addon.js';

/**
 * A kernel fd of a BPF program, map or link, owned by this object. close() is idempotent; the fd closes when the
 * last addon call still running on it has finished, and also when the object is garbage-collected unclosed.
 */
export interface BpfFd {
  /** The fd number while open, -1 once closed: only for values the kernel reads as an fd (an inner map). */
  readonly fd: number;
  readonly closed: boolean;
  close(): void;
}

export interface NamedFd {
  name: string;
  fd: BpfFd;
}

export interface ClsactSlot {
  handle: number;
  priority: number;
  progId: number;
}

/** One clsact ingress filter, by its exact slot. */
export interface ClsactFilter {
  ifindex: number;
  handle: number;
  priority: number;
  /** Network namespace file holding the device; '' or absent = ours. */
  netns?: string;
  /** Names the device in error messages. */
  label: string;
}

export interface ClsactAttachOptions {
  ifindex: number;
  prog: BpfFd;
  netns?: string;
  /** 0 / absent = a free slot the kernel picks (another filter's slot is never taken). */
  handle?: number;
  priority?: number;
  /** Swap the program of the filter at exactly (handle, priority). */
  replace?: boolean;
  label: string;
}

export interface TcxAttachOptions {
  ifindex: number;
  prog: BpfFd;
  netns?: string;
  label: string;
}

/** What libbpf compares before reusing a pinned map for an object's map of the same name. */
export interface MapDefinition {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface MapCreateOptions {
  type: number;
  name: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
}

export interface NativeTestRunOptions {
  packet: Buffer;
  /** skb->mark before the run; default 0. */
  mark?: number;
  /** Runs; default 1. */
  repeat?: number;
}

export interface NativeTestRun {
  retval: number;
  mark: number;
  durationNs: number;
  packet: Buffer;
}

export interface MapOp {
  key: Buffer;
  /** Absent = delete the key. */
  value?: Buffer;
}

export interface NativeBpf {
  /** The BpfFd class, for instanceof; its constructor throws (only the addon makes them). */
  Fd: abstract new () => BpfFd;
  loadObject(opts: { path: string; mapPinDir: string }): Promise<{ programs: NamedFd[]; maps: NamedFd[] }>;
  pinObject(fd: BpfFd, path: string): Promise<void>;
  getPinned(path: string): Promise<BpfFd>;
  progInfo(fd: BpfFd): { id: number; name: string; tag: string; type: number };
  mapInfo(fd: BpfFd): MapDefinition & { id: number };
  /** The definitions of an object file's maps (not its internal .data/.rodata/.bss), as libbpf would create them. */
  objectMaps(path: string): Promise<MapDefinition[]>;
  linkInfo(fd: BpfFd): { id: number; progId: number; type: number; ifindex: number };
  mapCreate(opts: MapCreateOptions): Promise<BpfFd>;
  mapFreeze(map: BpfFd): Promise<void>;
  mapFdById(id: number): Promise<BpfFd>;
  /** Per-CPU maps take every possible CPU's value back to back (8-byte aligned each), as mapDump returns them. */
  mapApply(map: BpfFd, ops: readonly MapOp[]): Promise<void>;
  mapLookup(map: BpfFd, key: Buffer): Promise<Buffer | null>;
  mapDump(map: BpfFd): Promise<{ key: Buffer; value: Buffer }[]>;
  testRun(prog: BpfFd, opts: NativeTestRunOptions): Promise<NativeTestRun>;
  isBpffs(path: string): boolean;
  mountBpffs(path: string): Promise<void>;
  possibleCpus: number;
  ifindex(name: string, netns: string): Promise<number>;
  ifname(index: number, netns: string): Promise<string | null>;
  clsactAttach(opts: ClsactAttachOptions): Promise<ClsactSlot>;
  /** The program id in that slot; 0 when the filter, its device or its qdisc is gone. */
  clsactQuery(filter: ClsactFilter): Promise<number>;
  /** Removes exactly that filter; false when it was already gone. */
  clsactDetach(filter: ClsactFilter): Promise<boolean>;
  tcxSupported(prog: BpfFd): Promise<boolean>;
  tcxAttach(opts: TcxAttachOptions): Promise<BpfFd>;
  linkUpdate(opts: { link: BpfFd; prog: BpfFd; label: string }): Promise<void>;
  linkDetach(link: BpfFd, label: string): Promise<void>;
}

/** A kernel error from the addon. */
export interface ErrnoError extends Error {
  code: 'KMESH_ERRNO';
  errno: number;
  syscall: string;
  object: string;
  libbpfLog?: string;
}

export function isErrnoError(e: unknown): e is ErrnoError {
  return e instanceof Error && (e as Partial<ErrnoError>).code === 'KMESH_ERRNO';
}

export function nativeBpf(): NativeBpf {
  return (loadAddon() as { bpf: NativeBpf }).bpf;
}

/** Runs fn with an fd (or the one a call opens) and closes it afterwards, whatever fn did. */
export async function withFd<T>(open: BpfFd | Promise<BpfFd>, fn: (fd: BpfFd) => Promise<T> | T): Promise<T> {
  const fd = await open;
  try {
    return await fn(fd);
  } finally {
    fd.close();
  }
}
