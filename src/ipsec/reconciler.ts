// Makes the kernel's XFRM state match a plan, touching only our objects (ownership.ts) and only what
// differs. Steps: dump states and policies; set foreign objects aside; diff ours against the plan by kernel
// identity and full content (addresses, key bytes, marks, output mark, ESN/replay window, templates incl.
// SPI); apply in an order that never drops traffic:
//   batch 1: catch-all block policies, then inbound SAs, then outbound SAs (adds and replacements)
//   batch 2: in/fwd policies, then out policies (switching a template SPI is one in-place update); an out
//            policy whose SA is not present is held back
//   batch 3: deletions, policies before SAs; a peer with a failure above keeps its old objects this round
// An SA whose content changed (a peer rebooted: new boot ID, new keys) is deleted and re-added in the same
// batch: XFRM_MSG_UPDSA never changes keys. A planned object that collides with a foreign one is reported,
// never forced. No difference means no writes at all.

import { getSystemErrorName } from 'node:util';
import { MARK_DECRYPT, MARK_TYPE_MASK } from '../model/marks.js';
import type { XfrmKernel, XfrmOp, XfrmOpResult, XfrmPolicy, XfrmState } from '../xfrm/types.js';
import { canonicalIp } from '../model/ip-address.js';
import { BLOCK_POLICY_PRIORITY, isOurPolicy, isOurState, KMESH_REQID } from './ownership.js';
import type { PlannedPolicy, PlannedState } from './planner.js';
import { describeOp, policiesEqual, policyIdentity, StateIndex, statesEqual } from '../xfrm/identity.js';

export interface DesiredXfrm {
  states: readonly PlannedState[];
  policies: readonly PlannedPolicy[];
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

export interface OwnerOutcome {
  ok: boolean;
  issues: ReconcileIssue[];
}

export interface ReconcileReport {
  /** Ops sent to the kernel (each one write). */
  writes: number;
  /** apply() calls made. */
  batches: number;
  /** Planned objects already present with the right content. */
  unchanged: number;
  failed: number;
  /** Outcome per peer name (every planned peer, and peers that only had stale objects removed). */
  perPeer: Map<string, OwnerOutcome>;
  /** Block policies and stale objects no current peer explains. */
  nodeWide: OwnerOutcome;
  /** Planned objects that are not in the kernel with the planned content afterwards. */
  missingStates: Set<PlannedState>;
  missingPolicies: Set<PlannedPolicy>;
  /** Objects left alone because they are not ours. */
  foreign: { states: number; policies: number };
  results: XfrmOpResult[];
}

interface Pending {
  op: XfrmOp;
  owner: string | null;
  /** The planned object this op brings into the kernel (adds/updates). */
  brings?: PlannedState | PlannedPolicy;
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function errnoCode(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `errno ${errno}`;
  }
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

class Outcomes {
  readonly perPeer = new Map<string, OwnerOutcome>();
  readonly nodeWide: OwnerOutcome = { ok: true, issues: [] };

  of(owner: string | null): OwnerOutcome {
    if (owner === null) return this.nodeWide;
    let outcome = this.perPeer.get(owner);
    if (!outcome) {
      outcome = { ok: true, issues: [] };
      this.perPeer.set(owner, outcome);
    }
    return outcome;
  }

  issue(owner: string | null, issue: ReconcileIssue): void {
    const outcome = this.of(owner);
    outcome.ok = false;
    outcome.issues.push(issue);
  }
}

export async function reconcile(
  kernel: XfrmKernel,
  desired: DesiredXfrm,
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const reqid = options.reqid ?? KMESH_REQID;
  const blockPriority = options.blockPriority ?? BLOCK_POLICY_PRIORITY;
  const existingStates = await kernel.dumpStates();
  const existingPolicies = await kernel.dumpPolicies();
  const oursState = (s: XfrmState): boolean => isOurState(s, reqid);
  const oursPolicy = (p: XfrmPolicy): boolean => isOurPolicy(p, reqid, blockPriority);

  const outcomes = new Outcomes();
  for (const ps of desired.states) outcomes.of(ps.owner);
  for (const pp of desired.policies) outcomes.of(pp.owner);
  const missingStates = new Set<PlannedState>();
  const missingPolicies = new Set<PlannedPolicy>();
  let unchanged = 0;

  // Who a stale object belongs to: the current peer whose underlay address it points at (built on first use:
  // a first apply has no stale objects).
  let ownerByAddress: Map<string, string> | undefined;
  const ownerOf = (address: string): string | undefined => {
    if (ownerByAddress === undefined) {
      ownerByAddress = new Map<string, string>();
      for (const ps of desired.states) {
        ownerByAddress.set(canonicalIp(ps.direction === 'outbound' ? ps.state.dst : ps.state.src), ps.owner);
      }
    }
    return ownerByAddress.get(canonicalIp(address));
  };

  // ---- states
  const index = new StateIndex<XfrmState>();
  // SPIs the kernel holds: a planned SA whose SPI is not among them cannot hit anything (the SPI is part of the
  // kernel's key), so it skips the index lookup and its address canonicalisation.
  const kernelSpis = new Set<number>();
  for (const s of existingStates) {
    index.add(s);
    kernelSpis.add(s.spi >>> 0);
  }
  const claimedStates = new Set<XfrmState>();
  const inboundOps: Pending[] = [];
  const outboundOps: Pending[] = [];
  const noHits: XfrmState[] = [];
  for (const ps of desired.states) {
    const hits = kernelSpis.has(ps.state.spi >>> 0) ? index.hits(ps.state) : noHits;
    const target = ps.direction === 'inbound' ? inboundOps : outboundOps;
    if (hits.length === 0) {
      // New SA (the common case on a first apply): nothing in the kernel to compare, claim or delete.
      target.push({ op: { kind: 'addState', state: ps.state }, owner: ps.owner, brings: ps });
      continue;
    }
    const foreignHit = hits.find((x) => !oursState(x));
    if (foreignHit) {
      for (const x of hits) claimedStates.add(x);
      missingStates.add(ps);
      outcomes.issue(ps.owner, {
        what: describeOp({ kind: 'addState', state: ps.state }),
        code: 'CONFLICT',
        message: `a foreign XFRM state (reqid ${hex(foreignHit.reqid)}) holds this dst/spi/mark; left alone`,
      });
      continue;
    }
    const ourHits = hits.filter((x) => !claimedStates.has(x));
    if (ourHits.length === 1 && ourHits[0] && statesEqual(ourHits[0], ps.state)) {
      claimedStates.add(ourHits[0]);
      unchanged++;
      continue;
    }
    for (const x of ourHits) {
      claimedStates.add(x);
      target.push({ op: stateDeleteOp(x), owner: ps.owner });
    }
    target.push({ op: { kind: 'addState', state: ps.state }, owner: ps.owner, brings: ps });
  }

  // ---- policies
  const policiesById = new Map<string, XfrmPolicy[]>();
  for (const p of existingPolicies) {
    const id = policyIdentity(p);
    const list = policiesById.get(id);
    if (list) list.push(p);
    else policiesById.set(id, [p]);
  }
  const claimedPolicies = new Set<XfrmPolicy>();
  const blockOps: Pending[] = [];
  const inFwdOps: Pending[] = [];
  const outOps: Pending[] = [];
  for (const pp of desired.policies) {
    // An empty table (a first apply) needs no identity strings.
    const same = policiesById.size === 0 ? undefined : policiesById.get(policyIdentity(pp.policy));
    const target = pp.role === 'block' ? blockOps : pp.role === 'out' ? outOps : inFwdOps;
    if (same === undefined) {
      // No policy with this identity in the kernel: add it.
      target.push({ op: { kind: 'addPolicy', policy: pp.policy }, owner: pp.owner, brings: pp });
      continue;
    }
    const ours = same.filter(oursPolicy);
    for (const p of same) claimedPolicies.add(p);
    const current = ours[0];
    if (!current) {
      if (same.length > 0) {
        missingPolicies.add(pp);
        outcomes.issue(pp.owner, {
          what: describeOp({ kind: 'addPolicy', policy: pp.policy }),
          code: 'CONFLICT',
          message: 'a foreign XFRM policy has this direction/selector/mark; left alone',
        });
        continue;
      }
      target.push({ op: { kind: 'addPolicy', policy: pp.policy }, owner: pp.owner, brings: pp });
    } else if (policiesEqual(current, pp.policy)) {
      unchanged++;
    } else {
      target.push({ op: { kind: 'updatePolicy', policy: pp.policy }, owner: pp.owner, brings: pp });
    }
  }

  // ---- stale objects of ours
  const staleOwner = (address: string): string | null => ownerOf(address) ?? null;
  const policyDeletes: Pending[] = [];
  for (const p of existingPolicies) {
    if (claimedPolicies.has(p) || !oursPolicy(p)) continue;
    const t = p.templates.find((x) => x.reqid === reqid);
    const owner = t ? staleOwner(p.dir === 'out' ? t.dst : t.src) : null;
    policyDeletes.push({ op: policyDeleteOp(p), owner });
  }
  const stateDeletes: Pending[] = [];
  const unsafeDeletes: { owner: string | null; op: XfrmOp; foreign: XfrmState }[] = [];
  for (const s of existingStates) {
    if (claimedStates.has(s) || !oursState(s)) continue;
    const inbound = ((s.mark?.value ?? 0) & MARK_TYPE_MASK) === MARK_DECRYPT;
    const owner = staleOwner(inbound ? s.src : s.dst);
    const op = stateDeleteOp(s);
    const foreign = index.hits(s).find((x) => x !== s && !oursState(x));
    if (foreign) unsafeDeletes.push({ owner, op, foreign });
    else stateDeletes.push({ op, owner });
  }
  for (const { owner, op, foreign } of unsafeDeletes) {
    outcomes.issue(owner, {
      what: describeOp(op),
      code: 'CONFLICT',
      message: `not deleted: the kernel's lookup could hit a foreign state (reqid ${hex(foreign.reqid)}) instead`,
    });
  }
  // Out policies go first (stop sending), inbound SAs last (a peer may still send with an old SPI).
  policyDeletes.sort((a, b) => Number(!isOutDelete(a.op)) - Number(!isOutDelete(b.op)));
  stateDeletes.sort((a, b) => Number(isInboundDelete(a.op)) - Number(isInboundDelete(b.op)));

  // ---- apply
  const results: XfrmOpResult[] = [];
  let writes = 0;
  let batches = 0;
  let failed = 0;
  const failedOwners = new Set<string | null>();
  const run = async (batch: Pending[]): Promise<void> => {
    if (batch.length === 0) return;
    batches++;
    writes += batch.length;
    const batchResults = await kernel.apply(batch.map((p) => p.op));
    batch.forEach((pending, i) => {
      const result = batchResults[i] ?? { op: pending.op, errno: -1, message: 'no result returned for this op' };
      results.push(result);
      if (result.errno === 0) return;
      failed++;
      failedOwners.add(pending.owner);
      if (pending.brings) {
        if ('state' in pending.brings) missingStates.add(pending.brings);
        else missingPolicies.add(pending.brings);
      }
      const code = result.errno > 0 ? errnoCode(result.errno) : 'EUNKNOWN';
      outcomes.issue(pending.owner, {
        what: describeOp(pending.op),
        errno: result.errno,
        code,
        message: result.message ?? code,
      });
    });
  };

  await run([...blockOps, ...inboundOps, ...outboundOps]);

  const switchable: Pending[] = [];
  for (const pending of [...inFwdOps, ...outOps]) {
    const requires = pending.brings && 'policy' in pending.brings ? pending.brings.requires : undefined;
    if (requires && missingStates.has(requires)) {
      missingPolicies.add(pending.brings as PlannedPolicy);
      failedOwners.add(pending.owner);
      outcomes.issue(pending.owner, {
        what: describeOp(pending.op),
        code: 'DEFERRED',
        message: `held back: its SA (spi ${hex(requires.state.spi)}) is not installed`,
      });
      continue;
    }
    switchable.push(pending);
  }
  await run(switchable);

  const deletions: Pending[] = [];
  for (const pending of [...policyDeletes, ...stateDeletes]) {
    if (failedOwners.has(pending.owner)) {
      outcomes.issue(pending.owner, {
        what: describeOp(pending.op),
        code: 'DEFERRED',
        message: 'kept until the changes above succeed',
      });
      continue;
    }
    deletions.push(pending);
  }
  await run(deletions);

  return {
    writes,
    batches,
    unchanged,
    failed,
    perPeer: outcomes.perPeer,
    nodeWide: outcomes.nodeWide,
    missingStates,
    missingPolicies,
    foreign: {
      states: existingStates.filter((s) => !oursState(s)).length,
      policies: existingPolicies.filter((p) => !oursPolicy(p)).length,
    },
    results,
  };
}

function isOutDelete(op: XfrmOp): boolean {
  return op.kind === 'deletePolicy' && op.policy.dir === 'out';
}

function isInboundDelete(op: XfrmOp): boolean {
  return op.kind === 'deleteState' && ((op.state.mark?.value ?? 0) & MARK_TYPE_MASK) === MARK_DECRYPT;
}

/** Removes every XFRM object of ours (uninstall): a reconcile towards nothing. Foreign objects stay. */
export function removeOwned(kernel: XfrmKernel, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  return reconcile(kernel, { states: [], policies: [] }, options);
}
