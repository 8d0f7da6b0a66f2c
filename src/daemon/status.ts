// The daemon's status after each reconcile step, as served on /status and written to --status-file. Plain
// data; never contains key material (SPIs only).
import type { CidrIndexUse } from '../datapath/datapath.js';
import type { NodeKeyStatus } from '../model/node-key-status.js';
import type { MssClampStatus } from './mss-clamp.js';
import type {
  Attachment,
  KernelReadStatus,
  PeerStatus,
  PendingRetirementStatus,
  PlaintextStatus,
  XfrmFailure,
} from './ports.js';
import type { StrictMode } from '../model/strict-mode.js';
import type { XfrmStat } from './xfrm-stat.js';

export interface RotationStatus {
  /** SPI of the newest key. */
  spi: number;
  /** When the daemon first saw this key (ms since epoch). */
  seenAt: number;
  /** When every peer was reached with this SPI (ms since epoch), once it happened. */
  convergedAt: number | undefined;
}

/**
 * What a reconcile step came to (label of kmesh_daemon_reconcile_total): ok = nothing failed (a step that has
 * nothing it can do yet, e.g. no key, is ok); partial = it ran to the end but some operations failed (the kernel
 * refused XFRM operations, a planned object collides with a foreign one, datapath errors, publishing or saving
 * failed) and the rest were applied; error = a part of it could not run at all (the cluster view unreadable,
 * the XFRM dump or step threw). A step that is not ok is retried with backoff.
 */
export type StepResult = 'ok' | 'partial' | 'error';

export interface DaemonStatus {
  node: string;
  store: string;
  ipsecEnabled: boolean;
  /** The source has listed everything at least once. */
  synced: boolean;
  /** Reconcile steps done so far. */
  steps: number;
  lastStepAt: number;
  lastStepMs: number;
  /** Key in force (from the secret file) and why the file on disk is not it, if so. */
  keySpi: number | undefined;
  keyProblem: string;
  /** True while the secret offers a key that is not the one in force (refused, or older than it). */
  keyRefused: boolean;
  /** SPIs of the key history kept (newest last). */
  keySpis: number[];
  /** SPI this node advertises (published in its KmeshNodeInfo). */
  advertisedSpi: number | undefined;
  peers: PeerStatus[];
  /** Peer KmeshNodeInfo objects rejected by validation, one line each. */
  invalidPeers: string[];
  managedPods: string[];
  unresolvedPods: string[];
  attachments: Attachment[];
  /**
   * Use of the compiled remote-CIDR index the TC programs walk (nodes, tail records and their capacities);
   * null when none is installed and the programs ask the km_nodeinfo LPM trie (slower, same answers).
   */
  cidrIndex: CidrIndexUse | null;
  /** The MSS clamp tc_mark_encrypt applies to SYN / SYN-ACK (null before the first datapath sync). */
  mssClamp: MssClampStatus | null;
  /** --ipsec-strict in force. */
  strictMode: StrictMode;
  /**
   * Plaintext packets that reached the underlay from a peer's pod CIDR for a managed local pod, per peer and
   * the strict mode in force when seen (off and audit: passed, enforce: dropped); counted since the maps
   * were created. Should stay empty: any entry is a path around encryption.
   */
  plaintext: PlaintextStatus[];
  xfrmStat: XfrmStat;
  rotation: RotationStatus | undefined;
  /** What this node publishes in its KmeshNodeInfo status (SPIs held and sent with, last rotation, failing peers). */
  keyReport: NodeKeyStatus | undefined;
  /**
   * In how many ms keyReport is written, when it differs from the status published only in what the cluster view
   * reports (peer count, failing peers, readiness), which waits for the reporting interval (status-write-timing.ts);
   * null when nothing waits.
   */
  statusReportDueInMs: number | null;
  /** What each peer reports in its KmeshNodeInfo status (peers that report nothing are absent). */
  peerReports: Record<string, NodeKeyStatus>;
  /** Old SPIs on their way out and what each waits for. */
  pendingRetirements: PendingRetirementStatus[];
  /** How the last step learned the kernel's XFRM tables (dumped, or the view kept from our own writes). */
  kernelRead: KernelReadStatus | null;
  /** Keys the secret offered that were refused since start (SPI reused, rollback). */
  keyRefusals: number;
  /** Everything else that is wrong right now, one line each. */
  problems: string[];
  /** Result of the last step. */
  lastStepResult: StepResult;
  /**
   * The node can do its job: synced, and with IPsec its own Node usable, a key held, every XFRM operation of
   * the last step accepted and the datapath in place. /status answers 200 when true, else 503.
   */
  ready: boolean;
  /** Why not ready, one line each ([] when ready). */
  notReady: string[];
  /** Why the own Node object cannot be used (missing, no InternalIP, no boot ID, ...); '' when it can. */
  nodeProblem: string;
  /** Why the newest key's SPI is not (yet) advertised in our KmeshNodeInfo; '' when it is, or IPsec is off. */
  notAdvertising: string;
  /** XFRM operations of the last step that failed, with the kernel's errno and text. */
  xfrmFailures: XfrmFailure[];
}

export function emptyStatus(node: string, store: string, ipsecEnabled: boolean): DaemonStatus {
  return {
    node,
    store,
    ipsecEnabled,
    synced: false,
    steps: 0,
    lastStepAt: 0,
    lastStepMs: 0,
    keySpi: undefined,
    keyProblem: '',
    keyRefused: false,
    keySpis: [],
    advertisedSpi: undefined,
    peers: [],
    invalidPeers: [],
    managedPods: [],
    unresolvedPods: [],
    attachments: [],
    cidrIndex: null,
    mssClamp: null,
    strictMode: 'off',
    plaintext: [],
    xfrmStat: {},
    rotation: undefined,
    keyReport: undefined,
    statusReportDueInMs: null,
    peerReports: {},
    pendingRetirements: [],
    kernelRead: null,
    keyRefusals: 0,
    problems: [],
    lastStepResult: 'ok',
    ready: false,
    notReady: ['no reconcile step yet'],
    nodeProblem: '',
    notAdvertising: '',
    xfrmFailures: [],
  };
}

/** True when this node sends with `spi` to every known peer (its part of a rotation is done). */
export function rotationConverged(status: Pick<DaemonStatus, 'peers'>, spi: number): boolean {
  return status.peers.every((p) => p.outboundSpi === spi);
}
