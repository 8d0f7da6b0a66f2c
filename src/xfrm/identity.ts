// How the kernel tells XFRM objects apart, and how we compare their contents. Shared by the reconciler
// and the fake kernel so both follow the same rules:
// - a mark is stored with its value masked: adding 0x1e0/0xff stores (and dumps) 0xe0/0xff, for states and
//   policies alike (checked in the VM by test/fakes/xfrm-contract.ts).
// - a state lives in a bucket (family, dst, spi, proto); a lookup with mark M hits state x in that bucket
//   when (M & x.mark.mask) == x.mark.value. Adding x collides with any state its own value&mask hits.
// - a policy is identified by (dir, selector, stored mark); its selector is compared byte for byte.
// Addresses are compared in canonical form. Descriptions never include key bytes.

import { canonicalIp, canonicalSelectorCidr } from '../model/ip-address.js';
import { exactArray, exactWith } from '../util/exact-array.js';
import type { XfrmMark, XfrmOp, XfrmPolicy, XfrmSelector, XfrmState, XfrmTemplate } from './types.js';

const NO_MARK: XfrmMark = { value: 0, mask: 0 };

export function markOf(mark: XfrmMark | undefined): XfrmMark {
  return mark ? { value: mark.value >>> 0, mask: mark.mask >>> 0 } : NO_MARK;
}

/** The mark value the kernel looks states up with for this add/delete/update message. */
export function lookupMark(mark: XfrmMark | undefined): number {
  const m = markOf(mark);
  return (m.value & m.mask) >>> 0;
}

/** A mark as the kernel stores it (state or policy): the value masked; no mark = 0/0. */
export function storedMark(mark: XfrmMark | undefined): XfrmMark {
  const m = markOf(mark);
  return { value: (m.value & m.mask) >>> 0, mask: m.mask };
}

export function stateBucket(s: Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto'>): string {
  return `${s.family}|${canonicalIp(s.dst)}|${s.spi >>> 0}|${s.proto}`;
}

/** Does a kernel lookup with `mark` (already value&mask) hit `state` (same bucket assumed)? */
export function lookupHits(mark: number, state: Pick<XfrmState, 'mark'>): boolean {
  const m = storedMark(state.mark);
  return (mark & m.mask) >>> 0 === m.value;
}

export function selectorKey(sel: XfrmSelector): string {
  return `${sel.family}|${canonicalSelectorCidr(sel.src)}|${canonicalSelectorCidr(sel.dst)}|${sel.proto}`;
}

export function policyIdentity(p: Pick<XfrmPolicy, 'dir' | 'selector' | 'mark'>): string {
  const m = storedMark(p.mark);
  return `${p.dir}|${selectorKey(p.selector)}|${m.value}/${m.mask}`;
}

type PolicyKey = Pick<XfrmPolicy, 'dir' | 'selector' | 'mark'>;

// Equal texts are equal canonical forms: the common case (the planner's text against the decoder's) then
// costs one short string comparison instead of two memo lookups.
function sameIp(a: string, b: string): boolean {
  return a === b || canonicalIp(a) === canonicalIp(b);
}

function sameSelectorCidr(a: string, b: string): boolean {
  return a === b || canonicalSelectorCidr(a) === canonicalSelectorCidr(b);
}

/** The parts of policyIdentity besides the selector's addresses: direction, family, proto, stored mark. */
function sameIdentityFields(a: PolicyKey, b: PolicyKey): boolean {
  if (a.dir !== b.dir || a.selector.family !== b.selector.family || a.selector.proto !== b.selector.proto) return false;
  const ma = a.mark;
  const mb = b.mark;
  if (((ma?.value ?? 0) & (ma?.mask ?? 0)) >>> 0 !== ((mb?.value ?? 0) & (mb?.mask ?? 0)) >>> 0) return false;
  return (ma?.mask ?? 0) >>> 0 === (mb?.mask ?? 0) >>> 0;
}

/**
 * policyIdentity(a) === policyIdentity(b), field by field: no identity strings built (a diff of thousands of
 * policies would otherwise build, flatten and hash two fresh strings per comparison).
 */
export function samePolicyIdentity(a: PolicyKey, b: PolicyKey): boolean {
  return (
    sameIdentityFields(a, b) &&
    sameSelectorCidr(a.selector.dst, b.selector.dst) &&
    sameSelectorCidr(a.selector.src, b.selector.src)
  );
}

/** The policies of one canonical selector source under a dst: groups of one identity, in insertion order. */
interface SrcGroups<T> {
  src: string;
  groups: T[][];
}

/**
 * Policies grouped by kernel identity (policyIdentity), found without building identity strings: by canonical
 * selector destination, then source (both memoised strings whose hashes V8 keeps), then the few fields left.
 * get() answers what a Map keyed by policyIdentity would, the group in insertion order.
 */
export class PolicyIndex<T extends PolicyKey> {
  /** By canonical dst: the one source's groups (an outbound policy's dst: one peer CIDR), or a map by source. */
  private readonly byDst = new Map<string, SrcGroups<T> | Map<string, T[][]>>();
  private count = 0;

  /** Number of policies added. */
  get size(): number {
    return this.count;
  }

  private groupsOf(dst: string, src: string): T[][] | undefined {
    const at = this.byDst.get(dst);
    if (at === undefined) return undefined;
    if (at instanceof Map) return at.get(src);
    return at.src === src ? at.groups : undefined;
  }

  private setGroups(dst: string, src: string, groups: T[][]): void {
    const at = this.byDst.get(dst);
    if (at === undefined || (!(at instanceof Map) && at.src === src)) this.byDst.set(dst, { src, groups });
    else if (at instanceof Map) at.set(src, groups);
    else
      this.byDst.set(
        dst,
        new Map([
          [at.src, at.groups],
          [src, groups],
        ]),
      );
  }

  add(policy: T): void {
    const dst = canonicalSelectorCidr(policy.selector.dst);
    const src = canonicalSelectorCidr(policy.selector.src);
    const groups = this.groupsOf(dst, src);
    this.count++;
    // Lists built at their exact size (a push onto [] reserves 17 slots): most hold one group of one policy.
    if (!groups) {
      this.setGroups(dst, src, [[policy]]);
      return;
    }
    // Same canonical addresses within a group list: the other fields decide.
    for (const group of groups) {
      if (sameIdentityFields(group[0] as T, policy)) {
        group.push(policy);
        return;
      }
    }
    this.setGroups(dst, src, [...groups, [policy]]);
  }

  /** The policies with the identity of `key`, oldest first; undefined when there are none. */
  get(key: PolicyKey): readonly T[] | undefined {
    const groups = this.groupsOf(canonicalSelectorCidr(key.selector.dst), canonicalSelectorCidr(key.selector.src));
    if (!groups) return undefined;
    for (const group of groups) if (sameIdentityFields(group[0] as T, key)) return group;
    return undefined;
  }
}

function sameMark(a: XfrmMark | undefined, b: XfrmMark | undefined): boolean {
  const ma = storedMark(a);
  const mb = storedMark(b);
  return ma.value === mb.value && ma.mask === mb.mask;
}

/** Full content equality of two states (identity fields, addresses, mode, reqid, AEAD incl. key bytes, marks, ESN). */
export function statesEqual(a: XfrmState, b: XfrmState): boolean {
  // stateBucket(a) === stateBucket(b), without building the two strings.
  if (a.family !== b.family || a.spi >>> 0 !== b.spi >>> 0 || a.proto !== b.proto || !sameIp(a.dst, b.dst))
    return false;
  if (!sameIp(a.src, b.src) || a.mode !== b.mode || a.reqid !== b.reqid) return false;
  if (!sameMark(a.mark, b.mark) || !sameMark(a.outputMark, b.outputMark)) return false;
  if (a.esn !== b.esn || a.replayWindow !== b.replayWindow) return false;
  if (!a.aead || !b.aead) return a.aead === b.aead;
  return a.aead.name === b.aead.name && a.aead.icvBits === b.aead.icvBits && a.aead.key.equals(b.aead.key);
}

function templatesEqual(a: XfrmTemplate, b: XfrmTemplate): boolean {
  return (
    a.family === b.family &&
    sameIp(a.src, b.src) &&
    sameIp(a.dst, b.dst) &&
    a.proto === b.proto &&
    a.mode === b.mode &&
    a.reqid === b.reqid &&
    a.spi >>> 0 === b.spi >>> 0
  );
}

/** Full content equality of two policies (identity, priority, action, templates in order); the kernel index is ignored. */
export function policiesEqual(a: XfrmPolicy, b: XfrmPolicy): boolean {
  return (
    samePolicyIdentity(a, b) &&
    a.priority === b.priority &&
    a.action === b.action &&
    a.templates.length === b.templates.length &&
    a.templates.every((t, i) => {
      const other = b.templates[i];
      return other !== undefined && templatesEqual(t, other);
    })
  );
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function describeMark(mark: XfrmMark | undefined): string {
  return mark ? ` mark ${hex(mark.value)}/${hex(mark.mask)}` : '';
}

/** One line naming the object an op touches (never key material). */
export function describeOp(op: XfrmOp): string {
  switch (op.kind) {
    case 'addState': {
      const s = op.state;
      return `${op.kind} ${s.src}->${s.dst} spi ${hex(s.spi)} reqid ${hex(s.reqid)}${describeMark(s.mark)}`;
    }
    case 'deleteState': {
      const s = op.state;
      return `deleteState dst ${s.dst} spi ${hex(s.spi)}${describeMark(s.mark)}`;
    }
    case 'addPolicy':
    case 'updatePolicy':
    case 'deletePolicy': {
      const p = op.policy;
      return `${op.kind} ${p.dir} ${p.selector.src}->${p.selector.dst}${describeMark(p.mark)}`;
    }
  }
}

type StateKey = Pick<XfrmState, 'family' | 'dst' | 'spi' | 'proto' | 'mark'>;

/** States of one canonical dst: a plain list while few, then by stored mark value with the masks they use. */
interface DstStates<T> {
  /** The states while there are at most LIST_MAX (the usual outbound case: one peer, an SPI or two). */
  list: readonly T[] | undefined;
  /** Past LIST_MAX (every inbound SA of a node shares its dst): stored mark value -> the state(s) with it. */
  byValue: Map<number, T | T[]> | undefined;
  /**
   * With byValue: the distinct stored mark masks seen at this dst (a lookup probes each). A mask whose last state
   * went stays: it costs a probe, and a hit is checked against each state's own mask.
   */
  masks: number[] | undefined;
}

/** A dst's states are kept as a plain list up to this many, scanned on lookup. */
const LIST_MAX = 8;

const maskOf = (s: StateKey): number => (s.mark ? s.mark.mask >>> 0 : 0);
const valueOf = (s: StateKey): number => (s.mark ? (s.mark.value & s.mark.mask) >>> 0 : 0);
const sameBucket = (a: StateKey, b: StateKey, spi: number): boolean =>
  a.spi >>> 0 === spi && a.family === b.family && a.proto === b.proto;

/**
 * States indexed the way the kernel finds them, without scanning whole buckets: all inbound SAs of a node
 * share one (dst, spi, proto) bucket, so a linear scan per lookup would be quadratic in the peer count.
 * States are grouped by canonical dst (a memoised string whose hash V8 keeps), not by a stateBucket() string: a
 * reconcile of thousands of SAs would otherwise build and hash a fresh string per lookup. A dst with few states
 * (an outbound SA's: one peer) keeps an exact-size list, scanned; a dst with many (every inbound SA of the node)
 * keys them by stored mark value, so a lookup with mark M probes M & mask for each distinct mask (one or two) and
 * checks SPI, family, proto and mask on the few it finds. 20,000 SAs of 5,000 peers take ~2 MiB here, where a
 * Map per (dst, spi) and per mask took ~9 MiB.
 */
export class StateIndex<T extends StateKey> {
  private readonly byDst = new Map<string, DstStates<T>>();
  private readonly order = new Map<T, number>();
  private nextOrder = 0;

  /** Adds `state` (this very object; adding it again changes nothing). */
  add(state: T): void {
    if (this.order.has(state)) return;
    const dst = canonicalIp(state.dst);
    const entry = this.byDst.get(dst);
    this.order.set(state, this.nextOrder++);
    if (!entry) {
      this.byDst.set(dst, { list: [state], byValue: undefined, masks: undefined });
      return;
    }
    if (entry.list && entry.list.length < LIST_MAX) {
      entry.list = exactWith(entry.list, state);
      return;
    }
    if (entry.list) {
      entry.byValue = new Map();
      entry.masks = [];
      for (const x of entry.list) addByValue(entry, x);
      entry.list = undefined;
    }
    addByValue(entry, state);
  }

  /** Takes `state` (this very object) out; a no-op when it is not in the index. */
  remove(state: T): void {
    const dst = canonicalIp(state.dst);
    const entry = this.byDst.get(dst);
    if (!entry || !this.order.delete(state)) return;
    if (entry.list) {
      entry.list = exactArray(entry.list.filter((x) => x !== state));
      if (entry.list.length === 0) this.byDst.delete(dst);
      return;
    }
    const byValue = entry.byValue as Map<number, T | T[]>;
    const value = valueOf(state);
    const at = byValue.get(value);
    if (Array.isArray(at)) {
      at.splice(at.indexOf(state), 1);
      if (at.length === 1) byValue.set(value, at[0] as T);
    } else byValue.delete(value);
    if (byValue.size === 0) this.byDst.delete(dst);
  }

  /** States a kernel lookup for `key` (its bucket, its mark value&mask) would hit, newest first. */
  hits(key: StateKey): T[] {
    const entry = this.byDst.get(canonicalIp(key.dst));
    if (!entry) return [];
    const spi = key.spi >>> 0;
    const mark = lookupMark(key.mark);
    const found: T[] = [];
    if (entry.list) {
      for (const s of entry.list) if (sameBucket(s, key, spi) && lookupHits(mark, s)) found.push(s);
    } else {
      const byValue = entry.byValue as Map<number, T | T[]>;
      for (const mask of entry.masks as number[]) {
        const at = byValue.get((mark & mask) >>> 0);
        if (at === undefined) continue;
        // Each state has one mask: probing with its own finds it once.
        if (!Array.isArray(at)) {
          if (sameBucket(at, key, spi) && maskOf(at) === mask) found.push(at);
        } else for (const s of at) if (sameBucket(s, key, spi) && maskOf(s) === mask) found.push(s);
      }
    }
    return found.length > 1 ? found.sort((a, b) => (this.order.get(b) ?? 0) - (this.order.get(a) ?? 0)) : found;
  }

  /** All states, oldest first. */
  all(): T[] {
    return [...this.order.keys()];
  }
}

function addByValue<T extends StateKey>(entry: DstStates<T>, state: T): void {
  const masks = entry.masks as number[];
  const mask = maskOf(state);
  if (!masks.includes(mask)) masks.push(mask);
  const byValue = entry.byValue as Map<number, T | T[]>;
  const value = valueOf(state);
  const at = byValue.get(value);
  if (at === undefined) byValue.set(value, state);
  else if (Array.isArray(at)) at.push(state);
  else byValue.set(value, [at, state]);
}
