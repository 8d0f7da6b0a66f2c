// The node daemon's validated configuration: what the command line (and NODE_NAME) resolve to. Plain data;
// flags.ts builds it, everything else reads it.
import { DEFAULT_ACK_TIMEOUT_MS, DEFAULT_ROTATION_GRACE_MS, type RetirementRule } from '../ipsec/rotation.js';
import type { StoreLocation } from '../model/store-location.js';
import type { MssClampSetting } from './mss-clamp.js';
import type { StrictMode } from '../model/strict-mode.js';

/** Where the cluster objects (Node, namespaces, pods, KmeshNodeInfo) and the secret come from. */
export type StoreConfig = StoreLocation;

export type DaemonMode = 'dual-engine' | 'kernel-native';

export interface ListenAddress {
  host: string;
  port: number;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface DaemonConfig {
  /** `run` keeps the node's datapath in line with the cluster; `uninstall` removes everything this node owns. */
  command: 'run' | 'uninstall';
  mode: DaemonMode;
  /** Accepted for Kmesh compatibility; only `false` is supported (bypass is not part of this daemon). */
  enableBypass: boolean;
  /** Without it the daemon loads nothing IPsec-related. */
  enableIpsec: boolean;
  /** The projected secret file (in a cluster) or `<dir>/kmesh-ipsec/ipSec` (directory store). */
  ipsecKeyFile: string;
  store: StoreConfig;
  nodeName: string;
  /** Kubeconfig path for the Kubernetes store; undefined = in-cluster / default loading rules. */
  kubeconfig: string | undefined;
  /** bpffs directory under which this node's pins live. */
  bpfFsPath: string;
  /** Run even when that bpffs is private to our mount namespace (pins then die with it; see bpffs-scope.ts). */
  allowPrivateBpffs: boolean;
  /** Prometheus /metrics, JSON /status and /readyz listener; undefined = no listener. */
  metricsAddr: ListenAddress | undefined;
  /** File rewritten with the JSON status after every reconcile step; undefined = none. */
  statusFile: string | undefined;
  /** Directory for state that must survive a daemon restart (the key history). */
  stateDir: string;
  /** Seconds old-SPI SAs stay after every peer has moved to the new SPI. */
  rotationGraceSeconds: number;
  /** How old SPIs are retired: on every peer's acknowledgement (default) or after the grace alone (the old rule). */
  rotationRetirement: RetirementRule;
  /** Seconds to wait at most for a peer that still reports sending with an old SPI. */
  rotationAckTimeoutSeconds: number;
  /** Seconds between full resyncs even when no change was notified (level-triggered safety net). */
  resyncSeconds: number;
  /** Least milliseconds from the end of one reconcile step to the start of the next (bursts coalesce). */
  minStepGapMs: number;
  /** --peer-metrics-limit: per-peer series for every peer up to this many peers, else for failing ones only. */
  peerMetricsLimit: number;
  /** --ipsec-mss-clamp and --ipsec-mtu: the TCP MSS clamp on traffic to encrypted peers. */
  mssClamp: MssClampSetting;
  /** --ipsec-strict: plaintext from a peer's pod CIDR to a managed local pod is counted (audit) or dropped. */
  strictMode: StrictMode;
  logLevel: LogLevel;
}

export const DEFAULT_BPF_FS_PATH = '/sys/fs/bpf';
export const DEFAULT_STATE_DIR = '/run/kmesh-ipsec';
/** --rotation-grace default: the rotation protocol's own (60 s, above the 30 s resync). */
export const DEFAULT_ROTATION_GRACE_SECONDS = DEFAULT_ROTATION_GRACE_MS / 1000;
export const DEFAULT_RESYNC_SECONDS = 30;
/**
 * --min-step-gap default: 250 ms. A burst of changes then costs a step at most every 250 ms plus the step, not one
 * per arriving change. Through the Kubernetes source at 5,000 peers (bench:scale --source kube, a real API server
 * accepting a rotation's 5,000 updates over ~18 s) a rotation took 118-145 steps back to back and left the daemon
 * at 152-162 MiB RSS right after it; with 250 ms, 31-43 steps and 144-148 MiB, every peer still on the new SPI
 * 0.07-0.25 s after the last update (docs/benchmarks.md, fifteenth session). The packet losses once seen with 250 were
 * the window after convergence closed in the seventh session, not the gap.
 */
export const DEFAULT_MIN_STEP_GAP_MS = 250;
/** --min-step-gap upper bound: a gap beyond this would delay every change noticeably. */
export const MAX_MIN_STEP_GAP_MS = 10_000;
/** --rotation-retirement values. */
export const RETIREMENT_RULES = ['acknowledged', 'timer'] as const satisfies readonly RetirementRule[];
/** --rotation-ack-timeout default: the rotation protocol's own (1 hour). */
export const DEFAULT_ROTATION_ACK_TIMEOUT_SECONDS = DEFAULT_ACK_TIMEOUT_MS / 1000;
/** Label (on a namespace or a pod) that puts pods under Kmesh management. */
export const DATAPLANE_MODE_LABEL = 'istio.io/dataplane-mode';
export const DATAPLANE_MODE_KMESH = 'Kmesh';
