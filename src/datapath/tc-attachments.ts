// Our TC ingress attachments and their pinned registry. Attaches a loaded program to a device (a TCX link pinned
// under <root>/tc/link_<kind>_<netns>_<ifindex> where the kernel has TCX, else a direct-action clsact filter in a
// slot the kernel picks), detaches exactly what is ours, moves attachments to an upgraded program, and records each
// one in km_tc_attach (bpf/maps.h struct km_attach_key / km_attach_val): a record is how a restarted daemon finds
// exactly the filters and links it made, and nothing else. A record whose attachment is gone (device or netns
// deleted, filter replaced by someone else) is dropped when seen. The record layout functions at the top are pure.
import { promises as fs } from 'node:fs';
import path from 'node:path';

import { KINDS, unlinkIfPresent, type BpfPrograms } from './bpf-programs.js';
import { PROGRAM_NAMES, type AttachKind, type AttachMode, type AttachOptions, type Attachment } from './datapath.js';
import { ATTACH_KEY_SIZE, ATTACH_VALUE_SIZE } from './map-layout.js';
import { isErrnoError, withFd, type BpfFd, type NativeBpf } from './native-bpf.js';

const ENOENT = 2;
const KIND_CODE: Readonly<Record<AttachKind, number>> = { encrypt: 1, decrypt: 2 };
const MODE_CODE: Readonly<Record<AttachMode, number>> = { clsact: 1, tcx: 2 };
const IFNAME_OFFSET = 16;
const IFNAME_SIZE = 16;
const NETNS_OFFSET = 32;
const NETNS_SIZE = ATTACH_VALUE_SIZE - NETNS_OFFSET;

/** One km_tc_attach entry. */
export interface AttachRecord {
  netnsIno: bigint;
  ifindex: number;
  kind: AttachKind;
  mode: AttachMode;
  progId: number;
  /** clsact filter slot; 0 for TCX. */
  handle: number;
  priority: number;
  ifname: string;
  /** Namespace path given at attach time, '' = the daemon's own. */
  netns: string;
}

export function encodeAttachKey(netnsIno: bigint, ifindex: number, kind: AttachKind): Buffer {
  const key = Buffer.alloc(ATTACH_KEY_SIZE);
  key.writeBigUInt64LE(netnsIno, 0);
  key.writeUInt32LE(ifindex, 8);
  key.writeUInt32LE(KIND_CODE[kind], 12);
  return key;
}

/** The record's value; throws when a name does not fit, before anything is attached. */
export function encodeAttachValue(r: AttachRecord): Buffer {
  const value = Buffer.alloc(ATTACH_VALUE_SIZE);
  value.writeUInt32LE(MODE_CODE[r.mode], 0);
  value.writeUInt32LE(r.progId, 4);
  value.writeUInt32LE(r.handle, 8);
  value.writeUInt32LE(r.priority, 12);
  if (Buffer.byteLength(r.ifname) >= IFNAME_SIZE) throw new Error(`interface name "${r.ifname}" is too long`);
  value.write(r.ifname, IFNAME_OFFSET);
  if (Buffer.byteLength(r.netns) >= NETNS_SIZE) {
    throw new Error(`netns path "${r.netns}" is longer than ${NETNS_SIZE - 1} bytes`);
  }
  value.write(r.netns, NETNS_OFFSET);
  return value;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString();
}

function decodeEnum<T extends string>(codes: Readonly<Record<T, number>>, code: number, what: string): T {
  const found = (Object.keys(codes) as T[]).find((k) => codes[k] === code);
  if (found === undefined) throw new Error(`km_tc_attach record has unknown ${what} ${code}`);
  return found;
}

export function decodeAttachRecord(key: Buffer, value: Buffer): AttachRecord {
  if (key.length !== ATTACH_KEY_SIZE || value.length !== ATTACH_VALUE_SIZE) {
    throw new Error(
      `km_tc_attach record has sizes ${key.length}/${value.length}, not ${ATTACH_KEY_SIZE}/${ATTACH_VALUE_SIZE}`,
    );
  }
  return {
    netnsIno: key.readBigUInt64LE(0),
    ifindex: key.readUInt32LE(8),
    kind: decodeEnum(KIND_CODE, key.readUInt32LE(12), 'kind'),
    mode: decodeEnum(MODE_CODE, value.readUInt32LE(0), 'mode'),
    progId: value.readUInt32LE(4),
    handle: value.readUInt32LE(8),
    priority: value.readUInt32LE(12),
    ifname: cString(value.subarray(IFNAME_OFFSET, IFNAME_OFFSET + IFNAME_SIZE)),
    netns: cString(value.subarray(NETNS_OFFSET)),
  };
}

/** File name (under <root>/tc/) of the pinned TCX link of this attachment. */
export function tcxLinkPinName(kind: AttachKind, netnsIno: bigint, ifindex: number): string {
  return `link_${kind}_${netnsIno}_${ifindex}`;
}

export function isTcxLinkPinName(name: string): boolean {
  return new RegExp(`^link_(${KINDS.join('|')})_\\d+_\\d+$`).test(name);
}

function toAttachment(r: AttachRecord): Attachment {
  return {
    kind: r.kind,
    ifindex: r.ifindex,
    ifname: r.ifname,
    mode: r.mode,
    netns: r.netns === '' ? undefined : r.netns,
    progId: r.progId,
  };
}

function label(r: Pick<AttachRecord, 'kind' | 'ifname'>): string {
  return `${PROGRAM_NAMES[r.kind]} on ${r.ifname}`;
}

function clsactFilter(r: AttachRecord): {
  ifindex: number;
  handle: number;
  priority: number;
  netns: string;
  label: string;
} {
  return { ifindex: r.ifindex, handle: r.handle, priority: r.priority, netns: r.netns, label: r.ifname };
}

async function netnsIno(netns: string): Promise<bigint> {
  const p = netns === '' ? '/proc/self/ns/net' : netns;
  try {
    return (await fs.stat(p, { bigint: true })).ino;
  } catch {
    throw new Error(`network namespace ${p} cannot be opened`);
  }
}

export class TcAttachments {
  private tcx: boolean | undefined;

  constructor(
    private readonly bpf: NativeBpf,
    private readonly programs: BpfPrograms,
  ) {}

  private get registry(): BpfFd {
    return this.programs.maps.km_tc_attach;
  }

  /** Attaches (or finds attached) the program of this kind on the device's TC ingress. */
  async attach(kind: AttachKind, iface: string | number, opts: AttachOptions = {}): Promise<Attachment> {
    const netns = opts.netns ?? '';
    const wanted = opts.mode ?? 'auto';
    const { ifindex, ifname } = await this.resolve(iface, netns);
    const ino = await netnsIno(netns);
    const prog = this.programs.progs[kind];

    const existing = await this.record(ino, ifindex, kind);
    if (existing) {
      const live = await this.liveProgId(existing);
      if (live !== 0 && (wanted === 'auto' || wanted === existing.mode)) {
        return toAttachment(live === prog.id ? existing : await this.repoint(existing));
      }
      await this.remove(existing);
    }

    const mode: AttachMode = wanted === 'auto' ? ((await this.tcxSupported()) ? 'tcx' : 'clsact') : wanted;
    let record: AttachRecord = {
      netnsIno: ino,
      ifindex,
      kind,
      mode,
      progId: prog.id,
      handle: 0,
      priority: 0,
      ifname,
      netns,
    };
    encodeAttachValue(record); // names are checked before anything is attached
    if (mode === 'tcx') {
      const pinPath = this.linkPinPath(record);
      await withFd(this.bpf.tcxAttach({ ifindex, prog: prog.fd, netns, label: ifname }), async (link) => {
        try {
          await unlinkIfPresent(pinPath);
          await this.bpf.pinObject(link, pinPath);
        } catch (e) {
          await this.bpf.linkDetach(link, label(record));
          throw e;
        }
      });
    } else {
      const slot = await this.bpf.clsactAttach({ ifindex, prog: prog.fd, netns, label: ifname });
      record = { ...record, handle: slot.handle, priority: slot.priority };
    }
    await this.write(record);
    return toAttachment(record);
  }

  /** Detaches our program of this kind from the device; false when none of ours was attached there. */
  async detach(kind: AttachKind, iface: string | number, netns = ''): Promise<boolean> {
    const ino = await netnsIno(netns);
    let ifindex: number;
    if (typeof iface === 'number') {
      ifindex = iface;
    } else {
      const found = (await this.records()).find((r) => r.netnsIno === ino && r.ifname === iface && r.kind === kind);
      if (!found) return false;
      ifindex = found.ifindex;
    }
    const existing = await this.record(ino, ifindex, kind);
    return existing ? this.remove(existing) : false;
  }

  /** Our live attachments (also those of an earlier process); records of vanished ones are dropped. */
  async live(): Promise<Attachment[]> {
    const out: Attachment[] = [];
    for (const r of await this.records()) {
      if ((await this.liveProgId(r)) !== 0) out.push(toAttachment(r));
      else await this.forget(r);
    }
    return out;
  }

  /** Moves every live attachment of an upgraded program kind to the newly loaded program. */
  async followUpgrades(): Promise<void> {
    for (const kind of this.programs.upgraded) {
      for (const r of await this.records()) {
        if (r.kind === kind && (await this.liveProgId(r)) !== 0) await this.repoint(r);
      }
    }
  }

  /** Detaches every attachment of ours and removes every link pin; returns what could not be removed. */
  async removeAll(): Promise<string[]> {
    const failures: string[] = [];
    for (const r of await this.records()) {
      try {
        await this.remove(r);
      } catch (e) {
        failures.push(e instanceof Error ? e.message : String(e));
      }
    }
    const { tcDir } = this.programs.dirs;
    for (const name of await fs.readdir(tcDir)) {
      if (isTcxLinkPinName(name)) await unlinkIfPresent(path.join(tcDir, name));
    }
    return failures;
  }

  private async tcxSupported(): Promise<boolean> {
    this.tcx ??= await this.bpf.tcxSupported(this.programs.progs.encrypt.fd);
    return this.tcx;
  }

  private async resolve(iface: string | number, netns: string): Promise<{ ifindex: number; ifname: string }> {
    if (typeof iface === 'number') {
      if (!Number.isInteger(iface) || iface <= 0) throw new Error(`interface index ${iface} is not a positive integer`);
      const name = await this.bpf.ifname(iface, netns);
      if (name === null) throw new Error(`no interface with index ${iface}${netns ? ` in netns ${netns}` : ''}`);
      return { ifindex: iface, ifname: name };
    }
    return { ifindex: await this.bpf.ifindex(iface, netns), ifname: iface };
  }

  private async records(): Promise<AttachRecord[]> {
    return (await this.bpf.mapDump(this.registry)).map((e) => decodeAttachRecord(e.key, e.value));
  }

  private async record(ino: bigint, ifindex: number, kind: AttachKind): Promise<AttachRecord | undefined> {
    const key = encodeAttachKey(ino, ifindex, kind);
    const value = await this.bpf.mapLookup(this.registry, key);
    return value ? decodeAttachRecord(key, value) : undefined;
  }

  private async write(r: AttachRecord): Promise<void> {
    await this.bpf.mapApply(this.registry, [
      { key: encodeAttachKey(r.netnsIno, r.ifindex, r.kind), value: encodeAttachValue(r) },
    ]);
  }

  /** Drops a record and its link pin (if any). */
  private async forget(r: AttachRecord): Promise<void> {
    if (r.mode === 'tcx') await unlinkIfPresent(this.linkPinPath(r));
    await this.bpf.mapApply(this.registry, [{ key: encodeAttachKey(r.netnsIno, r.ifindex, r.kind) }]);
  }

  private linkPinPath(r: AttachRecord): string {
    return path.join(this.programs.dirs.tcDir, tcxLinkPinName(r.kind, r.netnsIno, r.ifindex));
  }

  /** The pinned link of a TCX record; undefined when its pin is gone. */
  private async pinnedLink(r: AttachRecord): Promise<BpfFd | undefined> {
    try {
      return await this.bpf.getPinned(this.linkPinPath(r));
    } catch (e) {
      if (isErrnoError(e) && e.errno === ENOENT) return undefined;
      throw e;
    }
  }

  /** The id of the program really attached where the record says; 0 if that attachment no longer exists. */
  private async liveProgId(r: AttachRecord): Promise<number> {
    if (r.mode === 'tcx') {
      const link = await this.pinnedLink(r);
      if (!link) return 0;
      return withFd(link, (fd) => {
        const info = this.bpf.linkInfo(fd);
        return info.ifindex === r.ifindex ? info.progId : 0;
      });
    }
    let id: number;
    try {
      id = await this.bpf.clsactQuery(clsactFilter(r));
    } catch (e) {
      if (isErrnoError(e) && e.syscall === 'enter netns') return 0;
      throw e;
    }
    // Another program in that filter slot means someone replaced our filter: it is not ours any more.
    return id === r.progId || this.programs.isOurs(id) ? id : 0;
  }

  /** Points a live attachment at the currently loaded program of its kind. */
  private async repoint(r: AttachRecord): Promise<AttachRecord> {
    const prog = this.programs.progs[r.kind];
    if (r.mode === 'tcx') {
      await withFd(this.bpf.getPinned(this.linkPinPath(r)), (link) =>
        this.bpf.linkUpdate({ link, prog: prog.fd, label: label(r) }),
      );
    } else {
      await this.bpf.clsactAttach({ ...clsactFilter(r), prog: prog.fd, replace: true });
    }
    const updated = { ...r, progId: prog.id };
    await this.write(updated);
    return updated;
  }

  /** Removes the attachment a record describes (only if it is still ours) and the record; true if one was live. */
  private async remove(r: AttachRecord): Promise<boolean> {
    const live = await this.liveProgId(r);
    if (live !== 0) {
      if (r.mode === 'tcx') {
        await withFd(this.bpf.getPinned(this.linkPinPath(r)), (link) => this.bpf.linkDetach(link, label(r)));
      } else {
        await this.bpf.clsactDetach(clsactFilter(r));
      }
    }
    await this.forget(r);
    return live !== 0;
  }
}
