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
        swapIn(applied, desired, change, ownerShift(applied, change));
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
  private async apply(
    diff: XfrmDiff,
    listed?: ReadonlyMap<string, OwnerOutcome>,
  ): Promise<{ report: ReconcileReport; clean: boolean }> {
    let report: ReconcileReport;
    try {
      report = await applyXfrmDiff(this.kernel, diff, listed);
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
    // The plan's owners, and the report's list of them: the applied plan's when the change leaves the same peers
    // owning objects (a step that changes a peer's objects), so a step does not list 5,000 peers anew.
    const applied = view.applied as IndexedPlan;
    const shift = ownerShift(applied, change);
    const owners = shift.sameOwners ? ownersOf(applied) : undefined;
    const diff = diffXfrm({ states: [...states], policies: [...policies] }, change.fresh, options, {
      owners: owners?.list ?? planOwners(desired),
      ownerOf: addressOwners(desired),
    });
    diff.unchanged += desired.states.length - change.fresh.states.length;
    diff.unchanged += desired.policies.length - change.fresh.policies.length;
    diff.foreign = { states: view.foreignStates.length, policies: view.foreignPolicies.length };
    const { report, clean } = await this.apply(diff, owners?.listed);
    if (clean) swapIn(applied, desired, change, shift);
    return report;
  }
}

/** A plan against the applied one: its objects not applied yet, and the applied objects it does not have. */
export interface PlanChange {
  fresh: { states: PlannedState[]; policies: PlannedPolicy[] };
  dropped: { states: PlannedState[]; policies: PlannedPolicy[] };
}

/**
 * What `next` changes against the applied plan `prev`, by object. `next` has no object twice (the planner checks its
 * plans are distinct), and neither has the applied plan.
 */
export function planChange(prev: IndexedPlan, next: DesiredXfrm): PlanChange {
  const epoch = ++prev.epoch;
  const states = changedObjects(prev.states, prev.plan.states, next.states, epoch);
  const policies = changedObjects(prev.policies, prev.plan.policies, next.policies, epoch);
  return {
    fresh: { states: states.fresh, policies: policies.fresh },
    dropped: { states: states.dropped, policies: policies.dropped },
  };
}

/**
 * The objects of `now` not in `applied` (the objects of `was`, the applied plan's list), and those of `was` not in
 * `now`. The planner hands out the last plan's very objects for unchanged peers, in the same places, so the lists
 * share a long head and tail: those are compared by reference, and only the part between them is looked up in
 * `applied` (at 5,000 peers, ~25,000 map lookups per step otherwise). Objects of that part of `now` held in
 * `applied` are stamped with `epoch`, so the dropped ones are those of that part of `was` left with an older stamp.
 * (No object is in the head or tail of one list and in the middle of the other: it would be twice in the other.)
 */
function changedObjects<T>(
  applied: Map<T, number>,
  was: readonly T[],
  now: readonly T[],
  epoch: number,
): { fresh: T[]; dropped: T[] } {
  const shorter = Math.min(was.length, now.length);
  let head = 0;
  while (head < shorter && was[head] === now[head]) head++;
  let wasEnd = was.length;
  let nowEnd = now.length;
  while (wasEnd > head && nowEnd > head && was[wasEnd - 1] === now[nowEnd - 1]) {
    wasEnd--;
    nowEnd--;
  }
  const fresh: T[] = [];
  for (let i = head; i < nowEnd; i++) {
    const x = now[i] as T;
    if (applied.has(x)) applied.set(x, epoch);
    else fresh.push(x);
  }
  const dropped: T[] = [];
  for (let i = head; i < wasEnd; i++) {
    const x = was[i] as T;
    if (applied.get(x) !== epoch) dropped.push(x);
  }
  return { fresh, dropped };
}

/**
 * The applied plan after `next` was applied: the dropped objects out, the fresh ones in, and the counts per owner
 * moved by `shift` (ownerShift of this change).
 */
function swapIn(applied: IndexedPlan, next: DesiredXfrm, change: PlanChange, shift: OwnerShift): void {
  // Objects in or out may bring owners in or take them out: the owners are listed again when needed.
  if (!shift.sameOwners) applied.owners = undefined;
  shift.deltas.forEach((delta, owner) => {
    const count = (shift.owned.get(owner) ?? 0) + delta;
    if (count === 0) shift.owned.delete(owner);
    else shift.owned.set(owner, count);
  });
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

/** The applied plan's owners in plan order, each listed with OK_OUTCOME (made once per applied plan's owners). */
function ownersOf(applied: IndexedPlan): { list: string[]; listed: Map<string, OwnerOutcome> } {
  if (applied.owners === undefined) {
    const list = planOwners(applied.plan);
    const listed = new Map<string, OwnerOutcome>();
    for (let i = 0; i < list.length; i++) listed.set(list[i] as string, OK_OUTCOME);
    applied.owners = { list, listed };
  }
  return applied.owners;
}

/** What a change does to the applied plan's objects per owner (node-wide objects not counted). */
interface OwnerShift {
  /** The applied plan's counts (IndexedPlan.owned). */
  owned: Map<string, number>;
  /** Per owner, the objects the change brings in less those it takes out. */
  deltas: Map<string, number>;
  /**
   * The plan after the change has the applied plan's owners. Then the applied plan's list of them serves (in its
   * order, which is the new plan's too: the planner lays peers out in name order).
   */
  sameOwners: boolean;
}

/**
 * `change`'s OwnerShift: O(change), once the applied plan's objects are counted per owner (once per applied plan;
 * swapIn keeps the counts up to date).
 */
function ownerShift(applied: IndexedPlan, change: PlanChange): OwnerShift {
  const owned = (applied.owned ??= ownedCounts(applied.plan));
  const deltas = new Map<string, number>();
  const add = (owner: string | null, by: number): void => {
    if (owner !== null) deltas.set(owner, (deltas.get(owner) ?? 0) + by);
  };
  for (const s of change.fresh.states) add(s.owner, 1);
  for (const p of change.fresh.policies) add(p.owner, 1);
  for (const s of change.dropped.states) add(s.owner, -1);
  for (const p of change.dropped.policies) add(p.owner, -1);
  let sameOwners = true;
  deltas.forEach((delta, owner) => {
    const before = owned.get(owner) ?? 0;
    if ((before === 0) !== (before + delta === 0)) sameOwners = false;
  });
  return { owned, deltas, sameOwners };
}

/** The planned objects of each owner (node-wide objects not counted). */
function ownedCounts(plan: DesiredXfrm): Map<string, number> {
  const owned = new Map<string, number>();
  for (const x of plan.states) owned.set(x.owner, (owned.get(x.owner) ?? 0) + 1);
  for (const x of plan.policies) if (x.owner !== null) owned.set(x.owner, (owned.get(x.owner) ?? 0) + 1);
  return owned;
}

/** The report of a reconcile that found every planned object in place and nothing stale. */
function unchangedReport(
  applied: IndexedPlan,
  desired: DesiredXfrm,
  foreign: { states: number; policies: number },
): ReconcileReport {
  // The owners of a plan equal to the applied one are the applied plan's: their outcomes are listed once per
  // applied plan's owners (a fresh map of 5,000 peers per resync otherwise). Reports are read, never written to.
  const perPeer = ownersOf(applied).listed;
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
 * A plan with its objects in maps, for same-plan checks without rebuilding them at every step. The maps hold the
 * objects of `plan`'s lists, no other (planChange reads both). Each object maps to the epoch of the last planChange
 * that looked it up and found it in the next plan (planChange's scratch, nothing else).
 */
export interface IndexedPlan {
  plan: DesiredXfrm;
  states: Map<PlannedState, number>;
  policies: Map<PlannedPolicy, number>;
  epoch: number;
  /** The plan's owners in plan order, and each listed with OK_OUTCOME, once a step needed them. */
  owners?: { list: string[]; listed: Map<string, OwnerOutcome> };
  /** The plan's objects per owner, once a step needed them (whether a change brings owners in or out). */
  owned?: Map<string, number>;
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
