// Makes the kernel's XFRM state match a plan: dump the kernel's states and policies, compute the difference
// (xfrm-diff.ts, pure), apply it in its three batches and report per peer. The apply half holds back what depends
// on the kernel's answers: an in/out policy whose SA failed to install waits (DEFERRED), and a peer with any failure
// keeps its stale objects until a later round succeeds. No difference means no writes at all.
import { getSystemErrorName } from 'node:util';
import type { XfrmKernel, XfrmOpResult } from '../xfrm/types.js';
import type { PlannedPolicy, PlannedState } from './planner.js';
import {
  diffXfrm,
  type DesiredXfrm,
  type DiffOp,
  type ReconcileIssue,
  type ReconcileOptions,
  type XfrmDiff,
} from './xfrm-diff.js';
import { describeOp } from '../xfrm/identity.js';

export type { DesiredXfrm, ReconcileIssue, ReconcileOptions } from './xfrm-diff.js';

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
  /**
   * Outcome per peer name (every planned peer, and peers that only had stale objects removed). Read-only: a report
   * may share it with the kept view's applied plan.
   */
  perPeer: ReadonlyMap<string, OwnerOutcome>;
  /** Block policies and stale objects no current peer explains. */
  nodeWide: OwnerOutcome;
  /** Planned objects that are not in the kernel with the planned content afterwards. */
  missingStates: Set<PlannedState>;
  missingPolicies: Set<PlannedPolicy>;
  /** Objects left alone because they are not ours. */
  foreign: { states: number; policies: number };
  results: XfrmOpResult[];
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

/**
 * The outcome of every owner without an issue, shared by all of them (a report lists every peer at every step:
 * 5,000 objects and arrays per step otherwise). Frozen: reports are read, never written to.
 */
export const OK_OUTCOME: OwnerOutcome = Object.freeze({
  ok: true,
  issues: Object.freeze([]) as unknown as ReconcileIssue[],
});

class Outcomes {
  perPeer: Map<string, OwnerOutcome>;
  readonly nodeWide: OwnerOutcome = { ok: true, issues: [] };
  /** `perPeer` is the caller's map of owners listed as OK, shared until an issue is written (then copied). */
  private shared: boolean;

  constructor(listed: ReadonlyMap<string, OwnerOutcome> | undefined) {
    this.perPeer = (listed as Map<string, OwnerOutcome> | undefined) ?? new Map<string, OwnerOutcome>();
    this.shared = listed !== undefined;
  }

  /** Lists an owner (without an issue so far). */
  list(owner: string): void {
    if (!this.perPeer.has(owner)) this.writable().set(owner, OK_OUTCOME);
  }

  issue(owner: string | null, issue: ReconcileIssue): void {
    const outcome = owner === null ? this.nodeWide : this.ownOutcome(owner);
    outcome.ok = false;
    outcome.issues.push(issue);
  }

  /** The owner's outcome as an object of its own (not the shared OK one), to write an issue into. */
  private ownOutcome(owner: string): OwnerOutcome {
    let outcome = this.perPeer.get(owner);
    if (outcome === undefined || outcome === OK_OUTCOME) {
      outcome = { ok: true, issues: [] };
      this.writable().set(owner, outcome);
    }
    return outcome;
  }

  /** `perPeer`, copied first when it is still the caller's shared map. */
  private writable(): Map<string, OwnerOutcome> {
    if (this.shared) {
      this.perPeer = new Map(this.perPeer);
      this.shared = false;
    }
    return this.perPeer;
  }
}

/**
 * Sends a diff's three batches (each one kernel.apply call, skipped when empty) and reports the outcome. `listed`:
 * every owner of `diff.owners` with OK_OUTCOME, when the caller keeps such a map (the kept view keeps one per
 * applied plan): the report then shares it unless an issue is written, instead of listing every peer anew.
 */
export async function applyXfrmDiff(
  kernel: XfrmKernel,
  diff: XfrmDiff,
  listed?: ReadonlyMap<string, OwnerOutcome>,
): Promise<ReconcileReport> {
  const outcomes = new Outcomes(listed);
  if (listed === undefined) for (const owner of diff.owners) outcomes.list(owner);
  for (const { owner, issue } of diff.issues) outcomes.issue(owner, issue);
  const missingStates = new Set<PlannedState>(diff.blockedStates);
  const missingPolicies = new Set<PlannedPolicy>(diff.blockedPolicies);
  const results: XfrmOpResult[] = [];
  const failedOwners = new Set<string | null>();
  let writes = 0;
  let batches = 0;
  let failed = 0;

  const run = async (batch: DiffOp[]): Promise<void> => {
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

  await run(diff.installs);

  const policies: DiffOp[] = [];
  for (const pending of diff.policies) {
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
    policies.push(pending);
  }
  await run(policies);

  const deletions: DiffOp[] = [];
  for (const pending of diff.deletions) {
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
    unchanged: diff.unchanged,
    failed,
    perPeer: outcomes.perPeer,
    nodeWide: outcomes.nodeWide,
    missingStates,
    missingPolicies,
    foreign: diff.foreign,
    results,
  };
}

/** Dumps the kernel, diffs it against the plan and applies the difference. */
export async function reconcile(
  kernel: XfrmKernel,
  desired: DesiredXfrm,
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const states = await kernel.dumpStates();
  const policies = await kernel.dumpPolicies();
  return applyXfrmDiff(kernel, diffXfrm({ states, policies }, desired, options));
}

/** Removes every XFRM object of ours (uninstall): a reconcile towards nothing. Foreign objects stay. */
export function removeOwned(kernel: XfrmKernel, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  return reconcile(kernel, { states: [], policies: [] }, options);
}
