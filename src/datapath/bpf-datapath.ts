// The real datapath: loads tc_mark_encrypt / tc_mark_decrypt through the libbpf addon, pins programs and maps
// under a bpffs root (reusing what an earlier process pinned), attaches to TC ingress (TCX link or clsact
// filter), keeps the maps equal to the desired remote CIDRs and peers by difference, and records every
// attachment in the pinned km_tc_attach registry so a restarted daemon finds exactly what is its own.
// All operations of one instance run one after another.
import { promises as fs } from 'node:fs';
import path from 'node:path';

import {
  decodeAttachRecord,
  encodeAttachKey,
  encodeAttachValue,
  isTcxLinkPinName,
  tcxLinkPinName,
  type AttachRecord,
} from './attach-registry.js';
import {
  COUNTER_NAMES,
  DEFAULT_BPFFS_ROOT,
  PROGRAM_NAMES,
  type AttachKind,
  type AttachMode,
  type AttachOptions,
  type Attachment,
  type CidrIndexUse,
  type Datapath,
  type DatapathCounters,
  type DatapathStats,
  type LoadOptions,
} from './datapath.js';
import {
  CIDR_INDEX_KEY_SIZE,
  CIDR_POOL_SIZE,
  cidrIndexUse,
  compileCidrIndex,
  encodeCidrPool,
  decodeCidrHeader,
  fitsCidrIndex,
  type CidrHeader,
  type CidrIndex,
} from './cidr-index.js';
import { parseCidrStrict } from '../model/ip-address.js';
import { diffEntries, nodeinfoEntries, peerEntries, type MapChange, type MapEntry } from './map-layout.js';
import { isErrnoError, nativeBpf, type NativeBpf } from './native-bpf.js';
import { packageRoot } from '../native/addon.js';

const MAP_NAMES = ['km_nodeinfo', 'km_cidr_index', 'km_ipsec_peers', 'km_ipsec_stats', 'km_tc_attach'] as const;
type MapName = (typeof MAP_NAMES)[number];
const KINDS: readonly AttachKind[] = ['encrypt', 'decrypt'];
const BPFFS_MOUNT = '/sys/fs/bpf';

interface LoadedProgram {
  fd: number;
  id: number;
  tag: string;
}

interface Loaded {
  root: string;
  mapDir: string;
  tcDir: string;
  progs: Record<AttachKind, LoadedProgram>;
  maps: Record<MapName, number>;
}

export interface TestRunOptions {
  /** skb->mark before the program runs. */
  mark?: number;
  /** Runs of the program; durationNs is the kernel's average per run. */
  repeat?: number;
}

export interface TestRunResult {
  /** Program return code (-1 = TC_ACT_UNSPEC / TCX_NEXT: pass on, never a drop). */
  retval: number;
  /** skb->mark after the program ran. */
  mark: number;
  durationNs: number;
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}

async function unlinkIfPresent(p: string): Promise<void> {
  await fs.rm(p, { force: true });
}

async function rmdirIfEmpty(p: string): Promise<void> {
  try {
    await fs.rmdir(p);
  } catch {
    // not empty (someone else's pins) or already gone: leave it
  }
}

function isErrno(e: unknown, ...errnos: number[]): boolean {
  return isErrnoError(e) && errnos.includes(e.errno);
}

const ENOENT = 2;
const BPF_MAP_TYPE_ARRAY = 2;
/** The one slot of km_cidr_index (u32 key 0), also the key of an inner map's one value. */
const CIDR_SLOT = Buffer.alloc(4);

export class BpfDatapath implements Datapath {
  private state: Loaded | undefined;
  private tcx: boolean | undefined;
  private cidrHeaderSeen: { mapId: number; header: CidrHeader } | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly bpf: NativeBpf = nativeBpf()) {}

  /** Runs fn after every earlier operation of this instance has settled. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private loaded(): Loaded {
    if (!this.state) throw new Error('datapath is not loaded: call load() first');
    return this.state;
  }

  /** Where the programs and maps are pinned (valid after load()). */
  get bpffsRoot(): string {
    return this.loaded().root;
  }

  load(opts: LoadOptions = {}): Promise<void> {
    return this.serial(() => this.doLoad(opts));
  }

  private async doLoad(opts: LoadOptions): Promise<void> {
    const root = path.resolve(opts.bpffsRoot ?? DEFAULT_BPFFS_ROOT);
    if (this.state) {
      if (this.state.root === root) return;
      throw new Error(`datapath is already loaded at ${this.state.root}, cannot load it again at ${root}`);
    }
    const objDir = path.resolve(opts.objDir ?? path.join(packageRoot(), 'build', 'bpf'));
    await this.ensureBpffs(root);
    const mapDir = path.join(root, 'map');
    const tcDir = path.join(root, 'tc');
    await fs.mkdir(mapDir, { recursive: true });
    await fs.mkdir(tcDir, { recursive: true });

    const maps: Partial<Record<MapName, number>> = {};
    const progs: Partial<Record<AttachKind, LoadedProgram>> = {};
    const upgraded: { kind: AttachKind; oldId: number }[] = [];
    const opened: number[] = [];
    try {
      for (const kind of KINDS) {
        const progName = PROGRAM_NAMES[kind];
        const objPath = path.join(objDir, `${progName}.o`);
        const obj = await this.bpf.loadObject(objPath, mapDir);
        opened.push(...obj.programs.map((p) => p.fd), ...obj.maps.map((m) => m.fd));
        for (const m of obj.maps) {
          if ((MAP_NAMES as readonly string[]).includes(m.name) && maps[m.name as MapName] === undefined) {
            maps[m.name as MapName] = m.fd;
          }
        }
        const fresh = obj.programs.find((p) => p.name === progName);
        if (!fresh) throw new Error(`${objPath} has no program named ${progName}`);
        const freshInfo = this.bpf.progInfo(fresh.fd);
        const pinPath = path.join(tcDir, progName);
        let chosen: LoadedProgram = { fd: fresh.fd, id: freshInfo.id, tag: freshInfo.tag };
        if (await exists(pinPath)) {
          const pinnedFd = await this.bpf.getPinned(pinPath);
          opened.push(pinnedFd);
          const pinned = this.bpf.progInfo(pinnedFd);
          if (pinned.tag === freshInfo.tag && pinned.name === progName) {
            chosen = { fd: pinnedFd, id: pinned.id, tag: pinned.tag };
          } else {
            // Different code in the object file than in the pinned program: the new one takes over the pin and,
            // after loading, every attachment of the old one.
            await unlinkIfPresent(pinPath);
            await this.bpf.pinObject(fresh.fd, pinPath);
            upgraded.push({ kind, oldId: pinned.id });
          }
        } else {
          await this.bpf.pinObject(fresh.fd, pinPath);
        }
        progs[kind] = chosen;
      }
      for (const name of MAP_NAMES) {
        if (maps[name] === undefined) throw new Error(`the BPF objects in ${objDir} define no map ${name}`);
      }
    } catch (e) {
      for (const fd of opened) this.bpf.closeFd(fd);
      throw e;
    }
    const keep = new Set<number>([...Object.values(maps), ...Object.values(progs).map((p) => p.fd)]);
    for (const fd of opened) if (!keep.has(fd)) this.bpf.closeFd(fd);
    this.state = {
      root,
      mapDir,
      tcDir,
      progs: progs as Record<AttachKind, LoadedProgram>,
      maps: maps as Record<MapName, number>,
    };
    for (const { kind } of upgraded) {
      for (const r of await this.records()) {
        if (r.kind === kind && (await this.liveProgId(r)) !== 0) await this.repoint(r);
      }
    }
  }

  private async ensureBpffs(root: string): Promise<void> {
    let probe = root;
    while (!(await exists(probe))) probe = path.dirname(probe);
    if (this.bpf.isBpffs(probe)) return;
    if ((root === BPFFS_MOUNT || root.startsWith(`${BPFFS_MOUNT}/`)) && probe === BPFFS_MOUNT) {
      await this.bpf.mountBpffs(BPFFS_MOUNT);
      return;
    }
    throw new Error(`bpffs root ${root} is not on a BPF filesystem (mount one with: mount -t bpf bpf <dir>)`);
  }

  attach(kind: AttachKind, iface: string | number, opts: AttachOptions = {}): Promise<Attachment> {
    return this.serial(() => this.doAttach(kind, iface, opts));
  }

  private async doAttach(kind: AttachKind, iface: string | number, opts: AttachOptions): Promise<Attachment> {
    const s = this.loaded();
    const netns = opts.netns ?? '';
    const wanted = opts.mode ?? 'auto';
    const { ifindex, ifname } = await this.resolve(iface, netns);
    const netnsIno = await this.netnsIno(netns);
    const prog = s.progs[kind];

    const existing = await this.record(netnsIno, ifindex, kind);
    if (existing) {
      const live = await this.liveProgId(existing);
      if (live !== 0 && (wanted === 'auto' || wanted === existing.mode)) {
        const current = live === prog.id ? existing : await this.repoint(existing);
        return this.toAttachment(current);
      }
      await this.removeAttachment(existing);
    }

    const mode: AttachMode = wanted === 'auto' ? ((await this.tcxSupported()) ? 'tcx' : 'clsact') : wanted;
    const label = `${PROGRAM_NAMES[kind]} on ${ifname}`;
    const record: AttachRecord = {
      netnsIno,
      ifindex,
      kind,
      mode,
      progId: prog.id,
      handle: 0,
      priority: 0,
      ifname,
      netns,
    };
    const value = encodeAttachValue(record); // validates names before anything is attached
    if (mode === 'tcx') {
      const pinPath = path.join(s.tcDir, tcxLinkPinName(kind, netnsIno, ifindex));
      const linkFd = await this.bpf.tcxAttach(ifindex, prog.fd, netns, ifname);
      try {
        await unlinkIfPresent(pinPath);
        await this.bpf.pinObject(linkFd, pinPath);
      } catch (e) {
        await this.bpf.linkDetach(linkFd, label);
        throw e;
      } finally {
        this.bpf.closeFd(linkFd);
      }
    } else {
      const slot = await this.bpf.clsactAttach(ifindex, prog.fd, netns, 0, 0, false, ifname);
      record.handle = slot.handle;
      record.priority = slot.priority;
      value.writeUInt32LE(slot.handle, 8);
      value.writeUInt32LE(slot.priority, 12);
    }
    await this.bpf.mapApply(s.maps.km_tc_attach, [{ key: encodeAttachKey(netnsIno, ifindex, kind), value }]);
    return this.toAttachment(record);
  }

  detach(kind: AttachKind, iface: string | number, opts: Pick<AttachOptions, 'netns'> = {}): Promise<boolean> {
    return this.serial(async () => {
      this.loaded();
      const netns = opts.netns ?? '';
      const netnsIno = await this.netnsIno(netns);
      let ifindex: number;
      if (typeof iface === 'number') {
        ifindex = iface;
      } else {
        const found = (await this.records()).find(
          (r) => r.netnsIno === netnsIno && r.ifname === iface && r.kind === kind,
        );
        if (!found) return false;
        ifindex = found.ifindex;
      }
      const existing = await this.record(netnsIno, ifindex, kind);
      if (!existing) return false;
      return this.removeAttachment(existing);
    });
  }

  attachments(): Promise<Attachment[]> {
    return this.serial(() => this.liveAttachments());
  }

  private async liveAttachments(): Promise<Attachment[]> {
    const out: Attachment[] = [];
    for (const r of await this.records()) {
      if ((await this.liveProgId(r)) !== 0) out.push(this.toAttachment(r));
      else await this.forget(r); // its device or netns went away: drop the stale record
    }
    return out;
  }

  setRemoteCidrs(cidrs: readonly string[]): Promise<MapChange> {
    return this.serial(async () => {
      const parsed = cidrs.map((c) => parseCidrStrict(c)); // every CIDR is valid before anything is written
      const entries = nodeinfoEntries(parsed);
      const index = compileCidrIndex(parsed);
      const change = await this.replaceMap('km_nodeinfo', entries);
      await this.installCidrIndex(index);
      return change;
    });
  }

  /**
   * Makes the km_cidr_index slot hold this index: nothing is written when the installed one has the same
   * fingerprint; otherwise a new inner map is filled, frozen and swapped in with one update. An index that
   * does not fit, or one that cannot be installed, leaves the slot empty so the programs ask km_nodeinfo:
   * a stale index must never answer for a changed km_nodeinfo.
   */
  private async installCidrIndex(index: CidrIndex): Promise<void> {
    const outer = this.loaded().maps.km_cidr_index;
    const installed = await this.installedCidrIndex();
    if (!fitsCidrIndex(index)) {
      if (installed) await this.bpf.mapApply(outer, [{ key: CIDR_SLOT }]);
      return;
    }
    if (installed?.fingerprint === index.fingerprint) return;
    try {
      const fd = await this.bpf.mapCreate(
        BPF_MAP_TYPE_ARRAY,
        'km_cidr_pool',
        CIDR_INDEX_KEY_SIZE,
        CIDR_POOL_SIZE,
        1,
        0,
      );
      try {
        await this.bpf.mapApply(fd, [{ key: CIDR_SLOT, value: encodeCidrPool(index) }]);
        await this.bpf.mapFreeze(fd);
        const value = Buffer.alloc(4);
        value.writeUInt32LE(fd, 0);
        await this.bpf.mapApply(outer, [{ key: CIDR_SLOT, value }]);
      } finally {
        this.bpf.closeFd(fd);
      }
    } catch (e) {
      if (installed) await this.bpf.mapApply(outer, [{ key: CIDR_SLOT }]).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The installed index's header (fingerprint, counts), or undefined when the slot is empty. The 2 MiB pool is
   * read only for an inner map this process has not read before: an installed pool is frozen, so the header of
   * a given map id never changes.
   */
  private async installedCidrIndex(): Promise<CidrHeader | undefined> {
    const slot = await this.bpf.mapLookup(this.loaded().maps.km_cidr_index, CIDR_SLOT);
    if (!slot) return undefined;
    const mapId = slot.readUInt32LE(0);
    if (this.cidrHeaderSeen?.mapId === mapId) return this.cidrHeaderSeen.header;
    const fd = await this.bpf.mapFdById(mapId);
    try {
      const pool = await this.bpf.mapLookup(fd, CIDR_SLOT);
      const header = pool ? decodeCidrHeader(pool) : decodeCidrHeader(Buffer.alloc(0));
      this.cidrHeaderSeen = { mapId, header };
      return header;
    } finally {
      this.bpf.closeFd(fd);
    }
  }

  cidrIndexUse(): Promise<CidrIndexUse | null> {
    return this.serial(() => this.installedCidrIndexUse());
  }

  private async installedCidrIndexUse(): Promise<CidrIndexUse | null> {
    const i = await this.installedCidrIndex();
    return i ? cidrIndexUse(i.nodes, i.records) : null;
  }

  setPeers(peers: ReadonlyMap<string, number>): Promise<MapChange> {
    return this.serial(() => this.replaceMap('km_ipsec_peers', peerEntries(peers)));
  }

  private async replaceMap(name: MapName, desired: MapEntry[]): Promise<MapChange> {
    const fd = this.loaded().maps[name];
    const current = await this.bpf.mapDump(fd);
    const { ops, change } = diffEntries(current, desired);
    if (ops.length > 0) await this.bpf.mapApply(fd, ops);
    return change;
  }

  stats(): Promise<DatapathStats> {
    return this.serial(async () => {
      const s = this.loaded();
      const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as unknown as DatapathCounters;
      for (const { key, value } of await this.bpf.mapDump(s.maps.km_ipsec_stats)) {
        const name = COUNTER_NAMES[key.readUInt32LE(0)];
        if (name === undefined) continue;
        let sum = 0n;
        for (let off = 0; off + 8 <= value.length; off += 8) sum += value.readBigUInt64LE(off);
        counters[name] = Number(sum);
      }
      return {
        counters,
        remoteCidrEntries: (await this.bpf.mapDump(s.maps.km_nodeinfo)).length,
        cidrIndex: await this.installedCidrIndexUse(),
        peers: (await this.bpf.mapDump(s.maps.km_ipsec_peers)).length,
        attachments: (await this.liveAttachments()).length,
      };
    });
  }

  /** Current contents of a map, for tests and tracing tools. */
  dumpMap(name: MapName): Promise<{ key: Buffer; value: Buffer }[]> {
    return this.serial(() => this.bpf.mapDump(this.loaded().maps[name]));
  }

  /** Kernel ids of the loaded programs. */
  programIds(): Record<AttachKind, number> {
    const p = this.loaded().progs;
    return { encrypt: p.encrypt.id, decrypt: p.decrypt.id };
  }

  /** Runs one program on a packet through BPF_PROG_TEST_RUN (no device involved). */
  testRun(progName: string, packet: Buffer, opts: TestRunOptions = {}): Promise<TestRunResult> {
    const kind = KINDS.find((k) => PROGRAM_NAMES[k] === progName);
    if (!kind)
      return Promise.reject(new Error(`unknown program "${progName}" (expected tc_mark_encrypt or tc_mark_decrypt)`));
    const prog = this.loaded().progs[kind];
    return this.bpf.testRun(prog.fd, packet, (opts.mark ?? 0) >>> 0, opts.repeat ?? 1).then((r) => ({
      retval: r.retval,
      mark: r.mark,
      durationNs: r.durationNs,
    }));
  }

  uninstall(): Promise<void> {
    return this.serial(async () => {
      const s = this.loaded();
      const failures: string[] = [];
      for (const r of await this.records()) {
        try {
          await this.removeAttachment(r);
        } catch (e) {
          failures.push(e instanceof Error ? e.message : String(e));
        }
      }
      for (const kind of KINDS) await unlinkIfPresent(path.join(s.tcDir, PROGRAM_NAMES[kind]));
      for (const name of await fs.readdir(s.tcDir)) {
        if (isTcxLinkPinName(name)) await unlinkIfPresent(path.join(s.tcDir, name));
      }
      for (const name of MAP_NAMES) await unlinkIfPresent(path.join(s.mapDir, name));
      this.closeFds();
      await rmdirIfEmpty(s.tcDir);
      await rmdirIfEmpty(s.mapDir);
      await rmdirIfEmpty(s.root);
      if (failures.length > 0) throw new Error(`uninstall left attachments behind: ${failures.join('; ')}`);
    });
  }

  close(): void {
    if (this.state) this.closeFds();
  }

  private closeFds(): void {
    const s = this.loaded();
    for (const fd of [...Object.values(s.maps), ...Object.values(s.progs).map((p) => p.fd)]) this.bpf.closeFd(fd);
    this.state = undefined;
  }

  private async tcxSupported(): Promise<boolean> {
    this.tcx ??= await this.bpf.tcxSupported(this.loaded().progs.encrypt.fd);
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

  private async netnsIno(netns: string): Promise<bigint> {
    const p = netns === '' ? '/proc/self/ns/net' : netns;
    try {
      return (await fs.stat(p, { bigint: true })).ino;
    } catch {
      throw new Error(`network namespace ${p} cannot be opened`);
    }
  }

  private async records(): Promise<AttachRecord[]> {
    const dump = await this.bpf.mapDump(this.loaded().maps.km_tc_attach);
    return dump.map((e) => decodeAttachRecord(e.key, e.value));
  }

  private async record(netnsIno: bigint, ifindex: number, kind: AttachKind): Promise<AttachRecord | undefined> {
    const key = encodeAttachKey(netnsIno, ifindex, kind);
    const value = await this.bpf.mapLookup(this.loaded().maps.km_tc_attach, key);
    return value ? decodeAttachRecord(key, value) : undefined;
  }

  private linkPinPath(r: AttachRecord): string {
    return path.join(this.loaded().tcDir, tcxLinkPinName(r.kind, r.netnsIno, r.ifindex));
  }

  /** The id of the program really attached where the record says; 0 if that attachment no longer exists. */
  private async liveProgId(r: AttachRecord): Promise<number> {
    if (r.mode === 'tcx') {
      let fd: number;
      try {
        fd = await this.bpf.getPinned(this.linkPinPath(r));
      } catch (e) {
        if (isErrno(e, ENOENT)) return 0;
        throw e;
      }
      try {
        const info = this.bpf.linkInfo(fd);
        return info.ifindex === r.ifindex ? info.progId : 0;
      } finally {
        this.bpf.closeFd(fd);
      }
    }
    let id: number;
    try {
      id = await this.bpf.clsactQuery(r.ifindex, r.handle, r.priority, r.netns, r.ifname);
    } catch (e) {
      if (isErrnoError(e) && e.syscall === 'enter netns') return 0;
      throw e;
    }
    // Another program in that filter slot means someone replaced our filter: it is not ours any more.
    const ours = id === r.progId || Object.values(this.loaded().progs).some((p) => p.id === id);
    return ours ? id : 0;
  }

  /** Points a live attachment at the currently loaded program of its kind. */
  private async repoint(r: AttachRecord): Promise<AttachRecord> {
    const s = this.loaded();
    const prog = s.progs[r.kind];
    if (r.mode === 'tcx') {
      const fd = await this.bpf.getPinned(this.linkPinPath(r));
      try {
        await this.bpf.linkUpdate(fd, prog.fd, `${PROGRAM_NAMES[r.kind]} on ${r.ifname}`);
      } finally {
        this.bpf.closeFd(fd);
      }
    } else {
      await this.bpf.clsactAttach(r.ifindex, prog.fd, r.netns, r.handle, r.priority, true, r.ifname);
    }
    const updated = { ...r, progId: prog.id };
    await this.bpf.mapApply(s.maps.km_tc_attach, [
      { key: encodeAttachKey(r.netnsIno, r.ifindex, r.kind), value: encodeAttachValue(updated) },
    ]);
    return updated;
  }

  /** Removes the attachment a record describes (only if it is still ours) and the record; true if one was live. */
  private async removeAttachment(r: AttachRecord): Promise<boolean> {
    const live = await this.liveProgId(r);
    if (live !== 0) {
      if (r.mode === 'tcx') {
        const fd = await this.bpf.getPinned(this.linkPinPath(r));
        try {
          await this.bpf.linkDetach(fd, `${PROGRAM_NAMES[r.kind]} on ${r.ifname}`);
        } finally {
          this.bpf.closeFd(fd);
        }
      } else {
        await this.bpf.clsactDetach(r.ifindex, r.handle, r.priority, r.netns, r.ifname);
      }
    }
    await this.forget(r);
    return live !== 0;
  }

  /** Drops a record and its link pin (if any). */
  private async forget(r: AttachRecord): Promise<void> {
    if (r.mode === 'tcx') await unlinkIfPresent(this.linkPinPath(r));
    await this.bpf.mapApply(this.loaded().maps.km_tc_attach, [{ key: encodeAttachKey(r.netnsIno, r.ifindex, r.kind) }]);
  }

  private toAttachment(r: AttachRecord): Attachment {
    return {
      kind: r.kind,
      ifindex: r.ifindex,
      ifname: r.ifname,
      mode: r.mode,
      netns: r.netns === '' ? undefined : r.netns,
      progId: r.progId,
    };
  }
}
