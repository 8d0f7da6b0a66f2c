// In-memory Datapath for pure unit tests of its users (the daemon): same validation, same errors for bad
// input and missing interfaces, same idempotence and map-difference results as BpfDatapath, no kernel;
// test/fakes/datapath-contract.ts runs one script through both and compares every outcome.
// It also answers "which mark would this frame get" through the TypeScript statement of the marking rules.
import type { MssClamp } from '../../src/model/esp-overhead.js';
import { STRICT_MODES, type StrictMode } from '../../src/model/strict-mode.js';
import {
  COUNTER_NAMES,
  DEFAULT_BPFFS_ROOT,
  type AttachKind,
  type AttachMode,
  type AttachOptions,
  type Attachment,
  type CidrIndexUse,
  type Datapath,
  type DatapathCounters,
  type DatapathStats,
  type LoadOptions,
} from '../../src/datapath/datapath.js';
import { cidrIndexUse, compileCidrIndex, fitsCidrIndex, type CidrIndex } from '../../src/datapath/cidr-index.js';
import { parseCidrStrict } from '../../src/model/ip-address.js';
import {
  configValue,
  DEFAULT_SETTINGS,
  diffEntries,
  MAP_CAPACITY,
  localPodEntries,
  parseConfigValue,
  podPeerEntries,
  type DatapathSettings,
  type PlaintextCount,
  nodeinfoEntries,
  peerEntries,
  type MapChange,
  type MapEntry,
} from '../../src/datapath/map-layout.js';
import { diffPrefixEntries } from '../../src/datapath/prefix-map-order.js';
import { MarkOracle } from './mark-rules.js';

export interface FakeInterface {
  name: string;
  ifindex: number;
  /** Namespace path the interface lives in; undefined = the daemon's own. */
  netns?: string;
}

export interface FakeDatapathOptions {
  interfaces?: readonly FakeInterface[];
  /** Whether the pretend kernel has TCX (default true). */
  tcx?: boolean;
}

const ENODEV = 19;
const EINVAL = 22;

/** Runs fn now; its result or its exception becomes the promise's outcome, as with an async kernel call. */
function settle<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => {
    resolve(fn());
  });
}

/** The addon's ErrnoError for `syscall` on an interface (named with its netns when given). */
function errnoError(syscall: string, name: string, netns: string | undefined, errno: number, text: string): Error {
  const object = netns ? `${name} in netns ${netns}` : name;
  return Object.assign(new Error(`${syscall} ${object}: ${text} (errno ${errno})`), {
    code: 'KMESH_ERRNO',
    errno,
    syscall,
    object,
  });
}

const countChange = (c: MapChange): number => c.added + c.changed + c.removed;

export class FakeDatapath implements Datapath {
  private root: string | undefined;
  private readonly interfaces: FakeInterface[];
  private readonly tcx: boolean;
  private readonly attached = new Map<string, Attachment>();
  private cidrEntries: readonly MapEntry[] = [];
  private peerMapEntries: readonly MapEntry[] = [];
  private cidrs: readonly string[] = [];
  private index: CidrIndex | undefined;
  private peerMap: ReadonlyMap<string, number> = new Map();
  private config: Buffer = configValue(DEFAULT_SETTINGS);
  private localPodMapEntries: readonly MapEntry[] = [];
  private podPeerMapEntries: readonly MapEntry[] = [];
  private localPodIps: readonly string[] = [];
  private podPeerMap: ReadonlyMap<string, number> = new Map();
  private readonly counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as unknown as DatapathCounters;
  private nextProgId = 1;
  private progIds: Record<AttachKind, number> = { encrypt: 0, decrypt: 0 };
  /**
   * Kernel writes so far, counted as BpfDatapath makes them: one per map entry added, changed or removed, per
   * CIDR index swapped in or emptied (an index with the installed fingerprint is no write), per attachment
   * made or removed. Like FakeXfrmKernel.writes, for "a no-change step writes nothing" tests.
   */
  writes = 0;
  /** Fingerprint of the index in the km_cidr_index slot; undefined = empty slot. */
  private installedIndex: string | undefined;

  constructor(opts: FakeDatapathOptions = {}) {
    this.interfaces = [...(opts.interfaces ?? [])];
    this.tcx = opts.tcx ?? true;
  }

  /** The remote pod CIDRs last set (as given). */
  get remoteCidrs(): readonly string[] {
    return this.cidrs;
  }

  /** The peers last set. */
  get peers(): ReadonlyMap<string, number> {
    return this.peerMap;
  }

  /** The local pod IPs last set (as given). */
  get localPods(): readonly string[] {
    return this.localPodIps;
  }

  /** The pod CIDRs of peers last set. */
  get podPeers(): ReadonlyMap<string, number> {
    return this.podPeerMap;
  }

  /**
   * A second fake holding the same maps, built by the same calls (the scale bench measures what the fake's maps
   * weigh, which a real daemon leaves to the kernel). Interfaces and attachments are not copied.
   */
  async twin(): Promise<FakeDatapath> {
    const copy = new FakeDatapath({ tcx: this.tcx });
    if (this.root === undefined) return copy;
    await copy.load({ bpffsRoot: this.root });
    await copy.setRemoteCidrs(this.cidrs);
    await copy.setPeers(this.peerMap);
    await copy.setLocalPods(this.localPodIps);
    await copy.setPodPeers(this.podPeerMap);
    copy.config = this.config;
    return copy;
  }

  /** Where load() was told to pin; undefined when not loaded. */
  get bpffsRoot(): string | undefined {
    return this.root;
  }

  /** Simulates an interface appearing (e.g. a new pod's veth). */
  addInterface(iface: FakeInterface): void {
    this.interfaces.push(iface);
  }

  /** Simulates an interface disappearing: the kernel drops its attachments with it. */
  removeInterface(name: string, netns?: string): void {
    const i = this.interfaces.findIndex((x) => x.name === name && x.netns === netns);
    if (i < 0) return;
    const [gone] = this.interfaces.splice(i, 1);
    for (const [k, a] of this.attached) {
      if (gone && a.ifindex === gone.ifindex && a.netns === gone.netns) this.attached.delete(k);
    }
  }

  private ensureLoaded(): void {
    if (this.root === undefined) throw new Error('datapath is not loaded: call load() first');
  }

  load(opts: LoadOptions = {}): Promise<void> {
    const root = opts.bpffsRoot ?? DEFAULT_BPFFS_ROOT;
    if (this.root !== undefined && this.root !== root) {
      return Promise.reject(new Error(`datapath is already loaded at ${this.root}, cannot load it again at ${root}`));
    }
    if (this.root === undefined) {
      this.root = root;
      this.progIds = { encrypt: this.nextProgId++, decrypt: this.nextProgId++ };
    }
    return Promise.resolve();
  }

  /** As BpfDatapath resolves: a name through the kernel (ENODEV when unknown), an index checked first. */
  private find(iface: string | number, netns: string | undefined): FakeInterface {
    if (typeof iface === 'number') {
      if (!Number.isInteger(iface) || iface <= 0) throw new Error(`interface index ${iface} is not a positive integer`);
      const found = this.interfaces.find((x) => x.ifindex === iface && x.netns === netns);
      if (!found) throw new Error(`no interface with index ${iface}${netns ? ` in netns ${netns}` : ''}`);
      return found;
    }
    const found = this.interfaces.find((x) => x.name === iface && x.netns === netns);
    if (!found) throw errnoError('find interface', iface, netns, ENODEV, 'No such device');
    return found;
  }

  attach(kind: AttachKind, iface: string | number, opts: AttachOptions = {}): Promise<Attachment> {
    return settle(() => {
      this.ensureLoaded();
      const dev = this.find(iface, opts.netns);
      const key = `${opts.netns ?? ''}|${dev.ifindex}|${kind}`;
      const wanted = opts.mode ?? 'auto';
      const existing = this.attached.get(key);
      if (existing && (wanted === 'auto' || wanted === existing.mode)) return { ...existing };
      // Another mode was asked for: the old attachment goes first, also when the new one then fails.
      if (this.attached.delete(key)) this.writes++;
      if (wanted === 'tcx' && !this.tcx) {
        throw errnoError('attach TCX ingress link to', dev.name, opts.netns, EINVAL, 'Invalid argument');
      }
      const mode: AttachMode = wanted === 'auto' ? (this.tcx ? 'tcx' : 'clsact') : wanted;
      const a: Attachment = {
        kind,
        ifindex: dev.ifindex,
        ifname: dev.name,
        mode,
        netns: opts.netns,
        progId: this.progIds[kind],
      };
      this.attached.set(key, a);
      this.writes++;
      return { ...a };
    });
  }

  detach(kind: AttachKind, iface: string | number, opts: Pick<AttachOptions, 'netns'> = {}): Promise<boolean> {
    return settle(() => {
      this.ensureLoaded();
      for (const [k, a] of this.attached) {
        const same = typeof iface === 'number' ? a.ifindex === iface : a.ifname === iface;
        if (same && a.kind === kind && a.netns === opts.netns) {
          this.attached.delete(k);
          this.writes++;
          return true;
        }
      }
      return false;
    });
  }

  attachments(): Promise<Attachment[]> {
    return settle(() => {
      this.ensureLoaded();
      return [...this.attached.values()].map((a) => ({ ...a }));
    });
  }

  setRemoteCidrs(cidrs: readonly string[]): Promise<MapChange> {
    return settle(() => {
      this.ensureLoaded();
      const parsed = cidrs.map((c) => parseCidrStrict(c));
      const desired = nodeinfoEntries(parsed);
      const { change } = diffPrefixEntries(this.cidrEntries, desired, MAP_CAPACITY.km_nodeinfo, 'km_nodeinfo');
      this.cidrEntries = desired;
      this.cidrs = [...cidrs];
      this.index = compileCidrIndex(parsed);
      const wanted = fitsCidrIndex(this.index) ? this.index.fingerprint : undefined;
      this.writes += countChange(change) + (wanted === this.installedIndex ? 0 : 1);
      this.installedIndex = wanted;
      return change;
    });
  }

  setPeers(peers: ReadonlyMap<string, number>): Promise<MapChange> {
    return settle(() => {
      this.ensureLoaded();
      const desired = peerEntries(peers);
      const { change } = diffEntries(this.peerMapEntries, desired, MAP_CAPACITY.km_ipsec_peers, 'km_ipsec_peers');
      this.peerMapEntries = desired;
      this.peerMap = new Map(peers);
      this.writes += countChange(change);
      return change;
    });
  }

  private updateSettings(change: (s: DatapathSettings) => DatapathSettings): Promise<boolean> {
    return settle(() => {
      this.ensureLoaded();
      const value = configValue(change(parseConfigValue(this.config)));
      if (value.equals(this.config)) return false;
      this.config = value;
      this.writes++;
      return true;
    });
  }

  setMssClamp(clamp: MssClamp): Promise<boolean> {
    return this.updateSettings((s) => ({ ...s, mss: clamp }));
  }

  mssClamp(): Promise<MssClamp> {
    return settle(() => {
      this.ensureLoaded();
      return parseConfigValue(this.config).mss;
    });
  }

  setStrictMode(mode: StrictMode): Promise<boolean> {
    if (!(STRICT_MODES as readonly string[]).includes(mode)) {
      return Promise.reject(new Error(`strict mode "${mode}" is not one of ${STRICT_MODES.join(', ')}`));
    }
    return this.updateSettings((s) => ({ ...s, strict: mode }));
  }

  strictMode(): Promise<StrictMode> {
    return settle(() => {
      this.ensureLoaded();
      return parseConfigValue(this.config).strict;
    });
  }

  setLocalPods(ips: readonly string[]): Promise<MapChange> {
    return settle(() => {
      this.ensureLoaded();
      const desired = localPodEntries(ips);
      const { change } = diffEntries(this.localPodMapEntries, desired, MAP_CAPACITY.km_local_pods, 'km_local_pods');
      this.localPodMapEntries = desired;
      this.localPodIps = [...ips];
      this.writes += countChange(change);
      return change;
    });
  }

  setPodPeers(cidrs: ReadonlyMap<string, number>): Promise<MapChange> {
    return settle(() => {
      this.ensureLoaded();
      const desired = podPeerEntries(cidrs);
      const { change } = diffPrefixEntries(this.podPeerMapEntries, desired, MAP_CAPACITY.km_pod_peers, 'km_pod_peers');
      this.podPeerMapEntries = desired;
      this.podPeerMap = new Map(cidrs);
      this.writes += countChange(change);
      return change;
    });
  }

  /** Plaintext counts the test set with addPlaintext (the fake sees no packets of its own). */
  plaintext(): Promise<PlaintextCount[]> {
    return settle(() => {
      this.ensureLoaded();
      return [...this.plaintextCounts];
    });
  }

  private readonly plaintextCounts: PlaintextCount[] = [];

  /** Simulates tc_mark_decrypt having counted plaintext from a peer (for daemon tests). */
  addPlaintext(count: PlaintextCount): void {
    const same = this.plaintextCounts.find((c) => c.peer === count.peer && c.mode === count.mode);
    if (same) same.packets += count.packets;
    else this.plaintextCounts.push({ ...count });
  }

  /** The mark tc_mark_encrypt would leave on this frame with the current maps; counts like the program. */
  markEncrypt(frame: Buffer, mark = 0): number {
    this.ensureLoaded();
    const out = new MarkOracle({ remoteCidrs: this.cidrs, peers: this.peerMap }).encrypt(frame, mark);
    if (out !== mark >>> 0) this.counters.encryptMarked++;
    else this.counters.encryptPassed++;
    return out;
  }

  /** The mark tc_mark_decrypt would leave on this frame with the current maps. */
  markDecrypt(frame: Buffer, mark = 0): number {
    this.ensureLoaded();
    return new MarkOracle({ remoteCidrs: this.cidrs, peers: this.peerMap }).decrypt(frame, mark);
  }

  stats(): Promise<DatapathStats> {
    return settle(() => {
      this.ensureLoaded();
      return {
        counters: { ...this.counters },
        remoteCidrEntries: this.cidrEntries.length,
        cidrIndex: this.cidrIndex(),
        peers: this.peerMapEntries.length,
        attachments: this.attached.size,
      };
    });
  }

  cidrIndexUse(): Promise<CidrIndexUse | null> {
    return settle(() => {
      this.ensureLoaded();
      return this.cidrIndex();
    });
  }

  /** What BpfDatapath installs: the index of the last CIDRs set, unless it does not fit. */
  private cidrIndex(): CidrIndexUse | null {
    return this.index && fitsCidrIndex(this.index)
      ? cidrIndexUse(this.index.nodes.length, this.index.records.length)
      : null;
  }

  uninstall(): Promise<void> {
    this.writes += this.attached.size;
    this.attached.clear();
    this.installedIndex = undefined;
    this.cidrEntries = [];
    this.peerMapEntries = [];
    this.cidrs = [];
    this.index = undefined;
    this.peerMap = new Map();
    this.config = configValue(DEFAULT_SETTINGS);
    this.localPodMapEntries = [];
    this.podPeerMapEntries = [];
    this.root = undefined;
    return Promise.resolve();
  }

  close(): void {
    this.root = undefined;
  }
}
