// What makes an XFRM object ours, and the constants that make it recognisable. We never flush and never
// touch anything these predicates reject: other IPsec tools on the host keep their states and policies.
//
// A state is ours iff it is ESP with our reqid and a mark whose type byte (fully masked) is 0xe0 or 0xd0.
// A policy is ours iff any template carries our reqid, or it is our catch-all block policy
// (action block, mark 0xe0/0xff, our block priority).

import { MARK_DECRYPT, MARK_ENCRYPT, MARK_TYPE_MASK } from '../model/marks.js';
import type { XfrmPolicy, XfrmState } from '../xfrm/types.js';

/** reqid of every SA and template we install ("km"). */
export const KMESH_REQID = 0x6b6d;
export const IPPROTO_ESP = 50;
/**
 * Linux policy priority: lower value wins. Peer policies win over the catch-all block policy, which only
 * catches encrypt-marked packets no peer policy claims.
 */
export const PEER_POLICY_PRIORITY = 0x6b6d;
export const BLOCK_POLICY_PRIORITY = 0x6b6e;
/** Anti-replay window (packets) on all our SAs, with extended sequence numbers. */
export const DEFAULT_REPLAY_WINDOW = 1024;

export function isOurState(state: XfrmState, reqid = KMESH_REQID): boolean {
  if (state.proto !== IPPROTO_ESP || state.reqid !== reqid || !state.mark) return false;
  if ((state.mark.mask & MARK_TYPE_MASK) !== MARK_TYPE_MASK) return false;
  const type = state.mark.value & MARK_TYPE_MASK;
  return type === MARK_ENCRYPT || type === MARK_DECRYPT;
}

function isOurBlockPolicy(policy: XfrmPolicy, blockPriority = BLOCK_POLICY_PRIORITY): boolean {
  return (
    policy.action === 'block' &&
    policy.priority === blockPriority &&
    policy.mark?.value === MARK_ENCRYPT &&
    policy.mark.mask === MARK_TYPE_MASK
  );
}

export function isOurPolicy(policy: XfrmPolicy, reqid = KMESH_REQID, blockPriority = BLOCK_POLICY_PRIORITY): boolean {
  return policy.templates.some((t) => t.reqid === reqid) || isOurBlockPolicy(policy, blockPriority);
}
