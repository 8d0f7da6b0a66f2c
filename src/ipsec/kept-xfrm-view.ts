// The reconciler with a kept kernel view (issue 15): a step reads the kernel only when it may have changed
// behind our back. After a step whose every write the kernel accepted (no failure, no conflict, nothing held
// back), the kernel holds exactly the foreign objects it held plus the plan's objects — so that is kept as the
// view, and the next step diffs against it instead of dumping 25,000 objects. The kernel's change feed
// (XfrmKernel.touchedSinceLastLook: the kernel's own announcements of every SA/policy change, our writes
// matched out) says whether the view still holds; anything else — a foreign change, a flush, a lost
// announcement, a failed or unknown write, a kernel without a feed — drops it and the step dumps. A full dump
// also happens at least every `auditMs` whatever the feed says (belt and braces). A step whose plan is the one
// the view was built from (the same planned objects: the planner reuses them for unchanged tunnels, or equal
// ones) writes nothing and diffs nothing: O(plan) map lookups. A step whose plan changed in a few objects diffs
// those against the part of the view they touch (found through an identity index of the view kept up to date
// step by step), which gives the ops the whole diff would give; a large change diffs the whole view.
import type { XfrmKernel, XfrmPolicy, XfrmState } from '../xfrm/types.js';
import { PolicyIndex, policiesEqual, StateIndex, statesEqual } from '../xfrm/identity.js';
import { isOurPolicy, isOurState, KMESH_REQID, BLOCK_POLICY_PRIORITY } from './ownership.js';
import type { PlannedPolicy, PlannedState } from './planner.js';
import { applyXfrmDiff, type ReconcileReport } from './reconciler.js';
import {
  addressOwners,
  diffXfrm,
  type DesiredXfrm,
  type KernelXfrm,
  type ReconcileOptions,
  type XfrmDiff,
} from './xfrm-diff.js';

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

/** What the kernel holds, as far as the view knows: the foreign objects of the last dump, and the applied plan. */
interface View {
  foreignStates: readonly XfrmState[];
  foreignPolicies: readonly XfrmPolicy[];
  dumpedAt: number;
  /** The plan whose every object is in the kernel with its content; undefined right after a dump. */
  applied?: IndexedPlan;
  /** Every object of the view (foreign and applied) by kernel identity, kept up to date with the applied plan. */
  index?: ViewIndex;
}

/** Objects by kernel identity. */
interface ViewIndex {
  states: StateIndex<XfrmState>;
  policies: PolicyIndex<XfrmPolicy>;
}

/** More objects than this planned anew or dropped in one step: diff the whole view, not the change. */
const MAX_CHANGED_OBJECTS = 2048;

export class KeptXfrmView {
  private view: View | undefined;
  private readonly auditMs: number;
  private readonly now: () => number;
  lastRead: KernelRead = { how: 'dump', why: 'no step yet' };
  dumps = 0;
  /** Steps diffed on the changed objects only (tests). */
  changeDiffs = 0;

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
  }

  async reconcile(desired: DesiredXfrm, options: ReconcileOptions = {}): Promise<ReconcileReport> {
    // Always look, so the feed is drained and its ledger settled at every step.
    const touched = this.kernel.touchedSinceLastLook?.() ?? 'the XFRM kernel has no change feed';
    const now = this.now();
    let view = this.view;
    let why = touched;
    if (view === undefined) why = why === '' ? 'no kept view (first step, or the last one failed)' : why;
    else if (why === '' && now - view.dumpedAt >= this.auditMs) why = `periodic audit (every ${this.auditMs / 1000} s)`;
    const reqid = options.reqid ?? KMESH_REQID;
    const blockPriority = options.blockPriority ?? BLOCK_POLICY_PRIORITY;
    let kernel: KernelXfrm;
    if (why !== '' || view === undefined) {
      const states = await this.kernel.dumpStates();
      const policies = await this.kernel.dumpPolicies();
      kernel = { states, policies };
      view = {
        foreignStates: states.filter((s) => !isOurState(s, reqid)),
        foreignPolicies: policies.filter((p) => !isOurPolicy(p, reqid, blockPriority)),
        dumpedAt: now,
      };
      this.dumps++;
      this.view = view;
      this.lastRead = { how: 'dump', why };
    } else {
      const fresh = view.applied && freshObjects(view.applied, desired);
      if (view.applied !== undefined && samePlan(view.applied, desired, fresh, view.index)) {
        this.lastRead = { how: 'same-plan', why: '' };
        return unchangedReport(desired, { states: view.foreignStates.length, policies: view.foreignPolicies.length });
      }
      this.lastRead = { how: 'view', why: '' };
      const change =
        view.applied && view.index && fresh ? changeOf(view.applied, view.index, desired, fresh) : undefined;
      if (change !== undefined) return this.applyChange(view, change, desired, options);
      kernel = {
        states: [...view.foreignStates, ...(view.applied?.plan.states.map((s) => s.state) ?? [])],
        policies: [...view.foreignPolicies, ...(view.applied?.plan.policies.map((p) => p.policy) ?? [])],
      };
    }
    const { report, clean } = await this.apply(diffXfrm(kernel, desired, options));
    if (clean) {
      view.applied = indexPlan(desired);
      view.index = indexView(view);
    }
    return report;
  }

  /** Applies a diff; a step that is not clean (a failure, a conflict, something held back) forgets the view. */
  private async apply(diff: XfrmDiff): Promise<{ report: ReconcileReport; clean: boolean }> {
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
    if (!clean) this.invalidate();
    return { report, clean };
  }

  /** A step diffed on the changed objects only; on success the view is updated by the change. */
  private async applyChange(
    view: View,
    change: PlanChange,
    desired: DesiredXfrm,
    options: ReconcileOptions,
  ): Promise<ReconcileReport> {
    this.changeDiffs++;
    const applied = view.applied as IndexedPlan;
    const index = view.index as ViewIndex;
    const diff = diffXfrm(change.kernel, change.fresh, options, {
      owners: planOwners(desired),
      ownerOf: addressOwners(desired),
    });
    diff.unchanged += desired.states.length - change.fresh.states.length;
    diff.unchanged += desired.policies.length - change.fresh.policies.length;
    diff.foreign = { states: view.foreignStates.length, policies: view.foreignPolicies.length };
    const { report, clean } = await this.apply(diff);
    if (!clean) return report;
    // The kernel now holds the view minus our objects the change looked at, plus the fresh objects.
    const reqid = options.reqid ?? KMESH_REQID;
    const blockPriority = options.blockPriority ?? BLOCK_POLICY_PRIORITY;
    for (const s of change.kernel.states) {
      if (!isOurState(s, reqid)) continue;
      index.states.remove(s);
      applied.states.delete(s);
    }
    for (const p of change.kernel.policies) {
      if (!isOurPolicy(p, reqid, blockPriority)) continue;
      index.policies.remove(p);
      applied.policies.delete(p);
    }
    for (const s of change.fresh.states) {
      index.states.add(s.state);
      applied.states.set(s.state, s);
    }
    for (const p of change.fresh.policies) {
      index.policies.add(p.policy);
      applied.policies.set(p.policy, p);
    }
    applied.plan = desired;
    return report;
  }
}

/** A plan against the applied one: its objects not applied yet, and the view's objects they or the dropped touch. */
interface PlanChange {
  fresh: { states: PlannedState[]; policies: PlannedPolicy[] };
  /** The view's objects with the identity of a fresh or a dropped object (the dropped ones among them). */
  kernel: { states: XfrmState[]; policies: XfrmPolicy[] };
}

/**
 * The part of the view a diff against `next` can touch, when that is small and separable; undefined when the
 * whole view must be diffed. Diffing the fresh objects against this part gives the whole diff's ops: every other
 * planned object is in the view as itself (claims it, unchanged), and no other view object shares an identity
 * with a fresh or dropped one. Separable means no object the change touches is one the next plan keeps — else
 * which planned object claims it would depend on order, as in the whole diff, so the whole view is diffed.
 */
function changeOf(
  applied: IndexedPlan,
  index: ViewIndex,
  next: DesiredXfrm,
  fresh: PlanChange['fresh'],
): PlanChange | undefined {
  const kept = {
    states: next.states.length - fresh.states.length,
    policies: next.policies.length - fresh.policies.length,
  };
  const dropped = {
    states: applied.states.size - kept.states,
    policies: applied.policies.size - kept.policies,
  };
  if (fresh.states.length + fresh.policies.length + dropped.states + dropped.policies > MAX_CHANGED_OBJECTS) {
    return undefined;
  }
  // Dropped: applied objects the next plan does not have (it has no object twice: the planner checks that).
  const droppedStates = new Set<PlannedState>();
  const droppedPolicies = new Set<PlannedPolicy>();
  if (dropped.states > 0) {
    const nextStates = new Set(next.states);
    for (const planned of applied.states.values()) if (!nextStates.has(planned)) droppedStates.add(planned);
  }
  if (dropped.policies > 0) {
    const nextPolicies = new Set(next.policies);
    for (const planned of applied.policies.values()) if (!nextPolicies.has(planned)) droppedPolicies.add(planned);
  }
  const states = new Set<XfrmState>();
  const policies = new Set<XfrmPolicy>();
  for (const { state } of droppedStates) {
    states.add(state);
    for (const hit of index.states.hits(state)) states.add(hit);
  }
  for (const { policy } of droppedPolicies) {
    policies.add(policy);
    for (const hit of index.policies.get(policy) ?? []) policies.add(hit);
  }
  for (const s of fresh.states) for (const hit of index.states.hits(s.state)) states.add(hit);
  for (const p of fresh.policies) for (const hit of index.policies.get(p.policy) ?? []) policies.add(hit);
  // Not separable when a touched object is one the next plan keeps (applied, and not dropped).
  for (const s of states) {
    const planned = applied.states.get(s);
    if (planned !== undefined && !droppedStates.has(planned)) return undefined;
  }
  for (const p of policies) {
    const planned = applied.policies.get(p);
    if (planned !== undefined && !droppedPolicies.has(planned)) return undefined;
  }
  return { fresh, kernel: { states: [...states], policies: [...policies] } };
}

/** The view's objects by kernel identity. */
function indexView(view: View): ViewIndex {
  const states = new StateIndex<XfrmState>();
  const policies = new PolicyIndex<XfrmPolicy>();
  for (const s of view.foreignStates) states.add(s);
  for (const p of view.foreignPolicies) policies.add(p);
  for (const s of view.applied?.plan.states ?? []) states.add(s.state);
  for (const p of view.applied?.plan.policies ?? []) policies.add(p.policy);
  return { states, policies };
}

/** The peers a plan serves, in plan order (the whole diff reports on each of them). */
function planOwners(plan: DesiredXfrm): string[] {
  const owners = new Set<string>();
  for (const x of plan.states) owners.add(x.owner);
  for (const x of plan.policies) if (x.owner !== null) owners.add(x.owner);
  return [...owners];
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

/** A plan with each planned object by its kernel object, for same-plan checks without rebuilding them at every step. */
export interface IndexedPlan {
  plan: DesiredXfrm;
  states: Map<XfrmState, PlannedState>;
  policies: Map<XfrmPolicy, PlannedPolicy>;
}

export function indexPlan(plan: DesiredXfrm): IndexedPlan {
  return {
    plan,
    states: new Map(plan.states.map((s) => [s.state, s])),
    policies: new Map(plan.policies.map((p) => [p.policy, p])),
  };
}

/** The objects of `next` that are not objects of `prev` (planned anew, or equal ones planned afresh). */
export function freshObjects(prev: IndexedPlan, next: DesiredXfrm): PlanChange['fresh'] {
  return {
    states: next.states.filter((s) => prev.states.get(s.state) !== s),
    policies: next.policies.filter((p) => prev.policies.get(p.policy) !== p),
  };
}

/**
 * Does `next` plan exactly what `prev` planned? The same objects (the planner's memo hands out the previous
 * plan's objects for unchanged tunnels) or, for the few planned afresh each time (block policies), equal ones
 * with the same owner and role. Costs one set lookup per object; only the objects not shared are compared.
 */
export function samePlan(
  prev: IndexedPlan,
  next: DesiredXfrm,
  fresh = freshObjects(prev, next),
  viewIndex?: ViewIndex,
): boolean {
  if (prev.plan.states.length !== next.states.length || prev.plan.policies.length !== next.policies.length) {
    return false;
  }
  const { states: freshStates, policies: freshPolicies } = fresh;
  if (freshStates.length === 0 && freshPolicies.length === 0) return true;
  // A fresh object with no equal applied one of the same owner under its identity in the view: not the same plan
  // (the common case of a real change, answered in O(fresh) before the pairing below builds sets of the plan).
  if (viewIndex !== undefined) {
    const stateHasTwin = (s: PlannedState): boolean =>
      viewIndex.states.hits(s.state).some((hit) => {
        const was = prev.states.get(hit);
        return was?.owner === s.owner && was.direction === s.direction && statesEqual(hit, s.state);
      });
    const policyHasTwin = (p: PlannedPolicy): boolean =>
      (viewIndex.policies.get(p.policy) ?? []).some((hit) => {
        const was = prev.policies.get(hit);
        return was?.owner === p.owner && was.role === p.role && policiesEqual(hit, p.policy);
      });
    if (!freshStates.every(stateHasTwin) || !freshPolicies.every(policyHasTwin)) return false;
  }
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
