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
import { applyXfrmDiff, OK_OUTCOME, type OwnerOutcome, type ReconcileReport } from './reconciler.js';
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
  /** The foreign objects by kernel identity (built when a step first needs it). */
  foreignIndex?: ObjectIndex;
  /** The plan whose every object is in the kernel with its content; undefined right after a dump. */
  applied?: IndexedPlan;
}

/** Objects by kernel identity. */
interface ObjectIndex {
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
      const applied = view.applied as IndexedPlan;
      const change = planChange(applied, desired);
      if (samePlan(applied, desired, change)) {
        this.lastRead = { how: 'same-plan', why: '' };
        swapIn(applied, desired, change);
        return unchangedReport(applied, desired, {
          states: view.foreignStates.length,
          policies: view.foreignPolicies.length,
        });
      }
      this.lastRead = { how: 'view', why: '' };
      const size =
        change.fresh.states.length +
        change.fresh.policies.length +
        change.dropped.states.length +
        change.dropped.policies.length;
      if (size <= MAX_CHANGED_OBJECTS) return this.applyChange(view, change, desired, options);
      kernel = {
        states: [...view.foreignStates, ...applied.plan.states.map((s) => s.state)],
        policies: [...view.foreignPolicies, ...applied.plan.policies.map((p) => p.policy)],
      };
    }
    const { report, clean } = await this.apply(diffXfrm(kernel, desired, options));
    if (clean) view.applied = indexPlan(desired);
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

  /**
   * A step diffed on the changed objects only: the fresh objects against the part of the kernel they or the
   * dropped ones touch — the dropped objects, and the foreign objects under the identity of either. That gives the
   * whole diff's ops: every other planned object is in the kernel as itself (the whole diff finds it unchanged),
   * and no other object shares an identity with a fresh or dropped one (the next plan is distinct — the planner
   * checks it — so a fresh object cannot take a kept one's identity). On success the view takes the change.
   */
  private async applyChange(
    view: View,
    change: PlanChange,
    desired: DesiredXfrm,
    options: ReconcileOptions,
  ): Promise<ReconcileReport> {
    this.changeDiffs++;
    view.foreignIndex ??= indexObjects(view.foreignStates, view.foreignPolicies);
    const foreign = view.foreignIndex;
    const states = new Set<XfrmState>();
    const policies = new Set<XfrmPolicy>();
    for (const { state } of change.dropped.states) {
      states.add(state);
      for (const hit of foreign.states.hits(state)) states.add(hit);
    }
    for (const { policy } of change.dropped.policies) {
      policies.add(policy);
      for (const hit of foreign.policies.get(policy) ?? []) policies.add(hit);
    }
    // (A fresh object with a dropped one's identity finds it among the dropped, all of which are in already.)
    for (const { state } of change.fresh.states) for (const hit of foreign.states.hits(state)) states.add(hit);
    for (const { policy } of change.fresh.policies) {
      for (const hit of foreign.policies.get(policy) ?? []) policies.add(hit);
    }
    const diff = diffXfrm({ states: [...states], policies: [...policies] }, change.fresh, options, {
      owners: planOwners(desired),
      ownerOf: addressOwners(desired),
    });
    diff.unchanged += desired.states.length - change.fresh.states.length;
    diff.unchanged += desired.policies.length - change.fresh.policies.length;
    diff.foreign = { states: view.foreignStates.length, policies: view.foreignPolicies.length };
    const { report, clean } = await this.apply(diff);
    if (clean) swapIn(view.applied as IndexedPlan, desired, change);
    return report;
  }
}

/** A plan against the applied one: its objects not applied yet, and the applied objects it does not have. */
export interface PlanChange {
  fresh: { states: PlannedState[]; policies: PlannedPolicy[] };
  dropped: { states: PlannedState[]; policies: PlannedPolicy[] };
}

/**
 * What `next` changes against the applied plan `prev`, by object. O(plan) set lookups; the sets of `next` are only
 * built when something was dropped. `next` has no object twice (the planner checks its plans are distinct).
 */
export function planChange(prev: IndexedPlan, next: DesiredXfrm): PlanChange {
  // Objects of `next` the applied plan holds are stamped with this call's epoch, so the dropped ones are those
  // left with an older stamp: no set of `next` is built (at 5,000 peers two sets of 25,000 objects per step).
  // (forEach, not for-of over entries: that builds a [key, value] pair per entry.)
  const epoch = ++prev.epoch;
  const fresh = {
    states: stampOrFresh(prev.states, next.states, epoch),
    policies: stampOrFresh(prev.policies, next.policies, epoch),
  };
  const dropped: PlanChange['dropped'] = { states: [], policies: [] };
  if (prev.states.size > next.states.length - fresh.states.length) {
    prev.states.forEach((seen, s) => {
      if (seen !== epoch) dropped.states.push(s);
    });
  }
  if (prev.policies.size > next.policies.length - fresh.policies.length) {
    prev.policies.forEach((seen, p) => {
      if (seen !== epoch) dropped.policies.push(p);
    });
  }
  return { fresh, dropped };
}

/** The objects of `next` not in `applied`; those in it are stamped with `epoch`. */
function stampOrFresh<T>(applied: Map<T, number>, next: readonly T[], epoch: number): T[] {
  const fresh: T[] = [];
  for (const x of next) {
    if (applied.has(x)) applied.set(x, epoch);
    else fresh.push(x);
  }
  return fresh;
}

/** The applied plan after `next` was applied: the dropped objects out, the fresh ones in. */
function swapIn(applied: IndexedPlan, next: DesiredXfrm, change: PlanChange): void {
  const { fresh, dropped } = change;
  // Objects in or out may bring owners in or take them out: the listed outcomes are made again when needed.
  if (fresh.states.length + fresh.policies.length + dropped.states.length + dropped.policies.length > 0) {
    applied.unchangedOutcomes = undefined;
  }
  for (const s of change.dropped.states) applied.states.delete(s);
  for (const p of change.dropped.policies) applied.policies.delete(p);
  for (const s of change.fresh.states) applied.states.set(s, applied.epoch);
  for (const p of change.fresh.policies) applied.policies.set(p, applied.epoch);
  applied.plan = next;
}

function indexObjects(states: readonly XfrmState[], policies: readonly XfrmPolicy[]): ObjectIndex {
  const index: ObjectIndex = { states: new StateIndex<XfrmState>(), policies: new PolicyIndex<XfrmPolicy>() };
  for (const s of states) index.states.add(s);
  for (const p of policies) index.policies.add(p);
  return index;
}

/** The peers a plan serves, in plan order (the whole diff reports on each of them). */
function planOwners(plan: DesiredXfrm): string[] {
  const owners = new Set<string>();
  for (const x of plan.states) owners.add(x.owner);
  for (const x of plan.policies) if (x.owner !== null) owners.add(x.owner);
  return [...owners];
}

/** The report of a reconcile that found every planned object in place and nothing stale. */
function unchangedReport(
  applied: IndexedPlan,
  desired: DesiredXfrm,
  foreign: { states: number; policies: number },
): ReconcileReport {
  // The owners of a plan equal to the applied one are the applied plan's: their outcomes are listed once per
  // applied plan (a fresh map of 5,000 peers per resync otherwise). Reports are read, never written to.
  let perPeer = applied.unchangedOutcomes;
  if (perPeer === undefined) {
    perPeer = new Map<string, OwnerOutcome>();
    for (const x of desired.states) if (!perPeer.has(x.owner)) perPeer.set(x.owner, OK_OUTCOME);
    for (const x of desired.policies) if (x.owner !== null && !perPeer.has(x.owner)) perPeer.set(x.owner, OK_OUTCOME);
    applied.unchangedOutcomes = perPeer;
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

/**
 * A plan with its objects in maps, for same-plan checks without rebuilding them at every step. Each object maps to
 * the epoch of the last planChange that found it in the next plan (planChange's scratch, nothing else).
 */
export interface IndexedPlan {
  plan: DesiredXfrm;
  states: Map<PlannedState, number>;
  policies: Map<PlannedPolicy, number>;
  epoch: number;
  /** The per-peer outcomes of a step that found this plan unchanged (all OK), once one did. */
  unchangedOutcomes?: Map<string, OwnerOutcome>;
}

export function indexPlan(plan: DesiredXfrm): IndexedPlan {
  const stamped = <T>(list: readonly T[]): Map<T, number> => {
    const map = new Map<T, number>();
    for (const x of list) map.set(x, 0);
    return map;
  };
  return { plan, states: stamped(plan.states), policies: stamped(plan.policies), epoch: 0 };
}

/**
 * Does `next` plan exactly what `prev` planned? The same objects (the planner's memo hands out the previous
 * plan's objects for unchanged tunnels) or, for any planned afresh, equal ones with the same owner and role in
 * place of dropped ones. Costs one set lookup per object; only the changed objects are compared.
 */
export function samePlan(prev: IndexedPlan, next: DesiredXfrm, change = planChange(prev, next)): boolean {
  const { fresh, dropped } = change;
  if (fresh.states.length !== dropped.states.length || fresh.policies.length !== dropped.policies.length) {
    return false;
  }
  if (fresh.states.length === 0 && fresh.policies.length === 0) return true;
  const gone = indexObjects(
    dropped.states.map((s) => s.state),
    dropped.policies.map((p) => p.policy),
  );
  const wasState = new Map(dropped.states.map((s) => [s.state, s]));
  const wasPolicy = new Map(dropped.policies.map((p) => [p.policy, p]));
  const paired = new Set<XfrmState | XfrmPolicy>();
  const stateTwin = (s: PlannedState): boolean => {
    const twin = gone.states.hits(s.state).find((hit) => {
      const was = wasState.get(hit);
      return !paired.has(hit) && was?.owner === s.owner && was.direction === s.direction && statesEqual(hit, s.state);
    });
    if (twin !== undefined) paired.add(twin);
    return twin !== undefined;
  };
  const policyTwin = (p: PlannedPolicy): boolean => {
    const twin = (gone.policies.get(p.policy) ?? []).find((hit) => {
      const was = wasPolicy.get(hit);
      return !paired.has(hit) && was?.owner === p.owner && was.role === p.role && policiesEqual(hit, p.policy);
    });
    if (twin !== undefined) paired.add(twin);
    return twin !== undefined;
  };
  return fresh.states.every(stateTwin) && fresh.policies.every(policyTwin);
}
