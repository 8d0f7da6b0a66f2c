// The pure half of the XFRM reconcile: from what the kernel holds (a dump of states and policies) and the plan, the
// ops that make the kernel match, each with the peer it serves and its batch, in an order that never drops traffic:
//   batch 1 (installs): catch-all block policies, then inbound SAs, then outbound SAs (adds and replacements)
//   batch 2 (policies): in/fwd policies, then out policies (switching a template SPI is one in-place update)
//   batch 3 (deletions): stale objects of ours, out policies first (stop sending), inbound SAs last (a peer may
//            still send with an old SPI)
// Only our objects (ownership.ts) are touched, and only what differs by kernel identity and full content
// (addresses, key bytes, marks, output mark, ESN/replay window, templates incl. SPI). An SA whose content changed
// (a peer rebooted: new boot ID, new keys) is deleted and re-added in batch 1: XFRM_MSG_UPDSA never changes keys. A
// planned object that collides with a foreign one is reported as a CONFLICT, never forced. No difference, no ops.
// What depends on the kernel's answers (holding back an out policy whose SA failed, keeping a failing peer's old
// objects) is decided by the apply half (reconciler.ts).
import { MARK_DECRYPT, MARK_TYPE_MASK } from '../model/marks.js';
import type { XfrmOp, XfrmPolicy, XfrmState } from '../xfrm/types.js';
import { canonicalIp } from '../model/ip-address.js';
import { BLOCK_POLICY_PRIORITY, isOurPolicy, isOurState, KMESH_REQID } from './ownership.js';
import type { PlannedPolicy, PlannedState } from './planner.js';
import { describeOp, policiesEqual, PolicyIndex, StateIndex, statesEqual } from '../xfrm/identity.js';

export interface DesiredXfrm {
  states: readonly PlannedState[];
  policies: readonly PlannedPolicy[];
}

export interface KernelXfrm {
  states: readonly XfrmState[];
  policies: readonly XfrmPolicy[];
}

export interface ReconcileOptions {
  reqid?: number;
  blockPriority?: number;
}

export interface ReconcileIssue {
  /** The object concerned, e.g. "addState 10.0.0.2->10.0.0.1 spi 0x2 ...". */
  what: string;
  /** Kernel errno when the kernel refused an op. */
  errno?: number;
  /** e.g. "EEXIST" (kernel errors), "CONFLICT" (foreign object in the way), "DEFERRED" (held back). */
  code: string;
  message: string;
}

/** One op for the kernel, the peer it serves (null: node-wide) and the planned object it brings in, if any. */
export interface DiffOp {
  op: XfrmOp;
  owner: string | null;
  brings?: PlannedState | PlannedPolicy;
}

export interface XfrmDiff {
  /** Batch 1: block policies, then inbound SAs, then outbound SAs. */
  installs: DiffOp[];
  /** Batch 2: in/fwd policies, then out policies. */
  policies: DiffOp[];
  /** Batch 3: stale objects of ours, out policies first, policies before SAs, inbound SAs last. */
  deletions: DiffOp[];
  /** Planned objects already present with the right content. */
  unchanged: number;
  /** Peers with planned objects, in plan order. */
  owners: string[];
  /** Planned objects a foreign object keeps out of the kernel. */
  blockedStates: PlannedState[];
  blockedPolicies: PlannedPolicy[];
  /** Conflicts with foreign objects, by owner. */
  issues: { owner: string | null; issue: ReconcileIssue }[];
  /** Objects left alone because they are not ours. */
  foreign: { states: number; policies: number };
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function stateDeleteOp(s: XfrmState): XfrmOp {
  return {
    kind: 'deleteState',
    state: { family: s.family, dst: s.dst, spi: s.spi, proto: s.proto, ...(s.mark ? { mark: { ...s.mark } } : {}) },
  };
}

function policyDeleteOp(p: XfrmPolicy): XfrmOp {
  return {
    kind: 'deletePolicy',
    policy: { dir: p.dir, selector: { ...p.selector }, ...(p.mark ? { mark: { ...p.mark } } : {}) },
  };
}

function isInbound(s: Pick<XfrmState, 'mark'>): boolean {
  return ((s.mark?.value ?? 0) & MARK_TYPE_MASK) === MARK_DECRYPT;
}

function isOutDelete(op: XfrmOp): boolean {
  return op.kind === 'deletePolicy' && op.policy.dir === 'out';
}

function isInboundDelete(op: XfrmOp): boolean {
  return op.kind === 'deleteState' && isInbound(op.state);
}

/** Everything the three passes share: ownership tests, what they claimed in the kernel, the diff being built. */
interface Pass {
  ourState: (s: XfrmState) => boolean;
  ourPolicy: (p: XfrmPolicy) => boolean;
  index: StateIndex<XfrmState>;
  claimedStates: Set<XfrmState>;
  claimedPolicies: Set<XfrmPolicy>;
  diff: XfrmDiff;
}

/** Planned SAs against the kernel's: inbound and outbound adds (a changed SA: delete + add). */
function diffStates(pass: Pass, kernel: KernelXfrm, desired: DesiredXfrm): { inbound: DiffOp[]; outbound: DiffOp[] } {
  const { index, claimedStates, diff } = pass;
  // SPIs the kernel holds: a planned SA whose SPI is not among them cannot hit anything (the SPI is part of the
  // kernel's key), so it skips the index lookup and its address canonicalisation.
  const kernelSpis = new Set(kernel.states.map((s) => s.spi >>> 0));
  const inbound: DiffOp[] = [];
  const outbound: DiffOp[] = [];
  for (const ps of desired.states) {
    const hits = kernelSpis.has(ps.state.spi >>> 0) ? index.hits(ps.state) : [];
    const target = ps.direction === 'inbound' ? inbound : outbound;
    const add = (): DiffOp => ({ op: { kind: 'addState', state: ps.state }, owner: ps.owner, brings: ps });
    if (hits.length === 0) {
      // New SA (the common case on a first apply): nothing in the kernel to compare, claim or delete.
      target.push(add());
      continue;
    }
    const foreignHit = hits.find((x) => !pass.ourState(x));
    if (foreignHit) {
      for (const x of hits) claimedStates.add(x);
      diff.blockedStates.push(ps);
      diff.issues.push({
        owner: ps.owner,
        issue: {
          what: describeOp(add().op),
          code: 'CONFLICT',
          message: `a foreign XFRM state (reqid ${hex(foreignHit.reqid)}) holds this dst/spi/mark; left alone`,
        },
      });
      continue;
    }
    const ourHits = hits.filter((x) => !claimedStates.has(x));
    if (ourHits.length === 1 && ourHits[0] && statesEqual(ourHits[0], ps.state)) {
      claimedStates.add(ourHits[0]);
      diff.unchanged++;
      continue;
    }
    for (const x of ourHits) {
      claimedStates.add(x);
      target.push({ op: stateDeleteOp(x), owner: ps.owner });
    }
    target.push(add());
  }
  return { inbound, outbound };
}

/** Planned policies against the kernel's: adds, in-place updates, by role. */
function diffPolicies(
  pass: Pass,
  kernel: KernelXfrm,
  desired: DesiredXfrm,
): { block: DiffOp[]; inFwd: DiffOp[]; out: DiffOp[] } {
  const { claimedPolicies, diff } = pass;
  const byIdentity = new PolicyIndex<XfrmPolicy>();
  for (const p of kernel.policies) byIdentity.add(p);
  const block: DiffOp[] = [];
  const inFwd: DiffOp[] = [];
  const out: DiffOp[] = [];
  for (const pp of desired.policies) {
    // An empty table (a first apply) needs no identity strings.
    const same = byIdentity.size === 0 ? undefined : byIdentity.get(pp.policy);
    const target = pp.role === 'block' ? block : pp.role === 'out' ? out : inFwd;
    const add = (): DiffOp => ({ op: { kind: 'addPolicy', policy: pp.policy }, owner: pp.owner, brings: pp });
    if (same === undefined) {
      target.push(add());
      continue;
    }
    for (const p of same) claimedPolicies.add(p);
    const current = same.find(pass.ourPolicy);
    if (!current) {
      diff.blockedPolicies.push(pp);
      diff.issues.push({
        owner: pp.owner,
        issue: {
          what: describeOp(add().op),
          code: 'CONFLICT',
          message: 'a foreign XFRM policy has this direction/selector/mark; left alone',
        },
      });
    } else if (policiesEqual(current, pp.policy)) {
      diff.unchanged++;
    } else {
      target.push({ op: { kind: 'updatePolicy', policy: pp.policy }, owner: pp.owner, brings: pp });
    }
  }
  return { block, inFwd, out };
}

/**
 * Our objects no planned object claimed: deletions, each attributed to the current peer whose underlay address it
 * points at (node-wide when none). An SA whose delete could hit a foreign state instead is reported, not deleted.
 */
function staleDeletions(
  pass: Pass,
  kernel: KernelXfrm,
  ownerOf: (address: string) => string | null,
  reqid: number,
): DiffOp[] {
  const policyDeletes: DiffOp[] = [];
  for (const p of kernel.policies) {
    if (pass.claimedPolicies.has(p) || !pass.ourPolicy(p)) continue;
    const t = p.templates.find((x) => x.reqid === reqid);
    const owner = t ? ownerOf(p.dir === 'out' ? t.dst : t.src) : null;
    policyDeletes.push({ op: policyDeleteOp(p), owner });
  }
  const stateDeletes: DiffOp[] = [];
  for (const s of kernel.states) {
    if (pass.claimedStates.has(s) || !pass.ourState(s)) continue;
    const owner = ownerOf(isInbound(s) ? s.src : s.dst);
    const op = stateDeleteOp(s);
    const foreign = pass.index.hits(s).find((x) => x !== s && !pass.ourState(x));
    if (foreign) {
      pass.diff.issues.push({
        owner,
        issue: {
          what: describeOp(op),
          code: 'CONFLICT',
          message: `not deleted: the kernel's lookup could hit a foreign state (reqid ${hex(foreign.reqid)}) instead`,
        },
      });
    } else {
      stateDeletes.push({ op, owner });
    }
  }
  policyDeletes.sort((a, b) => Number(!isOutDelete(a.op)) - Number(!isOutDelete(b.op)));
  stateDeletes.sort((a, b) => Number(isInboundDelete(a.op)) - Number(isInboundDelete(b.op)));
  return [...policyDeletes, ...stateDeletes];
}

/**
 * The peer a stale object of ours is attributed to: the planned peer whose underlay address it points at (an
 * outbound SA's dst, an inbound SA's src), null when none. The map is built on first use (a first apply has
 * nothing stale).
 */
export function addressOwners(desired: DesiredXfrm): (address: string) => string | null {
  let ownerByAddress: Map<string, string> | undefined;
  return (address) => {
    if (ownerByAddress === undefined) {
      ownerByAddress = new Map<string, string>();
      for (const ps of desired.states) {
        ownerByAddress.set(canonicalIp(ps.direction === 'outbound' ? ps.state.dst : ps.state.src), ps.owner);
      }
    }
    return ownerByAddress.get(canonicalIp(address)) ?? null;
  };
}

/**
 * When `desired` is part of a larger plan (the kept view diffs only the objects that changed, against the part of
 * the kernel they touch): the whole plan's peers, and the attribution of stale objects by the whole plan.
 */
export interface DiffScope {
  owners: string[];
  ownerOf: (address: string) => string | null;
}

/** The ops that take the kernel from `kernel` to `desired`, by batch; pure. */
export function diffXfrm(
  kernel: KernelXfrm,
  desired: DesiredXfrm,
  options: ReconcileOptions = {},
  scope?: DiffScope,
): XfrmDiff {
  const reqid = options.reqid ?? KMESH_REQID;
  const blockPriority = options.blockPriority ?? BLOCK_POLICY_PRIORITY;
  const ourState = (s: XfrmState): boolean => isOurState(s, reqid);
  const ourPolicy = (p: XfrmPolicy): boolean => isOurPolicy(p, reqid, blockPriority);
  let owners = scope?.owners;
  if (owners === undefined) {
    const set = new Set<string>();
    for (const x of desired.states) set.add(x.owner);
    for (const x of desired.policies) if (x.owner !== null) set.add(x.owner);
    owners = [...set];
  }
  const diff: XfrmDiff = {
    installs: [],
    policies: [],
    deletions: [],
    unchanged: 0,
    owners,
    blockedStates: [],
    blockedPolicies: [],
    issues: [],
    foreign: { states: 0, policies: 0 },
  };
  for (const s of kernel.states) if (!ourState(s)) diff.foreign.states++;
  for (const p of kernel.policies) if (!ourPolicy(p)) diff.foreign.policies++;
  const index = new StateIndex<XfrmState>();
  for (const s of kernel.states) index.add(s);
  const pass: Pass = { ourState, ourPolicy, index, claimedStates: new Set(), claimedPolicies: new Set(), diff };
  const states = diffStates(pass, kernel, desired);
  const policies = diffPolicies(pass, kernel, desired);
  diff.installs = [...policies.block, ...states.inbound, ...states.outbound];
  diff.policies = [...policies.inFwd, ...policies.out];
  diff.deletions = staleDeletions(pass, kernel, scope?.ownerOf ?? addressOwners(desired), reqid);
  return diff;
}
