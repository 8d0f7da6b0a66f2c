// How the kernel tells XFRM objects apart, and how we compare their contents. Shared by the reconciler
// and the fake kernel so both follow the same rules:
// - a mark is stored with its value masked: adding 0x1e0/0xff stores (and dumps) 0xe0/0xff, for states and
//   policies alike (checked in the VM by test/fakes/xfrm-contract.ts).
// - a state lives in a bucket (family, dst, spi, proto); a lookup with mark M hits state x in that bucket
//   when (M & x.mark.mask) == x.mark.value. Adding x collides with any state its own value&mask hits.
// - a policy is identified by (dir, selector, stored mark); its selector is compared byte for byte.
// Addresses are compared in canonical form. Descriptions never include key bytes.

import { canonicalIp, canonicalSelectorCidr } from '../model/ip-address.js';
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

function sameMark(a: XfrmMark | undefined, b: XfrmMark | undefined): boolean {
  const ma = storedMark(a);
  const mb = storedMark(b);
  return ma.value === mb.value && ma.mask === mb.mask;
}

/** Full content equality of two states (identity fields, addresses, mode, reqid, AEAD incl. key bytes, marks, ESN). */
export function statesEqual(a: XfrmState, b: XfrmState): boolean {
  if (stateBucket(a) !== stateBucket(b)) return false;
  if (canonicalIp(a.src) !== canonicalIp(b.src) || a.mode !== b.mode || a.reqid !== b.reqid) return false;
  if (!sameMark(a.mark, b.mark) || !sameMark(a.outputMark, b.outputMark)) return false;
  if (a.esn !== b.esn || a.replayWindow !== b.replayWindow) return false;
  if (!a.aead || !b.aead) return a.aead === b.aead;
  return a.aead.name === b.aead.name && a.aead.icvBits === b.aead.icvBits && a.aead.key.equals(b.aead.key);
}

function templatesEqual(a: XfrmTemplate, b: XfrmTemplate): boolean {
  return (
    a.family === b.family &&
    canonicalIp(a.src) === canonicalIp(b.src) &&
    canonicalIp(a.dst) === canonicalIp(b.dst) &&
    a.proto === b.proto &&
    a.mode === b.mode &&
    a.reqid === b.reqid &&
    a.spi >>> 0 === b.spi >>> 0
  );
}

/** Full content equality of two policies (identity, priority, action, templates in order); the kernel index is ignored. */
export function policiesEqual(a: XfrmPolicy, b: XfrmPolicy): boolean {
  return (
    policyIdentity(a) === policyIdentity(b) &&
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

/**
 * States indexed the way the kernel finds them, without scanning whole buckets: all inbound SAs of a node
 * share one (dst, spi, proto) bucket, so a linear scan per lookup would be quadratic in the peer count.
 * Within a bucket, states are grouped by mark mask and then by mark value, so a lookup with mark M only
 * probes value M & mask for each distinct mask (normally one or two).
 */
export class StateIndex<T extends StateKey> {
  private readonly buckets = new Map<string, Map<number, Map<number, T[]>>>();
  private readonly order = new Map<T, number>();
  private nextOrder = 0;

  add(state: T): void {
    const m = storedMark(state.mark);
    let byMask = this.buckets.get(stateBucket(state));
    if (!byMask) {
      byMask = new Map();
      this.buckets.set(stateBucket(state), byMask);
    }
    let byValue = byMask.get(m.mask);
    if (!byValue) {
      byValue = new Map();
      byMask.set(m.mask, byValue);
    }
    const list = byValue.get(m.value);
    if (list) list.push(state);
    else byValue.set(m.value, [state]);
    this.order.set(state, this.nextOrder++);
  }

  remove(state: T): void {
    const m = storedMark(state.mark);
    const byMask = this.buckets.get(stateBucket(state));
    const byValue = byMask?.get(m.mask);
    const list = byValue?.get(m.value);
    if (!byMask || !byValue || !list) return;
    const i = list.indexOf(state);
    if (i < 0) return;
    list.splice(i, 1);
    this.order.delete(state);
    if (list.length === 0) byValue.delete(m.value);
    if (byValue.size === 0) byMask.delete(m.mask);
    if (byMask.size === 0) this.buckets.delete(stateBucket(state));
  }

  /** States a kernel lookup for `key` (its bucket, its mark value&mask) would hit, newest first. */
  hits(key: StateKey): T[] {
    const byMask = this.buckets.get(stateBucket(key));
    if (!byMask) return [];
    const mark = lookupMark(key.mark);
    const found: T[] = [];
    for (const [mask, byValue] of byMask) {
      const list = byValue.get((mark & mask) >>> 0);
      if (list) found.push(...list);
    }
    return found.length > 1 ? found.sort((a, b) => (this.order.get(b) ?? 0) - (this.order.get(a) ?? 0)) : found;
  }

  /** All states, oldest first. */
  all(): T[] {
    return [...this.order.keys()];
  }
}
