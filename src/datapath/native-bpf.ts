// Typed view of the addon's `bpf` namespace (native/bpf.cc, native/bpf_tc.cc). Every promise rejects with an
// Error whose .code is 'KMESH_ERRNO' and which carries .errno, .syscall (the operation) and .object.
import { loadAddon } from '../native/addon.js';

export interface NamedFd {
  name: string;
  fd: number;
}

export interface ClsactSlot {
  handle: number;
  priority: number;
  progId: number;
}

export interface NativeTestRun {
  retval: number;
  mark: number;
  durationNs: number;
  packet: Buffer;
}

export interface NativeBpf {
  loadObject(path: string, mapPinDir: string): Promise<{ programs: NamedFd[]; maps: NamedFd[] }>;
  pinObject(fd: number, path: string): Promise<void>;
  getPinned(path: string): Promise<number>;
  closeFd(fd: number): void;
  progInfo(fd: number): { id: number; name: string; tag: string; type: number };
  mapInfo(fd: number): {
    id: number;
    name: string;
    type: number;
    keySize: number;
    valueSize: number;
    maxEntries: number;
  };
  linkInfo(fd: number): { id: number; progId: number; type: number; ifindex: number };
  mapCreate(
    type: number,
    name: string,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    flags: number,
  ): Promise<number>;
  mapFreeze(fd: number): Promise<void>;
  mapFdById(id: number): Promise<number>;
  mapApply(fd: number, ops: readonly { key: Buffer; value?: Buffer }[]): Promise<void>;
  mapLookup(fd: number, key: Buffer): Promise<Buffer | null>;
  mapDump(fd: number): Promise<{ key: Buffer; value: Buffer }[]>;
  testRun(progFd: number, packet: Buffer, mark: number, repeat: number): Promise<NativeTestRun>;
  isBpffs(path: string): boolean;
  mountBpffs(path: string): Promise<void>;
  possibleCpus: number;
  ifindex(name: string, netns: string): Promise<number>;
  ifname(index: number, netns: string): Promise<string | null>;
  clsactAttach(
    ifindex: number,
    progFd: number,
    netns: string,
    handle: number,
    priority: number,
    replace: boolean,
    label: string,
  ): Promise<ClsactSlot>;
  clsactQuery(ifindex: number, handle: number, priority: number, netns: string, label: string): Promise<number>;
  clsactDetach(ifindex: number, handle: number, priority: number, netns: string, label: string): Promise<boolean>;
  tcxSupported(progFd: number): Promise<boolean>;
  tcxAttach(ifindex: number, progFd: number, netns: string, label: string): Promise<number>;
  linkUpdate(linkFd: number, progFd: number, label: string): Promise<void>;
  linkDetach(linkFd: number, label: string): Promise<void>;
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
