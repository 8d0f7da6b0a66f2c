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
  private applied: IndexedPlan | undefined;
  /** Foreign objects in the view (they only change when the view is dumped again). */
  private foreign = { states: 0, policies: 0 };
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
      return unchangedReport(desired, this.foreign);
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
    const foreignStates = view.states.filter((s) => !isOurState(s, reqid));
    const foreignPolicies = view.policies.filter((p) => !isOurPolicy(p, reqid, blockPriority));
    this.view = {
      states: [...foreignStates, ...desired.states.map((s) => s.state)],
      policies: [...foreignPolicies, ...desired.policies.map((p) => p.policy)],
      dumpedAt: view.dumpedAt,
    };
    this.foreign = { states: foreignStates.length, policies: foreignPolicies.length };
    this.applied = indexPlan(desired);
    return report;
  }
}

/** The report of a reconcile that found every planned object in place and nothing stale. */
function unchangedReport(desired: DesiredXfrm, foreign: { states: number; policies: number }): ReconcileReport {
  const perPeer = new Map<string, { ok: boolean; issues: [] }>();
  for (const x of desired.states) if (!perPeer.has(x.owner)) perPeer.set(x.owner, { ok: true, issues: [] });
  for (const x of desired.policies) {
    if (x.owner !== null && !perPeer.has(x.owner)) perPeer.set(x.owner, { ok: true, issues: [] });
  }
  return {
    writes: 0,
    batches: 0,
    unchanged: desired.states.length + desired.policies.length,
    failed: 0,
    perPeer,
    nodeWide: { ok: true, issues: [] },
    missingStates: new Set(),
    missingPolicies: new Set(),
    foreign: { ...foreign },
    results: [],
  };
}

/** A plan with its objects in sets, for same-plan checks without rebuilding them at every step. */
export interface IndexedPlan {
  plan: DesiredXfrm;
  states: ReadonlySet<PlannedState>;
  policies: ReadonlySet<PlannedPolicy>;
}

export function indexPlan(plan: DesiredXfrm): IndexedPlan {
  return { plan, states: new Set(plan.states), policies: new Set(plan.policies) };
}

/**
 * Does `next` plan exactly what `prev` planned? The same objects (the planner's memo hands out the previous
 * plan's objects for unchanged tunnels) or, for the few planned afresh each time (block policies), equal ones
 * with the same owner and role. Costs one set lookup per object; only the objects not shared are compared.
 */
export function samePlan(prev: IndexedPlan, next: DesiredXfrm): boolean {
  if (prev.plan.states.length !== next.states.length || prev.plan.policies.length !== next.policies.length) {
    return false;
  }
  const freshStates = next.states.filter((s) => !prev.states.has(s));
  const freshPolicies = next.policies.filter((p) => !prev.policies.has(p));
  if (freshStates.length === 0 && freshPolicies.length === 0) return true;
  // As many of prev's objects are not in next as next has fresh ones (equal lengths, no duplicates): pair them.
  if (freshStates.length > 0) {
    const nextStates = new Set(next.states);
    const index = new StateIndex<XfrmState>();
    const planned = new Map<XfrmState, PlannedState>();
    for (const p of prev.plan.states) {
      if (nextStates.has(p)) continue;
      index.add(p.state);
      planned.set(p.state, p);
    }
    if (freshStates.some((s) => findState(index, planned, s) === undefined)) return false;
  }
  if (freshPolicies.length > 0) {
    const nextPolicies = new Set(next.policies);
    const index = new PolicyIndex<XfrmPolicy>();
    const planned = new Map<XfrmPolicy, PlannedPolicy>();
    for (const q of prev.plan.policies) {
      if (nextPolicies.has(q)) continue;
      index.add(q.policy);
      planned.set(q.policy, q);
    }
    const unmatched = freshPolicies.some(
      (p) =>
        index.get(p.policy)?.find((q) => {
          const was = planned.get(q);
          return was?.owner === p.owner && was.role === p.role && policiesEqual(q, p.policy);
        }) === undefined,
    );
    if (unmatched) return false;
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
