// The kernel identities of a plan's objects, kept between plans: the guard of the invariant the reconciler rests
// on — no two planned objects share a kernel identity (a state's (family, dst, spi, proto, lookup mark), a
// policy's policyIdentity). Adding an object whose identity is taken throws; objects are taken out by reference.
// The planner builds it for a whole plan, or updates the last plan's with the tunnels that changed, so a step that
// changes one peer checks that peer's objects, not the 35,000 of a 5,000-peer cluster. It lives as long as the
// plan, so it is kept small: one map entry per object, keyed by a 32-bit hash of the identity's fields (canonical
// addresses included); objects under the same hash are compared field by field, and the identity text is only
// built for the error.
import { canonicalIp, canonicalSelectorCidr } from '../model/ip-address.js';
import { lookupMark, policyIdentity, samePolicyIdentity, stateBucket } from '../xfrm/identity.js';
import type { XfrmMark, XfrmPolicy, XfrmState } from '../xfrm/types.js';

/** FNV-1a over a string's code units, continuing from `hash`. */
function hashText(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME);
  return h;
}

// The FNV hash of each address text's canonical form, remembered by the text as planned: one map lookup per
// address of each of the 25,000 objects of a whole-plan check, where looking up the canonical form and then its
// hash took two (with the inline mixing below, a warm plan of every peer anew at 5,000 peers: median 44 ms against
// 51; docs/benchmarks.md, ninth session). Addresses and selector CIDRs have maps of their own: a text's canonical
// form depends on which it is. Bounded like the canonical forms' memos.
const TEXT_HASH_LIMIT = 65536;
const ipHashes = new Map<string, number>();
const selectorHashes = new Map<string, number>();

/** The hash of `canonical(text)`, remembered in `hashes` by `text`. */
function canonicalHash(hashes: Map<string, number>, text: string, canonical: (text: string) => string): number {
  let h = hashes.get(text);
  if (h === undefined) {
    if (hashes.size >= TEXT_HASH_LIMIT) hashes.clear();
    h = hashText(SEED, canonical(text));
    hashes.set(text, h);
  }
  return h;
}

// Hashes stay signed 32-bit integers throughout, never unsigned: V8 keeps those as small integers, where a
// value of 2^31 and above (an unsigned hash, a mark mask of 0xffff00ff) is a heap number. A whole-plan check
// runs before V8 optimises this code, and unoptimised code allocates every such intermediate: ~3 MiB per check
// of a 5,000-peer plan, besides the 35,000 map keys themselves. Each field is mixed in as FNV-1a mixes a byte,
// h = (h ^ field) * FNV_PRIME, written out rather than through a helper called per field.
const FNV_PRIME = 0x01000193;
const SEED = 0x811c9dc5 | 0;

/** A mark's bits as the kernel stores and looks them up (value & mask), signed; 0 for no mark. */
function maskedBits(mark: XfrmMark | undefined): number {
  return mark === undefined ? 0 : mark.value & mark.mask;
}

function stateHash(s: XfrmState): number {
  let h = Math.imul(SEED ^ s.family, FNV_PRIME);
  h = Math.imul(h ^ s.proto, FNV_PRIME);
  h = Math.imul(h ^ s.spi, FNV_PRIME);
  h = Math.imul(h ^ maskedBits(s.mark), FNV_PRIME);
  return Math.imul(h ^ canonicalHash(ipHashes, s.dst, canonicalIp), FNV_PRIME);
}

function sameStateIdentity(a: XfrmState, b: XfrmState): boolean {
  return (
    a.family === b.family &&
    a.proto === b.proto &&
    (a.spi | 0) === (b.spi | 0) &&
    maskedBits(a.mark) === maskedBits(b.mark) &&
    canonicalIp(a.dst) === canonicalIp(b.dst)
  );
}

/** A policy direction as a number for the hash. */
const DIR_CODE: Readonly<Record<XfrmPolicy['dir'], number>> = { in: 1, out: 2, fwd: 3 };

function policyHash(p: XfrmPolicy): number {
  const { selector, mark } = p;
  let h = Math.imul(SEED ^ DIR_CODE[p.dir], FNV_PRIME);
  h = Math.imul(h ^ selector.family, FNV_PRIME);
  h = Math.imul(h ^ selector.proto, FNV_PRIME);
  h = Math.imul(h ^ maskedBits(mark), FNV_PRIME);
  h = Math.imul(h ^ (mark === undefined ? 0 : mark.mask), FNV_PRIME);
  h = Math.imul(h ^ canonicalHash(selectorHashes, selector.src, canonicalSelectorCidr), FNV_PRIME);
  return Math.imul(h ^ canonicalHash(selectorHashes, selector.dst, canonicalSelectorCidr), FNV_PRIME);
}

/** Objects by hash: the object itself, or a list when several share the hash (rare). */
export class HashedSet<T extends object> {
  private readonly byHash = new Map<number, T | T[]>();

  constructor(
    private readonly hash: (x: T) => number,
    private readonly same: (a: T, b: T) => boolean,
  ) {}

  /** An object with the identity of `x`, if any. */
  find(x: T): T | undefined {
    const slot = this.byHash.get(this.hash(x));
    if (slot === undefined) return undefined;
    if (!Array.isArray(slot)) return this.same(slot, x) ? slot : undefined;
    return slot.find((y) => this.same(y, x));
  }

  /**
   * Adds `x` unless an object with its identity is in already; that object, or undefined when `x` was added.
   * A lookup and an insertion in one: the identity is hashed once (a whole-plan check hashes 25,000 objects).
   */
  addUnlessTaken(x: T): T | undefined {
    const h = this.hash(x);
    const slot = this.byHash.get(h);
    if (slot === undefined) {
      this.byHash.set(h, x);
      return undefined;
    }
    if (!Array.isArray(slot)) {
      if (this.same(slot, x)) return slot;
      this.byHash.set(h, [slot, x]);
      return undefined;
    }
    const taken = slot.find((y) => this.same(y, x));
    if (taken === undefined) slot.push(x);
    return taken;
  }

  /** Takes out `x` (this very object). */
  remove(x: T): void {
    const h = this.hash(x);
    const slot = this.byHash.get(h);
    if (slot === x) {
      this.byHash.delete(h);
    } else if (Array.isArray(slot)) {
      const i = slot.indexOf(x);
      if (i >= 0) slot.splice(i, 1);
      if (slot.length === 1) this.byHash.set(h, slot[0] as T);
    }
  }
}

export class PlanIdentities {
  private readonly states = new HashedSet<XfrmState>(stateHash, sameStateIdentity);
  private readonly policies = new HashedSet<XfrmPolicy>(policyHash, samePolicyIdentity);

  addState(state: XfrmState): void {
    if (this.states.addUnlessTaken(state)) {
      throw new Error(`planner produced two states with identity ${stateBucket(state)}|${lookupMark(state.mark)}`);
    }
  }

  removeState(state: XfrmState): void {
    this.states.remove(state);
  }

  addPolicy(policy: XfrmPolicy): void {
    if (this.policies.addUnlessTaken(policy)) {
      throw new Error(`planner produced two policies with identity ${policyIdentity(policy)}`);
    }
  }

  removePolicy(policy: XfrmPolicy): void {
    this.policies.remove(policy);
  }
}
