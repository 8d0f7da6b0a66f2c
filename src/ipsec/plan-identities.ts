// The kernel identities of a plan's objects, kept between plans: the guard of the invariant the reconciler rests
// on — no two planned objects share a kernel identity (a state's (family, dst, spi, proto, lookup mark), a
// policy's policyIdentity). Adding an object whose identity is taken throws; objects are taken out by reference.
// The planner builds it for a whole plan, or updates the last plan's with the tunnels that changed, so a step that
// changes one peer checks that peer's objects, not the 25,000 of a 5,000-peer cluster. Found through nested maps
// of canonical addresses and numbers: the identity text is only built for the error.
import { canonicalIp } from '../model/ip-address.js';
import { lookupMark, policyIdentity, PolicyIndex, stateBucket } from '../xfrm/identity.js';
import type { XfrmPolicy, XfrmState } from '../xfrm/types.js';

/** canonical dst -> spi -> lookup mark -> states (each of its own family and proto). */
type StatesByIdentity = Map<string, Map<number, Map<number, XfrmState[]>>>;

export class PlanIdentities {
  private readonly states: StatesByIdentity = new Map();
  private readonly policies = new PolicyIndex<XfrmPolicy>();

  /** The states with the kernel identity of `state` (created empty on demand). */
  private slot(state: XfrmState, create: boolean): XfrmState[] | undefined {
    const dst = canonicalIp(state.dst);
    let bySpi = this.states.get(dst);
    if (!bySpi) {
      if (!create) return undefined;
      this.states.set(dst, (bySpi = new Map<number, Map<number, XfrmState[]>>()));
    }
    let byMark = bySpi.get(state.spi >>> 0);
    if (!byMark) {
      if (!create) return undefined;
      bySpi.set(state.spi >>> 0, (byMark = new Map<number, XfrmState[]>()));
    }
    const mark = lookupMark(state.mark);
    let list = byMark.get(mark);
    if (!list && create) byMark.set(mark, (list = []));
    return list;
  }

  addState(state: XfrmState): void {
    const list = this.slot(state, true) as XfrmState[];
    if (list.some((x) => x.family === state.family && x.proto === state.proto)) {
      throw new Error(`planner produced two states with identity ${stateBucket(state)}|${lookupMark(state.mark)}`);
    }
    list.push(state);
  }

  removeState(state: XfrmState): void {
    const list = this.slot(state, false);
    const i = list?.indexOf(state) ?? -1;
    if (list === undefined || i < 0) return;
    list.splice(i, 1);
    if (list.length > 0) return;
    // Drop the emptied maps, so keys of SPIs and peers long gone do not pile up.
    const dst = canonicalIp(state.dst);
    const bySpi = this.states.get(dst) as Map<number, Map<number, XfrmState[]>>;
    const byMark = bySpi.get(state.spi >>> 0) as Map<number, XfrmState[]>;
    byMark.delete(lookupMark(state.mark));
    if (byMark.size > 0) return;
    bySpi.delete(state.spi >>> 0);
    if (bySpi.size === 0) this.states.delete(dst);
  }

  addPolicy(policy: XfrmPolicy): void {
    if (this.policies.get(policy))
      throw new Error(`planner produced two policies with identity ${policyIdentity(policy)}`);
    this.policies.add(policy);
  }

  removePolicy(policy: XfrmPolicy): void {
    this.policies.remove(policy);
  }
}
