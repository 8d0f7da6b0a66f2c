// The datapath as the daemon sees it: load the TC programs (or adopt the pinned ones), attach them to
// interfaces, fill their maps, read counters, remove everything ours. Implemented over libbpf by
// BpfDatapath (bpf-datapath.ts); test/fakes/fake-datapath.ts holds an in-memory double for unit tests, kept
// equal to it by test/host/datapath-contract.test.ts.
import type { MapChange, PlaintextCount } from './map-layout.js';
import type { StrictMode } from '../model/strict-mode.js';
import type { MssClamp } from '../model/esp-overhead.js';

export type { MapChange, PlaintextCount } from './map-layout.js';

/** encrypt = tc_mark_encrypt on a pod's host-side veth; decrypt = tc_mark_decrypt on an underlay device. */
export type AttachKind = 'encrypt' | 'decrypt';
/** tcx = TCX link (kernel 6.6+, pinned); clsact = direct-action cls_bpf filter under the clsact qdisc. */
export type AttachMode = 'tcx' | 'clsact';

export const PROGRAM_NAMES: Readonly<Record<AttachKind, string>> = {
  encrypt: 'tc_mark_encrypt',
  decrypt: 'tc_mark_decrypt',
};

export const DEFAULT_BPFFS_ROOT = '/sys/fs/bpf/bpf_kmesh_workload';

export interface LoadOptions {
  /** Pins go to <root>/map/<map name> and <root>/tc/<program or link>. Default DEFAULT_BPFFS_ROOT. */
  bpffsRoot?: string;
  /** Where tc_mark_encrypt.o / tc_mark_decrypt.o are. Default: the package's build-bpf. */
  objDir?: string;
  /** Told once per pinned map of an earlier build that was replaced (src/datapath/map-migration.ts). */
  log?: (msg: string, fields: Record<string, unknown>) => void;
}

export interface AttachOptions {
  /** Path of a network namespace file (e.g. /run/netns/NAME) holding the interface; default: our own. */
  netns?: string;
  /** auto (default) = TCX where the kernel has it, clsact otherwise. */
  mode?: AttachMode | 'auto';
}

export interface Attachment {
  kind: AttachKind;
  ifindex: number;
  ifname: string;
  mode: AttachMode;
  /** Namespace path given at attach time; undefined = the daemon's own. */
  netns: string | undefined;
  /** Kernel id of the attached program. */
  progId: number;
}

/** Packet counters of the programs, summed over CPUs (bpf/maps.h enum km_stat). */
export interface DatapathCounters {
  encryptMarked: number;
  encryptPassed: number;
  encryptUnparsed: number;
  decryptEspPeer: number;
  decryptEspUnknown: number;
  decryptKept: number;
  decryptCleared: number;
  decryptPassed: number;
  /** TCP SYN / SYN-ACK on the encrypt hit path whose MSS option was lowered to the clamp. */
  encryptMssClamped: number;
  /** Plaintext from a peer's pod CIDR to a managed local pod, dropped (strict mode enforce). */
  decryptPlaintextDropped: number;
}

export const COUNTER_NAMES: readonly (keyof DatapathCounters)[] = [
  'encryptMarked',
  'encryptPassed',
  'encryptUnparsed',
  'decryptEspPeer',
  'decryptEspUnknown',
  'decryptKept',
  'decryptCleared',
  'decryptPassed',
  'encryptMssClamped',
  'decryptPlaintextDropped',
];

export interface CidrIndexUse {
  nodes: number;
  nodeCapacity: number;
  records: number;
  recordCapacity: number;
}

export interface DatapathStats {
  counters: DatapathCounters;
  /** Entries in km_nodeinfo (distinct remote pod CIDR keys). */
  remoteCidrEntries: number;
  /**
   * The compiled remote-CIDR index the programs walk (bpf/cidr_index.h): nodes and tail records in use, of
   * their capacities; null when none is installed and the programs ask the km_nodeinfo LPM trie instead.
   */
  cidrIndex: CidrIndexUse | null;
  /** Entries in km_ipsec_peers. */
  peers: number;
  /** Live attachments. */
  attachments: number;
}

export interface Datapath {
  /** Loads both programs, reusing pinned maps (and the pinned programs when unchanged). Idempotent. */
  load(opts?: LoadOptions): Promise<void>;
  /** Attaches one program to an interface's TC ingress; attaching what is already attached is a no-op. */
  attach(kind: AttachKind, iface: string | number, opts?: AttachOptions): Promise<Attachment>;
  /** Detaches our program of this kind from the interface; false if it was not attached. */
  detach(kind: AttachKind, iface: string | number, opts?: Pick<AttachOptions, 'netns'>): Promise<boolean>;
  /** Our live attachments, also those made by an earlier process (found through the pinned registry). */
  attachments(): Promise<Attachment[]>;
  /**
   * Makes km_nodeinfo hold exactly these remote pod CIDRs (IPv4 and IPv6), by difference, then installs the
   * index compiled from them (unchanged index: no write; too large for its capacity: none, LPM fallback).
   */
  setRemoteCidrs(cidrs: readonly string[]): Promise<MapChange>;
  /** The installed remote-CIDR index's use of its capacity; null when the programs ask km_nodeinfo. */
  cidrIndexUse(): Promise<CidrIndexUse | null>;
  /** Makes km_ipsec_peers hold exactly these underlay address -> peer id pairs, by difference. */
  setPeers(peers: ReadonlyMap<string, number>): Promise<MapChange>;
  /**
   * Sets the MSS tc_mark_encrypt clamps TCP SYN / SYN-ACK to on its hit path, per family (0 = no clamping);
   * returns whether km_ipsec_config changed. Throws on a value outside 0..65535, writing nothing.
   */
  setMssClamp(clamp: MssClamp): Promise<boolean>;
  /** The MSS clamp the programs currently apply (all zero on fresh maps). */
  mssClamp(): Promise<MssClamp>;
  /** Sets what tc_mark_decrypt does with plaintext from a peer's pod CIDR to a managed local pod; true = changed. */
  setStrictMode(mode: StrictMode): Promise<boolean>;
  /** The strict mode in force ('off' on fresh maps). */
  strictMode(): Promise<StrictMode>;
  /** Makes km_local_pods hold exactly these managed local pod addresses, by difference. */
  setLocalPods(ips: readonly string[]): Promise<MapChange>;
  /** Makes km_pod_peers hold exactly these remote pod CIDR -> peer id pairs, by difference. */
  setPodPeers(cidrs: ReadonlyMap<string, number>): Promise<MapChange>;
  /** Plaintext packets from peers' pod CIDRs to managed local pods, per peer id and strict mode in force. */
  plaintext(): Promise<PlaintextCount[]>;
  stats(): Promise<DatapathStats>;
  /** Detaches all our attachments and removes all our pins. The datapath must be loaded again to be used. */
  uninstall(): Promise<void>;
  /** Releases this process's file descriptors; pinned state and attachments stay. */
  close(): void;
}
