// The reconciler with a kept kernel view (issue 15): a step reads the kernel only when it may have changed
// behind our back. After a step whose every write the kernel accepted (no failure, no conflict, nothing held
// back), the kernel holds exactly the foreign objects it held plus the plan's objects — so that is kept as the
// view, and the next step diffs against it instead of dumping 25,000 objects. The kernel's change feed
// (XfrmKernel.touchedSinceLastLook: the kernel's own announcements of every SA/policy change, our writes
// matched out) says whether the view still holds; anything else — a foreign change, a flush, a lost
// announcement, a failed or unknown write, a kernel without a feed — drops it and the step dumps. A full dump
// also happens at least every `auditMs` whatever the feed says (belt and braces). A step whose plan is the one
// the view was built from (the same planned objects: the planner reuses them for unchanged tunnels, or equal
// ones) writes nothing and diffs nothing: O(plan) set lookups.
import type { XfrmKernel, XfrmPolicy, XfrmState } from '../xfrm/types.js';
import { PolicyIndex, policiesEqual, StateIndex, statesEqual } from '../xfrm/identity.js';
import { isOurPolicy, isOurState, KMESH_REQID, BLOCK_POLICY_PRIORITY } from './ownership.js';
import type { PlannedPolicy, PlannedState } from './planner.js';
import { applyXfrmDiff, type ReconcileReport } from './reconciler.js';
import { diffXfrm, type DesiredXfrm, type KernelXfrm, type ReconcileOptions } from './xfrm-diff.js';

/** A full dump at least this often, even when the change feed says nothing changed. */
export const DEFAULT_AUDIT_MS = 300_000;

export interface KeptViewOptions {
  auditMs?: number;
  now?: () => number;
}

/** How the last reconcile learned the kernel's state. */
export interface KernelRead {
  /** 'dump': read from the kernel; 'view': diffed against the kept view; 'same-plan': nothing to diff. */
  how: 'dump' | 'view' | 'same-plan';
  /** Why the kernel was dumped ('' otherwise). */
  why: string;
}

export class KeptXfrmView {
  private view: (KernelXfrm & { dumpedAt: number }) | undefined;
  /** The plan the view was built from: every object of it is in the kernel with its content. */
  private applied: DesiredXfrm | undefined;
  private readonly auditMs: number;
  private readonly now: () => number;
  lastRead: KernelRead = { how: 'dump', why: 'no step yet' };
  dumps = 0;

  constructor(
    private readonly kernel: XfrmKernel,
    options: KeptViewOptions = {},
  ) {
    this.auditMs = options.auditMs ?? DEFAULT_AUDIT_MS;
    this.now = options.now ?? Date.now;
  }

  /** Forgets the view: the next reconcile dumps. */
  invalidate(): void {
    this.view = undefined;
    this.applied = undefined;
  }

  async reconcile(desired: DesiredXfrm, options: ReconcileOptions = {}): Promise<ReconcileReport> {
    // Always look, so the feed is drained and its ledger settled at every step.
    const touched = this.kernel.touchedSinceLastLook?.() ?? 'the XFRM kernel has no change feed';
    const now = this.now();
    let view = this.view;
    let why = touched;
    if (view === undefined) why = why === '' ? 'no kept view (first step, or the last one failed)' : why;
    else if (why === '' && now - view.dumpedAt >= this.auditMs) why = `periodic audit (every ${this.auditMs / 1000} s)`;
    if (why !== '' || view === undefined) {
      const states = await this.kernel.dumpStates();
      const policies = await this.kernel.dumpPolicies();
      view = { states, policies, dumpedAt: now };
      this.dumps++;
      this.view = view;
      this.applied = undefined;
      this.lastRead = { how: 'dump', why };
    } else if (this.applied !== undefined && samePlan(this.applied, desired)) {
      this.lastRead = { how: 'same-plan', why: '' };
      return unchangedReport(desired, view, options);
    } else {
      this.lastRead = { how: 'view', why: '' };
    }
    const diff = diffXfrm(view, desired, options);
    let report: ReconcileReport;
    try {
      report = await applyXfrmDiff(this.kernel, diff);
    } catch (err) {
      this.invalidate();
      throw err;
    }
    const clean =
      report.failed === 0 &&
      diff.issues.length === 0 &&
      report.missingStates.size === 0 &&
      report.missingPolicies.size === 0;
    if (!clean) {
      this.invalidate();
      return report;
    }
    const reqid = options.reqid ?? KMESH_REQID;
    const blockPriority = options.blockPriority ?? BLOCK_POLICY_PRIORITY;
    this.view = {
      states: [...view.states.filter((s) => !isOurState(s, reqid)), ...desired.states.map((s) => s.state)],
      policies: [
        ...view.policies.filter((p) => !isOurPolicy(p, reqid, blockPriority)),
        ...desired.policies.map((p) => p.policy),
      ],
      dumpedAt: view.dumpedAt,
    };
    this.applied = desired;
    return report;
  }
}

/** The report of a reconcile that found every planned object in place and nothing stale. */
function unchangedReport(desired: DesiredXfrm, view: KernelXfrm, options: ReconcileOptions): ReconcileReport {
  const reqid = options.reqid ?? KMESH_REQID;
  const blockPriority = options.blockPriority ?? BLOCK_POLICY_PRIORITY;
  const perPeer = new Map<string, { ok: boolean; issues: [] }>();
  for (const x of desired.states) if (!perPeer.has(x.owner)) perPeer.set(x.owner, { ok: true, issues: [] });
  for (const x of desired.policies) {
    if (x.owner !== null && !perPeer.has(x.owner)) perPeer.set(x.owner, { ok: true, issues: [] });
  }
  let foreignStates = 0;
  for (const s of view.states) if (!isOurState(s, reqid)) foreignStates++;
  let foreignPolicies = 0;
  for (const p of view.policies) if (!isOurPolicy(p, reqid, blockPriority)) foreignPolicies++;
  return {
    writes: 0,
    batches: 0,
    unchanged: desired.states.length + desired.policies.length,
    failed: 0,
    perPeer,
    nodeWide: { ok: true, issues: [] },
    missingStates: new Set(),
    missingPolicies: new Set(),
    foreign: { states: foreignStates, policies: foreignPolicies },
    results: [],
  };
}

/**
 * Does `next` plan exactly what `prev` planned? The same objects (the planner's memo hands out the previous
 * plan's objects for unchanged tunnels) or, for the few planned afresh each time (block policies), equal ones
 * with the same owner and role.
 */
export function samePlan(prev: DesiredXfrm, next: DesiredXfrm): boolean {
  if (prev.states.length !== next.states.length || prev.policies.length !== next.policies.length) return false;
  const prevStates = new Set<PlannedState>(prev.states);
  let stateIndex: StateIndex<XfrmState> | undefined;
  const ownerOfState = new Map<XfrmState, PlannedState>();
  for (const s of next.states) {
    if (prevStates.has(s)) continue;
    if (stateIndex === undefined) {
      stateIndex = new StateIndex<XfrmState>();
      for (const p of prev.states) {
        stateIndex.add(p.state);
        ownerOfState.set(p.state, p);
      }
    }
    if (findState(stateIndex, ownerOfState, s) === undefined) return false;
  }
  const prevPolicies = new Set<PlannedPolicy>(prev.policies);
  let policyIndex: PolicyIndex<XfrmPolicy> | undefined;
  const ownerOfPolicy = new Map<XfrmPolicy, PlannedPolicy>();
  for (const p of next.policies) {
    if (prevPolicies.has(p)) continue;
    if (policyIndex === undefined) {
      policyIndex = new PolicyIndex<XfrmPolicy>();
      for (const q of prev.policies) {
        policyIndex.add(q.policy);
        ownerOfPolicy.set(q.policy, q);
      }
    }
    const same = policyIndex.get(p.policy)?.find((q) => {
      const planned = ownerOfPolicy.get(q);
      return planned?.owner === p.owner && planned.role === p.role && policiesEqual(q, p.policy);
    });
    if (same === undefined) return false;
  }
  return true;
}

function findState(
  index: StateIndex<XfrmState>,
  planned: ReadonlyMap<XfrmState, PlannedState>,
  s: PlannedState,
): PlannedState | undefined {
  for (const hit of index.hits(s.state)) {
    const p = planned.get(hit);
    if (p !== undefined && p.owner === s.owner && p.direction === s.direction && statesEqual(hit, s.state)) return p;
  }
  return undefined;
}
