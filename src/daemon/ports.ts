// What the reconcile loop needs from the IPsec (XFRM) side and the eBPF datapath side, as two narrow
// interfaces. Adapters in ipsec-port.ts / datapath-port.ts implement them over the real modules (and tests
// over fakes), so the loop itself never touches the kernel.
import type { CidrIndexUse, PlaintextCount } from '../datapath/datapath.js';
import type { StrictMode } from '../model/strict-mode.js';
import type { MssClamp } from '../model/esp-overhead.js';
import type { IpsecKey, NodeInfo } from '../model/node.js';

/** This node as the IPsec side needs it (its KmeshNodeInfo minus the SPI, which the IPsec side decides). */
export type LocalNode = Omit<NodeInfo, 'spi'>;

export interface PeerStatus {
  name: string;
  /** SPI the peer advertises in its KmeshNodeInfo. */
  advertisedSpi: number;
  /** SPI we encrypt to it with: its outbound SAs are in the kernel (undefined = none the kernel holds). */
  outboundSpi: number | undefined;
  /**
   * SPI its outbound SAs and out policies are planned with, installed or not; undefined = nothing planned (no
   * key, or the peer is skipped), and then its pod CIDRs stay out of km_nodeinfo.
   */
  plannedSendSpi: number | undefined;
  /** SPIs we hold inbound SAs for from this peer. */
  inboundSpis: number[];
  /** Per-peer id in the mark of its inbound ESP (bits 16-31); 0 = none assigned. */
  peerId: number;
  /** Problems with this peer ('' when none). */
  error: string;
}

export interface IpsecStepInput {
  local: LocalNode;
  /** Validated peers (this node excluded). */
  peers: NodeInfo[];
  /** SPI currently published in our KmeshNodeInfo (0 before the first publish). */
  publishedSpi: number;
  now: number;
  /** Per peer, the SPIs its KmeshNodeInfo status reports sending with (absent: it reports nothing). */
  peerReports?: ReadonlyMap<string, readonly number[]>;
  /**
   * Called once the step is planned, before anything is written to the kernel, with the peers planned (names)
   * and the peer ids their inbound SAs will match (underlay address -> id, as `IpsecStepResult.peerIds`).
   */
  beforeApply?: (planned: PlannedPeers) => Promise<void>;
}

/** What a step planned, handed to `beforeApply`. */
export interface PlannedPeers {
  names: readonly string[];
  peerIds: readonly PeerAddressId[];
}

/** A peer's underlay address and the peer id its inbound SAs match (an entry of km_ipsec_peers). */
export interface PeerAddressId {
  address: string;
  peerId: number;
}

export interface IpsecStepResult {
  /** SPI to publish: undefined until our inbound SAs for a key exist. */
  advertiseSpi: number | undefined;
  peers: PeerStatus[];
  /**
   * Underlay address -> peer id for km_ipsec_peers: exactly the addresses this step's inbound SAs were planned
   * for (the first address of each family both nodes have), so the decrypt mark and the SAs follow one rule.
   * Never written to: a step may hand out the last step's map again.
   */
  peerIds: ReadonlyMap<string, number>;
  /** The key history changed (an SPI was retired): persist it again. */
  keysChanged: boolean;
  /** Kernel operations this step applied successfully. */
  changes: number;
  /** Why the newest key's SPI is not advertised ('' when it is, or when there is no key). */
  advertiseWait: string;
  /** What went wrong in this step: refused kernel operations and planned objects in a foreign object's way. */
  failures: XfrmFailure[];
  /** Old SPIs superseded everywhere and what each still waits for (peers still sending with it, or a clock). */
  pendingRetirements?: PendingRetirementStatus[];
  /** How the step learned the kernel's XFRM tables (src/ipsec/kept-xfrm-view.ts); absent when it did not look. */
  kernelRead?: KernelReadStatus;
}

export interface KernelReadStatus {
  /** 'dump': read from the kernel; 'view': diffed against the view kept from our writes; 'same-plan': nothing to diff. */
  how: 'dump' | 'view' | 'same-plan';
  /** Why the tables were dumped ('' otherwise): first step, another tool's change, a failed step, the audit. */
  why: string;
  /** Dumps since the daemon started. */
  dumps: number;
}

export interface PendingRetirementStatus {
  spi: number;
  /** e.g. "node-3 still sends with it", "grace period", "acknowledgement floor". */
  waitingFor: string;
  /** When it goes at the latest (ms, the step clock). */
  retireAt: number;
}

/** One XFRM operation that failed (or could not be attempted), with what the kernel said. No key material. */
export interface XfrmFailure {
  /** Peer the object serves; null for node-wide objects (block policies, stale objects of no current peer). */
  peer: string | null;
  /** The object, e.g. "addState 198.18.0.1->198.18.0.2 spi 0x1 reqid 0x6b6d mark 0xe0/0xff". */
  object: string;
  /** The kernel's errno; undefined when the kernel was not asked (CONFLICT: a foreign object is in the way). */
  errno: number | undefined;
  /** Errno name (ENOSYS, EEXIST, ...) or CONFLICT. */
  code: string;
  /** The kernel's extended-ack text, or why the object was not written. */
  message: string;
}

export interface IpsecPort {
  /** Takes a key read from the secret; returns an error line when it is refused (e.g. SPI reused for a new key). */
  addKey(key: IpsecKey): string | undefined;
  /** SPIs known (newest last), for status. */
  keySpis(): number[];
  /** Reconciles the kernel's XFRM states/policies to the desired state for this input. */
  step(input: IpsecStepInput): Promise<IpsecStepResult>;
  /** Serialised key history (persisted across restarts; contains key material: store with mode 0600). */
  exportKeys(): unknown;
  importKeys(saved: unknown): void;
  /** Removes every XFRM object this node owns. */
  uninstall(): Promise<number>;
}

export interface InterfaceRef {
  name: string;
  ifindex: number;
}

export interface DatapathDesired {
  /** Host-side veths of managed pods: tc_mark_encrypt. */
  encrypt: InterfaceRef[];
  /** Underlay interfaces: tc_mark_decrypt. */
  decrypt: InterfaceRef[];
  /** Pod CIDRs of remote Kmesh nodes we can encrypt to (km_nodeinfo). */
  remoteCidrs: string[];
  /** Underlay IP of each peer -> its peer id (for the inbound ESP mark): the IPsec step's own peerIds. */
  peerIds: ReadonlyMap<string, number>;
  /** MSS limits tc_mark_encrypt clamps SYN / SYN-ACK to (km_ipsec_config); absent = leave the map as it is. */
  mssClamp?: MssClamp;
  /** Strict ingress mode (km_ipsec_config); absent = leave it as it is. */
  strict?: StrictMode;
  /** Addresses of the managed pods on this node (km_local_pods); absent = leave the map as it is. */
  localPods?: string[];
  /** Remote pod CIDR -> peer id (km_pod_peers), to name the peer of plaintext; absent = leave it as it is. */
  podPeers?: Map<string, number>;
}

/** Plaintext seen from one peer's pod CIDR to managed local pods, per strict mode in force when seen. */
export interface PlaintextStatus {
  /** Peer node name; '' when the peer id is not one of the current peers. */
  peer: string;
  peerId: number;
  action: StrictMode;
  packets: number;
}

export interface Attachment {
  ifname: string;
  program: 'encrypt' | 'decrypt';
}

export interface DatapathReport {
  attachments: Attachment[];
  /** The remote-CIDR index the programs walk; null when they ask the km_nodeinfo trie (none installed). */
  cidrIndex: CidrIndexUse | null;
  /** km_plaintext counts (peer ids; the loop names them); [] when they could not be read. */
  plaintext?: PlaintextCount[];
  errors: string[];
}

export interface DatapathPort {
  /** The one writer of the datapath's attachments and maps (km_ipsec_peers, km_nodeinfo) during a run. */
  sync(desired: DatapathDesired): Promise<DatapathReport>;
  /**
   * Adds, before an XFRM step writes the SAs and policies of new peers, what the decrypt program needs to accept
   * their packets: their peer ids (km_ipsec_peers) and pod CIDRs (km_nodeinfo and its index), on top of what the
   * last sync or admit wrote. Removes nothing (the sync after the step does). Writes nothing when all of it is
   * there already. Returns one line per failed write.
   */
  admit(peerIds: readonly PeerAddressId[], remoteCidrs: readonly string[]): Promise<string[]>;
  /** Detaches every program and removes every pin this node owns; returns what was removed. */
  uninstall(): Promise<string[]>;
}
