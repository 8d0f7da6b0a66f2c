// The real datapath, a facade over three parts: the loaded and pinned programs and maps (bpf-programs.ts), our TC
// attachments with their pinned registry (tc-attachments.ts) and the remote-CIDR index slot (cidr-index-slot.ts).
// Here: loading them together, keeping km_nodeinfo and km_ipsec_peers equal to the desired remote CIDRs and peers
// by difference (LPM tries in the order of prefix-map-order.ts, hash maps deletes first; a set larger than the map
// is refused before any write), counters, test runs and uninstall. All operations of one instance run one after
// another.
import { promises as fs } from 'node:fs';
import path from 'node:path';

import { parseCidrStrict } from '../model/ip-address.js';
import { BpfPrograms, KINDS, type MapName } from './bpf-programs.js';
import { compileCidrIndex } from './cidr-index.js';
import { CidrIndexSlot } from './cidr-index-slot.js';
import {
  COUNTER_NAMES,
  DEFAULT_BPFFS_ROOT,
  PROGRAM_NAMES,
  type AttachKind,
  type AttachOptions,
  type Attachment,
  type CidrIndexUse,
  type Datapath,
  type DatapathCounters,
  type DatapathStats,
  type LoadOptions,
} from './datapath.js';
import {
  configValue,
  DEFAULT_SETTINGS,
  diffEntries,
  localPodEntries,
  nodeinfoEntries,
  parseConfigValue,
  peerEntries,
  plaintextCounts,
  podPeerEntries,
  type DatapathSettings,
  type MapChange,
  type MapEntry,
  type PlaintextCount,
} from './map-layout.js';
import { STRICT_MODES, type StrictMode } from '../model/strict-mode.js';
import type { MssClamp } from '../model/esp-overhead.js';
import { nativeBpf, type NativeBpf } from './native-bpf.js';
import { diffPrefixEntries } from './prefix-map-order.js';
import { TcAttachments } from './tc-attachments.js';
import { packageRoot } from '../native/addon.js';

const BPF_MAP_TYPE_LPM_TRIE = 11;

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
  /** The packet after the program ran (test-run's data_out). */
  packet: Buffer;
  durationNs: number;
}

/** The three parts of a loaded datapath. */
interface Loaded {
  programs: BpfPrograms;
  attachments: TcAttachments;
  cidrIndex: CidrIndexSlot;
}

async function rmdirIfEmpty(p: string): Promise<void> {
  try {
    await fs.rmdir(p);
  } catch {
    // not empty (someone else's pins) or already gone: leave it
  }
}

export class BpfDatapath implements Datapath {
  private state: Loaded | undefined;
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
    return this.loaded().programs.dirs.root;
  }

  load(opts: LoadOptions = {}): Promise<void> {
    return this.serial(async () => {
      const root = path.resolve(opts.bpffsRoot ?? DEFAULT_BPFFS_ROOT);
      if (this.state) {
        const at = this.state.programs.dirs.root;
        if (at === root) return;
        throw new Error(`datapath is already loaded at ${at}, cannot load it again at ${root}`);
      }
      const objDir = path.resolve(opts.objDir ?? path.join(packageRoot(), 'build-bpf'));
      const programs = await BpfPrograms.load(this.bpf, root, objDir, opts.log);
      const attachments = new TcAttachments(this.bpf, programs);
      this.state = { programs, attachments, cidrIndex: new CidrIndexSlot(this.bpf, programs.maps.km_cidr_index) };
      await attachments.followUpgrades();
    });
  }

  attach(kind: AttachKind, iface: string | number, opts: AttachOptions = {}): Promise<Attachment> {
    return this.serial(() => this.loaded().attachments.attach(kind, iface, opts));
  }

  detach(kind: AttachKind, iface: string | number, opts: Pick<AttachOptions, 'netns'> = {}): Promise<boolean> {
    return this.serial(() => this.loaded().attachments.detach(kind, iface, opts.netns));
  }

  attachments(): Promise<Attachment[]> {
    return this.serial(() => this.loaded().attachments.live());
  }

  setRemoteCidrs(cidrs: readonly string[]): Promise<MapChange> {
    return this.serial(async () => {
      const { cidrIndex } = this.loaded();
      const parsed = cidrs.map((c) => parseCidrStrict(c)); // every CIDR is valid before anything is written
      const index = compileCidrIndex(parsed);
      const change = await this.replaceMap('km_nodeinfo', nodeinfoEntries(parsed));
      await cidrIndex.install(index);
      return change;
    });
  }

  cidrIndexUse(): Promise<CidrIndexUse | null> {
    return this.serial(() => this.loaded().cidrIndex.use());
  }

  setPeers(peers: ReadonlyMap<string, number>): Promise<MapChange> {
    return this.serial(() => this.replaceMap('km_ipsec_peers', peerEntries(peers)));
  }

  /** Rewrites km_ipsec_config with `change` applied to its current value; false when that changes nothing. */
  private updateSettings(change: (current: DatapathSettings) => DatapathSettings): Promise<boolean> {
    return this.serial(async () => {
      const map = this.loaded().programs.maps.km_ipsec_config;
      const key = Buffer.alloc(4);
      const current = await this.bpf.mapLookup(map, key);
      const value = configValue(change(current ? parseConfigValue(current) : DEFAULT_SETTINGS));
      if (current?.equals(value)) return false;
      await this.bpf.mapApply(map, [{ key, value }]);
      return true;
    });
  }

  private settings(): Promise<DatapathSettings> {
    return this.serial(async () => {
      const current = await this.bpf.mapLookup(this.loaded().programs.maps.km_ipsec_config, Buffer.alloc(4));
      if (!current) throw new Error('km_ipsec_config has no entry 0');
      return parseConfigValue(current);
    });
  }

  setMssClamp(clamp: MssClamp): Promise<boolean> {
    return this.updateSettings((s) => ({ ...s, mss: clamp }));
  }

  async mssClamp(): Promise<MssClamp> {
    return (await this.settings()).mss;
  }

  setStrictMode(mode: StrictMode): Promise<boolean> {
    if (!(STRICT_MODES as readonly string[]).includes(mode)) {
      return Promise.reject(new Error(`strict mode "${mode}" is not one of ${STRICT_MODES.join(', ')}`));
    }
    return this.updateSettings((s) => ({ ...s, strict: mode }));
  }

  async strictMode(): Promise<StrictMode> {
    return (await this.settings()).strict;
  }

  setLocalPods(ips: readonly string[]): Promise<MapChange> {
    return this.serial(() => this.replaceMap('km_local_pods', localPodEntries(ips)));
  }

  setPodPeers(cidrs: ReadonlyMap<string, number>): Promise<MapChange> {
    return this.serial(() => this.replaceMap('km_pod_peers', podPeerEntries(cidrs)));
  }

  plaintext(): Promise<PlaintextCount[]> {
    return this.serial(async () => plaintextCounts(await this.bpf.mapDump(this.loaded().programs.maps.km_plaintext)));
  }

  private async replaceMap(name: MapName, desired: readonly MapEntry[]): Promise<MapChange> {
    const map = this.loaded().programs.maps[name];
    const current = await this.bpf.mapDump(map);
    const info = this.bpf.mapInfo(map);
    const { ops, change } =
      info.type === BPF_MAP_TYPE_LPM_TRIE
        ? diffPrefixEntries(current, desired, info.maxEntries, name)
        : diffEntries(current, desired, info.maxEntries, name);
    if (ops.length > 0) await this.bpf.mapApply(map, ops);
    return change;
  }

  stats(): Promise<DatapathStats> {
    return this.serial(async () => {
      const { programs, attachments, cidrIndex } = this.loaded();
      const counters = Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as unknown as DatapathCounters;
      for (const { key, value } of await this.bpf.mapDump(programs.maps.km_ipsec_stats)) {
        const name = COUNTER_NAMES[key.readUInt32LE(0)];
        if (name === undefined) continue;
        let sum = 0n;
        for (let off = 0; off + 8 <= value.length; off += 8) sum += value.readBigUInt64LE(off);
        counters[name] = Number(sum);
      }
      return {
        counters,
        remoteCidrEntries: (await this.bpf.mapDump(programs.maps.km_nodeinfo)).length,
        cidrIndex: await cidrIndex.use(),
        peers: (await this.bpf.mapDump(programs.maps.km_ipsec_peers)).length,
        attachments: (await attachments.live()).length,
      };
    });
  }

  /** Current contents of a map, for tests and tracing tools. */
  dumpMap(name: MapName): Promise<{ key: Buffer; value: Buffer }[]> {
    return this.serial(() => this.bpf.mapDump(this.loaded().programs.maps[name]));
  }

  /** Kernel ids of the loaded programs. */
  programIds(): Record<AttachKind, number> {
    return this.loaded().programs.ids();
  }

  /** Runs one program on a packet through BPF_PROG_TEST_RUN (no device involved). */
  async testRun(progName: string, packet: Buffer, opts: TestRunOptions = {}): Promise<TestRunResult> {
    const kind = KINDS.find((k) => PROGRAM_NAMES[k] === progName);
    if (!kind) throw new Error(`unknown program "${progName}" (expected tc_mark_encrypt or tc_mark_decrypt)`);
    const prog = this.loaded().programs.progs[kind];
    const r = await this.bpf.testRun(prog.fd, { packet, mark: (opts.mark ?? 0) >>> 0, repeat: opts.repeat ?? 1 });
    return { retval: r.retval, mark: r.mark, durationNs: r.durationNs, packet: r.packet };
  }

  uninstall(): Promise<void> {
    return this.serial(async () => {
      const { programs, attachments } = this.loaded();
      const failures = await attachments.removeAll();
      await programs.unpin();
      this.close();
      const { root, mapDir, tcDir } = programs.dirs;
      await rmdirIfEmpty(tcDir);
      await rmdirIfEmpty(mapDir);
      await rmdirIfEmpty(root);
      if (failures.length > 0) throw new Error(`uninstall left attachments behind: ${failures.join('; ')}`);
    });
  }

  close(): void {
    this.state?.programs.close();
    this.state = undefined;
  }
}
