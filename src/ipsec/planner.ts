// Desired XFRM state of one node, as a pure function of (local node, peers, held keys, peer ids).
// Per peer P, per address family shared with the local node L, per held SPI S:
//   outbound SA  L.ip -> P.ip  spi S, mark 0xe0/0xff, key K(L->P) under the PSK of S
//   inbound SA   P.ip -> L.ip  spi S, mark id(P)<<16|0xd0 / 0xffff00ff, output-mark 0xd0 / 0xffff00ff, key K(P->L)
// and, independent of S:
//   out policy   any -> P.podCIDR, mark 0xe0/0xff, template L.ip -> P.ip with the SPI we send to P with
//   in + fwd     P.podCIDR -> L.podCIDR, mark 0xd0/0xff, template P.ip -> L.ip with spi 0 (any held SPI)
// plus one catch-all block policy per local family for encrypt-marked packets no peer policy claims.
// All SAs are ESP tunnel mode, rfc4106(gcm(aes)), ESN with a replay window, reqid KMESH_REQID.

import type { KeyEndpoint } from '../keys/derive.js';
import { requestPairKey, settlePairKeys } from './pair-key-batch.js';
import type { KeyHistory } from '../keys/key-history.js';
import { inboundEspMark, MARK_DECRYPT, MARK_ENCRYPT, MARK_INBOUND_MASK, MARK_TYPE_MASK } from '../model/marks.js';
import type { IpsecKey, NodeInfo } from '../model/node.js';
import { sameItems } from '../model/same-items.js';
import { anyCidr, parseCidrLenient, parseIp, type Family } from '../model/ip-address.js';
import type { XfrmMark, XfrmPolicy, XfrmSelector, XfrmState, XfrmTemplate } from '../xfrm/types.js';
import {
  BLOCK_POLICY_PRIORITY,
  DEFAULT_REPLAY_WINDOW,
  IPPROTO_ESP,
  KMESH_REQID,
  PEER_POLICY_PRIORITY,
} from './ownership.js';
import { screenPeers, type PeerRejection, type ScreenedPeer, type Tunnel } from './peer-screen.js';
import { chooseSendSpi, type SendChoice } from './rotation.js';
import { TunnelIdentities } from './tunnel-identities.js';
import { sortByName } from '../util/name-order.js';

export interface PlannerOptions {
  reqid: number;
  replayWindow: number;
  peerPriority: number;
  blockPriority: number;
}

export const DEFAULT_PLANNER_OPTIONS: PlannerOptions = {
  reqid: KMESH_REQID,
  replayWindow: DEFAULT_REPLAY_WINDOW,
  peerPriority: PEER_POLICY_PRIORITY,
  blockPriority: BLOCK_POLICY_PRIORITY,
};

export interface PlannedState {
  /** Peer name the SA serves. */
  owner: string;
  direction: 'inbound' | 'outbound';
  state: XfrmState;
}

export interface PlannedPolicy {
  /** Peer name, or null for node-wide policies (block). */
  owner: string | null;
  role: 'out' | 'in' | 'fwd' | 'block';
  policy: XfrmPolicy;
  /** The outbound SA an out policy's template points at; it must be present before the policy is switched to it. */
  requires?: PlannedState;
}

export interface PeerPlan {
  name: string;
  /** The SPI the peer advertises. */
  advertisedSpi: number;
  /** True when SAs and policies were planned for this peer. */
  planned: boolean;
  peerId?: number;
  /** SPI in our out-policy templates towards this peer. */
  sendSpi?: number;
  tunnels: Tunnel[];
  /** Why the peer was skipped, or notes about a partial plan. */
  reasons: string[];
}

export interface XfrmPlan {
  states: PlannedState[];
  policies: PlannedPolicy[];
  peers: PeerPlan[];
  /** Underlay address -> peer id, for the decrypt program's peer map. */
  peerAddressIds: { address: string; peerId: number }[];
}

export interface ScreenedPlanInput {
  local: NodeInfo;
  accepted: readonly ScreenedPeer[];
  rejected: readonly PeerRejection[];
  /** Keys whose SAs must exist (the history minus retired SPIs). */
  keys: KeyHistory;
  peerIds: ReadonlyMap<string, number>;
  options?: Partial<PlannerOptions>;
}

export interface PlanInput {
  local: NodeInfo;
  peers: readonly NodeInfo[];
  keys: KeyHistory;
  peerIds: ReadonlyMap<string, number>;
  options?: Partial<PlannerOptions>;
}

// Marks shared by every object planned with them (planned objects are never written to): at 5,000 peers that is
// 25,000 fewer objects kept for as long as the plan is.
const ENCRYPT_MARK: XfrmMark = Object.freeze({ value: MARK_ENCRYPT, mask: MARK_TYPE_MASK });
const DECRYPTED_MARK: XfrmMark = Object.freeze({ value: MARK_DECRYPT, mask: MARK_TYPE_MASK });
const DECRYPTED_OUTPUT_MARK: XfrmMark = Object.freeze({ value: MARK_DECRYPT, mask: MARK_INBOUND_MASK });

/** Screens the peers (see peer-screen.ts) and plans for the accepted ones. */
export function planXfrm(input: PlanInput): XfrmPlan {
  const { accepted, rejected } = screenPeers(input.local, input.peers);
  return planScreened({ ...input, accepted, rejected });
}

function localFamilies(local: NodeInfo): Family[] {
  const families = new Set<Family>();
  for (const a of local.addresses) {
    const f = parseIp(a)?.family;
    if (f) families.add(f);
  }
  for (const c of local.podCIDRs) {
    const f = parseCidrLenient(c)?.family;
    if (f) families.add(f);
  }
  return [...families].sort();
}

export function planScreened(input: ScreenedPlanInput): XfrmPlan {
  const opts = { ...DEFAULT_PLANNER_OPTIONS, ...input.options };
  const { local } = input;
  const keys = input.keys.keys();
  const held = keys.map((k) => k.spi);
  // Filled in place from the sizes of the last plan, then cut to their length: grown by push, the four arrays of a
  // 5,000-peer plan were copied ~10 times each at every step (~0.7 MiB of garbage per step).
  const states = new Array<PlannedState>(lastPlanSizes.states);
  const policies = new Array<PlannedPolicy>(lastPlanSizes.policies);
  const peers = new Array<PeerPlan>(lastPlanSizes.peers);
  const peerAddressIds = new Array<{ address: string; peerId: number }>(lastPlanSizes.addressIds);
  let nStates = 0;
  let nPolicies = 0;
  let nPeers = 0;
  let nAddressIds = 0;

  const families = localFamilies(local);
  for (const family of families) policies[nPolicies++] = blockPolicy(family, opts.blockPriority);
  lastBlockPolicies = blockPolicies;
  blockPolicies = [];

  for (const { name, advertisedSpi, reason } of input.rejected) {
    peers[nPeers++] = { name, advertisedSpi, planned: false, tunnels: [], reasons: [reason] };
  }

  /** Tunnels whose objects were planned now, not reused from the last plan. */
  const fresh: TunnelPlan[] = [];
  const sameContext = sameInputs(lastContext, local, keys, opts);
  // Until this plan is made, the memo below holds a mix of the last plan and this one: no peer is reused whole,
  // and the next plan checks every object, if this one does not finish.
  lastContext = undefined;
  const known = lastIdentities;
  lastIdentities = undefined;
  const epoch = ++planEpoch;
  // With no identities of the last plan to update (a first plan, or after a failed check), every tunnel is checked
  // (tunnel-identities.ts): as it is put in the plan, not in a pass over the whole plan afterwards. The check is the
  // same; run beside the planning, its code warms up with the planning's instead of starting cold in a loop of its
  // own (a first 5,000-peer plan: ~30 ms in that loop). A clash then fails the plan where it is found.
  const whole = known === undefined ? new TunnelIdentities() : undefined;
  if (whole !== undefined) {
    distinctChecks++;
    for (let i = 0; i < nPolicies; i++) whole.addBlock((policies[i] as PlannedPolicy).policy);
  }
  /** The memos of the last plan that this plan replaced (their tunnels not reused are gone). */
  const replaced: PeerPlanMemo[] = [];
  // With no memo (a first plan, or after a failed one) no peer is looked up in it, nor pruned from it afterwards.
  const memoEmpty = peerPlans.size === 0;
  // The SPI each advertised SPI is sent with, chosen once per plan (peers mostly advertise one or two SPIs); the
  // choices are shared by the peers' plans (never written to).
  const sendChoices = new Map<number, SendChoice | undefined>();
  try {
    for (let a = 0; a < input.accepted.length; a++) {
      const screened = input.accepted[a] as ScreenedPeer;
      const { node: peer, tunnels, notes } = screened;
      const peerIdNow = input.peerIds.get(peer.name);
      // A peer whose screening, peer id and everything node-wide are as in the last plan: its plan as it was.
      const memo = memoEmpty ? undefined : peerPlans.get(peer.name);
      if (sameContext && memo !== undefined && memo.screened === screened && memo.peerId === peerIdNow) {
        memo.seen = epoch;
        peers[nPeers++] = memo.plan;
        // Indexed loops: this runs for every unchanged peer at every step, and for-of here left an array
        // iterator and its results behind per loop (~0.5 MiB of garbage per step at 5,000 peers).
        for (let i = 0; i < memo.tunnels.length; i++) {
          const t = memo.tunnels[i] as TunnelPlan;
          t.usedIn = epoch;
          if (whole !== undefined) whole.add(t);
          nStates = putAll(states, nStates, t.states);
          nPolicies = putAll(policies, nPolicies, t.policies);
        }
        nAddressIds = putAll(peerAddressIds, nAddressIds, memo.addressIds);
        continue;
      }
      const peerId = peerIdNow;
      let send: SendChoice | undefined;
      if (peerId !== undefined) {
        send = sendChoices.get(peer.spi);
        if (send === undefined && !sendChoices.has(peer.spi)) {
          send = chooseSendSpi(peer.spi, held);
          sendChoices.set(peer.spi, send);
        }
      }
      const plan = peerPlan(peer, peerId, send, tunnels, notes);
      const peerMemo: PeerPlanMemo = {
        screened,
        peerId,
        plan,
        tunnels: NO_TUNNELS,
        addressIds: NO_ADDRESS_IDS,
        seen: epoch,
      };
      peerPlans.set(peer.name, peerMemo);
      if (memo !== undefined) replaced.push(memo);
      peers[nPeers++] = plan;
      if (peerId === undefined || send === undefined) continue;
      // Kept for as long as the plan is, so made at their exact size (src/util/exact-array.ts) and filled in place.
      const tunnelPlans = new Array<TunnelPlan>(tunnels.length);
      const addressIds = new Array<PeerPlanMemo['addressIds'][number]>(tunnels.length);
      for (let t = 0; t < tunnels.length; t++) {
        const tunnel = tunnels[t] as Tunnel;
        const addressId = { address: tunnel.peerAddress, peerId };
        peerAddressIds[nAddressIds++] = addressId;
        addressIds[t] = addressId;
        const planned = planTunnelMemo(
          local,
          peer,
          peerId,
          tunnel,
          keys,
          send.spi,
          opts,
          memo?.tunnels,
          tunnelPlans,
          t,
          epoch,
        );
        tunnelPlans[t] = planned;
        if (whole !== undefined) whole.add(planned);
        if (!lastCallReused) fresh.push(planned);
        nStates = putAll(states, nStates, planned.states);
        nPolicies = putAll(policies, nPolicies, planned.policies);
      }
      peerMemo.tunnels = tunnelPlans;
      peerMemo.addressIds = addressIds;
    }
  } finally {
    // The keys of the SAs planned anew, derived in batches (pair-key-batch.ts): before anything uses them,
    // and also when the plan failed (its tunnels are in the memo).
    settleKeysOrForget();
  }
  states.length = nStates;
  policies.length = nPolicies;
  peers.length = nPeers;
  peerAddressIds.length = nAddressIds;
  lastPlanSizes = { states: nStates, policies: nPolicies, peers: nPeers, addressIds: nAddressIds };
  // The last plan's tunnels this one did not reuse: those of the peers it replanned, and of the peers it lost.
  const gone: TunnelPlan[] = [];
  for (const m of replaced) for (const t of m.tunnels) if (t.usedIn !== epoch) gone.push(t);
  if (!memoEmpty) {
    peerPlans.forEach((m, name) => {
      if (m.seen === epoch) return;
      for (const t of m.tunnels) if (t.usedIn !== epoch) gone.push(t);
      peerPlans.delete(name);
    });
  }
  lastContext = { local, keys, opts };
  // The identities of the last plan's tunnels, updated with the tunnels that changed when the node-wide policies
  // are the same (same local families); else checked afresh for the whole plan (during the planning when there were
  // none to update). Dropped first, so a failed check leaves none behind and the next plan checks afresh.
  const familiesText = families.join(',');
  if (known !== undefined && familiesText === lastPlanFamilies && fresh.length + gone.length <= MAX_TUNNEL_UPDATES) {
    if (fresh.length + gone.length > 0) {
      for (const p of gone) known.remove(p);
      for (const p of fresh) known.add(p);
      identityUpdates++;
    }
    lastIdentities = known;
  } else if (whole !== undefined) {
    lastIdentities = whole;
  } else {
    distinctChecks++;
    lastIdentities = identitiesOf(policies, families.length, peerPlans);
  }
  lastPlanFamilies = familiesText;
  sortByName(peers);
  return { states, policies, peers, peerAddressIds };
}

/** The memo of a peer with no tunnel planned (until its tunnels are: a plan that fails midway leaves it so). */
const NO_TUNNELS: TunnelPlan[] = Object.freeze([]) as unknown as TunnelPlan[];
const NO_ADDRESS_IDS: PeerPlanMemo['addressIds'] = Object.freeze([]) as unknown as PeerPlanMemo['addressIds'];

/** The reasons of a peer plan that has none (plans are read, never written to, once made). */
const NO_REASONS: string[] = Object.freeze([]) as unknown as string[];

/**
 * A peer's record in the plan, made in one literal per outcome with every field it will have: at 5,000 peers, fields
 * added after the literal cost an out-of-object property store per peer, and an empty list of reasons per peer
 * (~0.4 MiB kept for as long as the plan is, together).
 */
function peerPlan(
  peer: NodeInfo,
  peerId: number | undefined,
  send: SendChoice | undefined,
  tunnels: Tunnel[],
  notes: readonly string[],
): PeerPlan {
  const { name, spi: advertisedSpi } = peer;
  if (peerId === undefined) {
    const reasons = [...notes, 'no free peer id (all 65535 in use)'];
    return { name, advertisedSpi, planned: false, tunnels, reasons };
  }
  if (send === undefined) {
    const reasons = [...notes, 'no IPsec key yet'];
    return { name, advertisedSpi, planned: false, peerId, tunnels, reasons };
  }
  const reasons = send.note ? [...notes, send.note] : notes.length > 0 ? notes.slice() : NO_REASONS;
  return { name, advertisedSpi, planned: true, peerId, sendSpi: send.spi, tunnels, reasons };
}

/** settlePairKeys(); when that fails, the memo is dropped (its new SAs' keys are not derived) and the error thrown. */
function settleKeysOrForget(): void {
  try {
    settlePairKeys();
  } catch (e) {
    peerPlans.clear();
    lastContext = undefined;
    lastIdentities = undefined;
    throw e;
  }
}

/** Puts `items` into `to` from index `at` on (growing it past its length); the index after them. */
function putAll<T>(to: T[], at: number, items: readonly T[]): number {
  let n = at;
  for (let i = 0; i < items.length; i++) to[n++] = items[i] as T;
  return n;
}

/** The lengths of the last plan's arrays: the next plan's are allocated at them. */
let lastPlanSizes = { states: 0, policies: 0, peers: 0, addressIds: 0 };

// The block policies of the last plan, handed out again when the same (like the tunnels' objects below), so an
// unchanged plan is made of the very objects of the last one.
let lastBlockPolicies: PlannedPolicy[] = [];
let blockPolicies: PlannedPolicy[] = [];

/** The catch-all block policy of a local family: encrypt-marked packets no peer policy claims are dropped. */
function blockPolicy(family: Family, priority: number): PlannedPolicy {
  let planned = lastBlockPolicies.find((p) => p.policy.selector.family === family && p.policy.priority === priority);
  if (planned === undefined) {
    planned = {
      owner: null,
      role: 'block',
      policy: {
        dir: 'out',
        selector: { family, src: anyCidr(family), dst: anyCidr(family), proto: 0 },
        mark: ENCRYPT_MARK,
        priority,
        action: 'block',
        templates: [],
      },
    };
  }
  blockPolicies.push(planned);
  return planned;
}

// The objects planned for each tunnel by the last plan, with everything planTunnel read to plan them. Every
// daemon step replans every peer although a step changes few of them; at 5,000 peers rebuilding ~25,000 objects
// per step was most of the planning time. A plan reuses the previous plan's objects for tunnels whose inputs
// are unchanged (planned objects are never written to after planning; PSK buffers are compared as objects, as
// they are never changed in place), and keeps only the entries it used (each peer's memo below holds its tunnels'
// plans), so the memo holds nothing the last plan does not hold already. Any miss simply plans afresh.
interface TunnelPlan {
  local: NodeInfo;
  peer: NodeInfo;
  peerId: number;
  tunnel: Tunnel;
  keys: readonly IpsecKey[];
  sendSpi: number;
  opts: PlannerOptions;
  states: PlannedState[];
  policies: PlannedPolicy[];
  /** The epoch of the last plan that used it (a plan uses a tunnel plan of the last one at most once). */
  usedIn: number;
}
/** Counts plans: the epoch stamped on the memo entries a plan uses (no set of them is built per plan). */
let planEpoch = 0;
/** The kernel identities the last plan's tunnels take (they were distinct), and the local families it was planned for. */
let lastIdentities: TunnelIdentities | undefined;
let lastPlanFamilies = '';
/** More tunnels than this planned afresh or dropped: the whole plan is checked, not the change. */
const MAX_TUNNEL_UPDATES = 512;
let distinctChecks = 0;
let identityUpdates = 0;
/** How many plans checked every tunnel for distinct identities (tests: an unchanged or small change skips it). */
export function plannerDistinctChecks(): number {
  return distinctChecks;
}
/** How many plans checked only the tunnels that changed (tests). */
export function plannerIdentityUpdates(): number {
  return identityUpdates;
}
/** Whether the last planTunnelMemo call reused an entry of the last plan not reused before in this plan. */
let lastCallReused = false;

// Each peer's part of the last plan, with what it was planned from: the screened peer (screening hands out the
// same object while the peer is unchanged) and its peer id. Reused whole when those and the node-wide inputs
// (sameInputs) are unchanged, so an unchanged peer costs a few comparisons and pushes instead of a tunnel memo
// lookup per tunnel and fresh per-peer records.
interface PeerPlanMemo {
  screened: ScreenedPeer;
  peerId: number | undefined;
  plan: PeerPlan;
  /** The tunnels' plans: the memo the next plan reuses tunnel plans from. */
  tunnels: TunnelPlan[];
  addressIds: { address: string; peerId: number }[];
  /** The epoch of the last plan that held this peer's memo. */
  seen: number;
}
/**
 * By peer name: the last plan's memos, replaced in place by the plan being made (which reads each peer's entry
 * before it replaces it) and pruned of the peers it did not hold when it is made.
 */
const peerPlans = new Map<string, PeerPlanMemo>();
/** The node-wide inputs of the last plan. */
let lastContext: { local: NodeInfo; keys: readonly IpsecKey[]; opts: PlannerOptions } | undefined;

/** Node-wide inputs equal to the last plan's: the local node's boot ID, the held keys, the options. */
function sameInputs(
  last: typeof lastContext,
  local: NodeInfo,
  keys: readonly IpsecKey[],
  opts: PlannerOptions,
): boolean {
  return (
    last !== undefined &&
    last.local.bootID === local.bootID &&
    last.opts.reqid === opts.reqid &&
    last.opts.replayWindow === opts.replayWindow &&
    last.opts.peerPriority === opts.peerPriority &&
    last.keys.length === keys.length &&
    last.keys.every((k, i) => {
      const o = keys[i] as IpsecKey;
      return k.spi === o.spi && k.key === o.key && k.aeadKeyName === o.aeadKeyName && k.icvBits === o.icvBits;
    })
  );
}

/** Were `p`'s objects planned from these inputs (everything planTunnel reads)? */
function plannedFrom(
  p: TunnelPlan,
  local: NodeInfo,
  peer: NodeInfo,
  peerId: number,
  tunnel: Tunnel,
  keys: readonly IpsecKey[],
  sendSpi: number,
  opts: PlannerOptions,
): boolean {
  const t = p.tunnel;
  return (
    p.peerId === peerId &&
    p.sendSpi === sendSpi &&
    p.peer.name === peer.name &&
    p.peer.bootID === peer.bootID &&
    p.local.bootID === local.bootID &&
    p.opts.reqid === opts.reqid &&
    p.opts.replayWindow === opts.replayWindow &&
    p.opts.peerPriority === opts.peerPriority &&
    t.family === tunnel.family &&
    t.localAddress === tunnel.localAddress &&
    t.peerAddress === tunnel.peerAddress &&
    sameItems(t.localCidrs, tunnel.localCidrs) &&
    sameItems(t.peerCidrs, tunnel.peerCidrs) &&
    p.keys.length === keys.length &&
    p.keys.every((k, i) => {
      const o = keys[i] as IpsecKey;
      return k.spi === o.spi && k.key === o.key && k.aeadKeyName === o.aeadKeyName && k.icvBits === o.icvBits;
    })
  );
}

/** The first of `list[0..count)` planned from these inputs (plannedFrom), if any. */
function plannedIn(
  list: readonly TunnelPlan[],
  count: number,
  local: NodeInfo,
  peer: NodeInfo,
  peerId: number,
  tunnel: Tunnel,
  keys: readonly IpsecKey[],
  sendSpi: number,
  opts: PlannerOptions,
): TunnelPlan | undefined {
  for (let i = 0; i < count; i++) {
    const p = list[i] as TunnelPlan;
    if (plannedFrom(p, local, peer, peerId, tunnel, keys, sendSpi, opts)) return p;
  }
  return undefined;
}

/**
 * The tunnel's planned objects: the previous plan's (`last`) when planned from the same inputs, else planned now.
 * `current[0..currentCount)`: the peer's tunnels planned so far in this plan.
 */
function planTunnelMemo(
  local: NodeInfo,
  peer: NodeInfo,
  peerId: number,
  tunnel: Tunnel,
  keys: readonly IpsecKey[],
  sendSpi: number,
  opts: PlannerOptions,
  last: readonly TunnelPlan[] | undefined,
  current: readonly TunnelPlan[],
  currentCount: number,
  epoch: number,
): TunnelPlan {
  const fromLast =
    last === undefined ? undefined : plannedIn(last, last.length, local, peer, peerId, tunnel, keys, sendSpi, opts);
  let planned = fromLast !== undefined && fromLast.usedIn !== epoch ? fromLast : undefined;
  lastCallReused = planned !== undefined;
  if (planned !== undefined) planned.usedIn = epoch;
  else planned = plannedIn(current, currentCount, local, peer, peerId, tunnel, keys, sendSpi, opts) ?? fromLast;
  if (planned === undefined) {
    const donor = last?.find((p) => sameKeyEnds(p, local, peer, tunnel));
    // Built at their exact size (kept for as long as the plan is; src/util/exact-array.ts) and filled in place.
    const { peerCidrs, localCidrs } = tunnel;
    const states = new Array<PlannedState>(2 * keys.length);
    const policies = new Array<PlannedPolicy>(peerCidrs.length * (1 + 2 * localCidrs.length));
    planTunnel(local, peer, peerId, tunnel, keys, sendSpi, opts, states, policies, donor);
    planned = { local, peer, peerId, tunnel, keys, sendSpi, opts, states, policies, usedIn: epoch };
  }
  return planned;
}

/** Were `p`'s keys derived for the same endpoints (addresses and boot IDs) as this tunnel's? */
function sameKeyEnds(p: TunnelPlan, local: NodeInfo, peer: NodeInfo, tunnel: Tunnel): boolean {
  return (
    p.tunnel.family === tunnel.family &&
    p.tunnel.localAddress === tunnel.localAddress &&
    p.tunnel.peerAddress === tunnel.peerAddress &&
    p.local.bootID === local.bootID &&
    p.peer.bootID === peer.bootID
  );
}

/**
 * The pair key of `key` for one direction of a tunnel: the one the tunnel's previous plan (`donor`, same
 * endpoints) holds for the same PSK buffer (a PSK is never changed in place), else asked of the batch (derived
 * when planScreened settles it). Most replans hand
 * on the whole SA (planTunnel); this serves those that build the SA anew for inputs that leave its key as it is (the
 * peer id, the reqid or the replay window), where deriving again would be two SHA-512 runs per key and tunnel.
 * Handing the keys on costs no memory beyond the SAs that hold them (a cache by endpoints held 20,000 keys' texts and
 * buffers, ~3 MiB, besides).
 */
function pairKey(
  key: IpsecKey,
  direction: PlannedState['direction'],
  src: KeyEndpoint,
  dst: KeyEndpoint,
  donor: TunnelPlan | undefined,
): Buffer {
  if (donor !== undefined) {
    for (let i = 0; i < donor.states.length; i++) {
      const d = donor.states[i] as PlannedState;
      if (d.direction !== direction || d.state.spi !== key.spi || d.state.aead === undefined) continue;
      for (let k = 0; k < donor.keys.length; k++) {
        const held = donor.keys[k] as IpsecKey;
        if (held.spi === key.spi && held.key === key.key) return d.state.aead.key;
      }
    }
  }
  return requestPairKey(key.key, src, dst);
}

/**
 * One SA, written out as one literal (no spread of shared fields): thousands of them per plan, and a literal
 * builds each in one allocation with one hidden class. An inbound SA's output mark is added after it (an
 * out-of-object store, ~40 bytes per inbound SA; a second full literal for it was measured and not worth the copy).
 */
function plannedSa(
  family: Family,
  src: string,
  dst: string,
  key: IpsecKey,
  aeadKey: Buffer,
  mark: XfrmMark,
  outputMark: XfrmMark | undefined,
  opts: PlannerOptions,
): XfrmState {
  const state: XfrmState = {
    family,
    src,
    dst,
    spi: key.spi,
    proto: IPPROTO_ESP,
    mode: 'tunnel',
    reqid: opts.reqid,
    aead: { name: key.aeadKeyName, key: aeadKey, icvBits: key.icvBits },
    mark,
    esn: true,
    replayWindow: opts.replayWindow,
  };
  if (outputMark) state.outputMark = outputMark;
  return state;
}

function tunnelTemplate(family: Family, src: string, dst: string, spi: number, opts: PlannerOptions): XfrmTemplate {
  return { family, src, dst, proto: IPPROTO_ESP, mode: 'tunnel', reqid: opts.reqid, spi };
}

/**
 * Fills `states` and `policies` (sized by planTunnelMemo) with the tunnel's objects. Each object the tunnel's previous
 * plan (`donor`, same endpoints) planned from the same inputs is handed on as it is (planned objects are never
 * written to): a rotation replans every tunnel about three times — a key added, the send SPI switched, a key
 * retired — and each time only the objects that input changes are new. The reconciler tells a plan's changes
 * from the applied plan by object, so a switch of the send SPI is then one out policy in and one out, not all of
 * the tunnel's objects (docs/benchmarks.md, eleventh session).
 */
function planTunnel(
  local: NodeInfo,
  peer: NodeInfo,
  peerId: number,
  tunnel: Tunnel,
  keys: readonly IpsecKey[],
  sendSpi: number,
  opts: PlannerOptions,
  states: PlannedState[],
  policies: PlannedPolicy[],
  donor: TunnelPlan | undefined,
): void {
  const { family, localAddress, peerAddress } = tunnel;
  const localEnd: KeyEndpoint = { ip: localAddress, bootID: local.bootID };
  const peerEnd: KeyEndpoint = { ip: peerAddress, bootID: peer.bootID };
  let sendState: PlannedState | undefined;
  // The donor's SAs are this plan's when they were planned for the same peer id (the inbound mark) and SA options.
  const saDonor =
    donor !== undefined &&
    donor.peerId === peerId &&
    donor.peer.name === peer.name &&
    donor.opts.reqid === opts.reqid &&
    donor.opts.replayWindow === opts.replayWindow
      ? donor
      : undefined;
  let inboundMark: XfrmMark | undefined;
  let s = 0;
  for (let k = 0; k < keys.length; k++) {
    const key = keys[k] as IpsecKey;
    let inbound = saDonor && donorState(saDonor, key, 'inbound');
    if (inbound === undefined) {
      inboundMark ??= { value: inboundEspMark(peerId), mask: MARK_INBOUND_MASK };
      const inboundKey = pairKey(key, 'inbound', peerEnd, localEnd, donor);
      inbound = {
        owner: peer.name,
        direction: 'inbound',
        state: plannedSa(family, peerAddress, localAddress, key, inboundKey, inboundMark, DECRYPTED_OUTPUT_MARK, opts),
      };
    }
    let outbound = saDonor && donorState(saDonor, key, 'outbound');
    if (outbound === undefined) {
      const outboundKey = pairKey(key, 'outbound', localEnd, peerEnd, donor);
      outbound = {
        owner: peer.name,
        direction: 'outbound',
        state: plannedSa(family, localAddress, peerAddress, key, outboundKey, ENCRYPT_MARK, undefined, opts),
      };
    }
    states[s++] = inbound;
    states[s++] = outbound;
    if (key.spi === sendSpi) sendState = outbound;
  }

  // The donor's policies are this plan's when planned for the same peer with the same policy options; an out
  // policy also needs the same send SPI and the same required SA.
  const policyDonor =
    donor !== undefined &&
    donor.peer.name === peer.name &&
    donor.opts.reqid === opts.reqid &&
    donor.opts.peerPriority === opts.peerPriority
      ? donor
      : undefined;
  const outDonor = policyDonor !== undefined && policyDonor.sendSpi === sendSpi ? policyDonor : undefined;
  // One template list per direction, shared by the tunnel's policies (never written to, like the marks); made
  // when a policy is planned anew.
  let outTemplates: XfrmTemplate[] | undefined;
  let inTemplates: XfrmTemplate[] | undefined;
  const { peerCidrs, localCidrs } = tunnel;
  let p = 0;
  for (let c = 0; c < peerCidrs.length; c++) {
    const peerCidr = peerCidrs[c] as string;
    let out = outDonor && donorOutPolicy(outDonor, peerCidr, sendState);
    if (out === undefined) {
      outTemplates ??= [tunnelTemplate(family, localAddress, peerAddress, sendSpi, opts)];
      const policy: XfrmPolicy = {
        dir: 'out',
        selector: { family, src: anyCidr(family), dst: peerCidr, proto: 0 },
        mark: ENCRYPT_MARK,
        priority: opts.peerPriority,
        action: 'allow',
        templates: outTemplates,
      };
      // One literal per shape: a field added afterwards costs an out-of-object store per policy.
      out = sendState
        ? { owner: peer.name, role: 'out', policy, requires: sendState }
        : { owner: peer.name, role: 'out', policy };
    }
    policies[p++] = out;
    for (let l = 0; l < localCidrs.length; l++) {
      const localCidr = localCidrs[l] as string;
      const pair = policyDonor && donorInboundPair(policyDonor, peerCidr, localCidr);
      if (pair !== undefined) {
        policies[p++] = pair[0];
        policies[p++] = pair[1];
        continue;
      }
      inTemplates ??= [tunnelTemplate(family, peerAddress, localAddress, 0, opts)];
      // The in and fwd policies of a pair of CIDRs select the same packets: one selector for both (never written
      // to, like the marks and templates).
      const selector: XfrmSelector = { family, src: peerCidr, dst: localCidr, proto: 0 };
      policies[p++] = inboundPolicy('in', peer.name, selector, opts, inTemplates);
      policies[p++] = inboundPolicy('fwd', peer.name, selector, opts, inTemplates);
    }
  }
  if (s !== states.length || p !== policies.length) {
    throw new Error(
      `planner: tunnel to ${peer.name} planned ${s}/${p} objects, sized for ${states.length}/${policies.length}`,
    );
  }
}

/** The donor's SA of `direction` for `key`, when the donor held the very same key (the PSK buffer, name, ICV). */
function donorState(donor: TunnelPlan, key: IpsecKey, direction: PlannedState['direction']): PlannedState | undefined {
  let held: IpsecKey | undefined;
  for (let k = 0; k < donor.keys.length; k++) {
    const h = donor.keys[k] as IpsecKey;
    if (h.spi === key.spi) held = h;
  }
  if (held?.key !== key.key || held.aeadKeyName !== key.aeadKeyName || held.icvBits !== key.icvBits) return undefined;
  for (let i = 0; i < donor.states.length; i++) {
    const d = donor.states[i] as PlannedState;
    if (d.direction === direction && d.state.spi === key.spi) return d;
  }
  return undefined;
}

/** The donor's out policy to `peerCidr`, when it requires the same SA (`requires` is part of an out policy). */
function donorOutPolicy(
  donor: TunnelPlan,
  peerCidr: string,
  requires: PlannedState | undefined,
): PlannedPolicy | undefined {
  for (let i = 0; i < donor.policies.length; i++) {
    const d = donor.policies[i] as PlannedPolicy;
    if (d.role === 'out' && d.policy.selector.dst === peerCidr) return d.requires === requires ? d : undefined;
  }
  return undefined;
}

/** The donor's in and fwd policies from `peerCidr` to `localCidr`. */
function donorInboundPair(
  donor: TunnelPlan,
  peerCidr: string,
  localCidr: string,
): [PlannedPolicy, PlannedPolicy] | undefined {
  let inbound: PlannedPolicy | undefined;
  let forward: PlannedPolicy | undefined;
  for (let i = 0; i < donor.policies.length; i++) {
    const d = donor.policies[i] as PlannedPolicy;
    if (d.policy.selector.src !== peerCidr || d.policy.selector.dst !== localCidr) continue;
    if (d.role === 'in') inbound = d;
    else if (d.role === 'fwd') forward = d;
  }
  return inbound !== undefined && forward !== undefined ? [inbound, forward] : undefined;
}

/** An in or fwd policy of a tunnel: from a peer's pod CIDR to a local one, decrypted by the tunnel's SAs. */
function inboundPolicy(
  dir: 'in' | 'fwd',
  owner: string,
  selector: XfrmSelector,
  opts: PlannerOptions,
  templates: XfrmTemplate[],
): PlannedPolicy {
  return {
    owner,
    role: dir,
    policy: {
      dir,
      selector,
      mark: DECRYPTED_MARK,
      priority: opts.peerPriority,
      action: 'allow',
      templates,
    },
  };
}

// Indexed loops here and in planTunnel: a first plan runs them before V8 optimises them, and for-of then
// allocates an iterator and a result object per element (~12 MiB of a cold 5,000-peer plan's 75).

/** The identities of a whole plan (its block policies first in `policies`, and its peers' memos); throws on a clash. */
function identitiesOf(
  policies: readonly PlannedPolicy[],
  blocks: number,
  memos: ReadonlyMap<string, PeerPlanMemo>,
): TunnelIdentities {
  const identities = new TunnelIdentities();
  for (let i = 0; i < blocks; i++) identities.addBlock((policies[i] as PlannedPolicy).policy);
  memos.forEach((m) => {
    for (let i = 0; i < m.tunnels.length; i++) identities.add(m.tunnels[i] as TunnelPlan);
  });
  return identities;
}
