// Plain-data model of the XFRM objects we install: what the planner produces, what the netlink adapter
// encodes and decodes, and what the reconciler diffs. No behaviour lives here.

import type { Family } from '../model/ip-address.js';

export type PolicyDir = 'in' | 'out' | 'fwd';

export interface XfrmMark {
  value: number;
  mask: number;
}

/** AEAD algorithm of an SA. Only rfc4106(gcm(aes)) with a 36-byte key (32 key + 4 salt) is used by us. */
export interface XfrmAead {
  name: string;
  key: Buffer;
  icvBits: number;
}

/** An ESP tunnel-mode security association, keyed in the kernel by (dst, spi, proto, mark). */
export interface XfrmState {
  family: Family;
  /** Outer (tunnel) source and destination addresses, textual. */
  src: string;
  dst: string;
  spi: number;
  /** IP protocol of the SA: 50 (ESP) for ours; foreign states may carry others. */
  proto: number;
  mode: 'tunnel' | 'transport' | 'other';
  reqid: number;
  aead?: XfrmAead;
  mark?: XfrmMark;
  outputMark?: XfrmMark;
  /** Extended sequence numbers with this replay window (packets); 0 with esn=false means no anti-replay. */
  esn: boolean;
  replayWindow: number;
}

export interface XfrmSelector {
  family: Family;
  /** CIDRs, e.g. "10.244.1.0/24"; "0.0.0.0/0" / "::/0" for any. */
  src: string;
  dst: string;
  /** 0 = any protocol. */
  proto: number;
}

export interface XfrmTemplate {
  family: Family;
  src: string;
  dst: string;
  proto: number;
  mode: 'tunnel' | 'transport' | 'other';
  reqid: number;
  /** 0 = any SPI. */
  spi: number;
}

export interface XfrmPolicy {
  dir: PolicyDir;
  selector: XfrmSelector;
  mark?: XfrmMark;
  priority: number;
  action: 'allow' | 'block';
  templates: XfrmTemplate[];
  /** Kernel-assigned index; present on dumped policies, ignored when adding. */
  index?: number;
}

/**
 * One change for the kernel, one netlink message each (the CLI equivalent in brackets):
 * - addState (`ip xfrm state add`): XFRM_MSG_NEWSA; EEXIST when a lookup with its (dst, spi, proto, mark)
 *   already hits a state.
 * - deleteState (`ip xfrm state delete`): XFRM_MSG_DELSA for the state that lookup hits; ESRCH when none.
 * - addPolicy (`ip xfrm policy add`): XFRM_MSG_NEWPOLICY; EEXIST when one with its identity exists.
 * - updatePolicy (`ip xfrm policy update`): XFRM_MSG_UPDPOLICY; replaces the policy with its identity (dir,
 *   selector, mark) or inserts it.
 * - deletePolicy (`ip xfrm policy delete`): XFRM_MSG_DELPOLICY; ENOENT when none has its identity.
 * There is no state update: XFRM_MSG_UPDSA cannot change an SA's key, so a changed SA is deleted and added.
 */
export type XfrmOp =
  | { kind: 'addState'; state: XfrmState }
  | { kind: 'deleteState'; state: Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto' | 'mark'> }
  | { kind: 'addPolicy' | 'updatePolicy'; policy: XfrmPolicy }
  | { kind: 'deletePolicy'; policy: Pick<XfrmPolicy, 'dir' | 'selector' | 'mark'> };

export interface XfrmOpResult {
  op: XfrmOp;
  /** 0 on success, else the positive errno the kernel returned for this message. */
  errno: number;
  /** The kernel's extended-ack text, when it sent one. */
  message?: string;
}

/** What the reconciler needs from the kernel; implemented over netlink by the addon and by a fake in tests. */
export interface XfrmKernel {
  dumpStates(): Promise<XfrmState[]>;
  dumpPolicies(): Promise<XfrmPolicy[]>;
  /** Sends all ops (batched, many messages per syscall) and reports each op's own result; never throws for a per-op error. */
  apply(ops: readonly XfrmOp[]): Promise<XfrmOpResult[]>;
  /**
   * Optional change feed: '' when, since the previous call, the tables changed only through this object's own
   * accepted writes (so a view kept from them is still exact); else why they may have changed. A kernel without
   * it is dumped at every reconcile.
   */
  touchedSinceLastLook?(): string;
}
