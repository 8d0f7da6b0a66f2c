// The kernel identities a plan's tunnels take, kept between plans: the guard of the invariant the reconciler rests
// on, that no two planned objects share a kernel identity (a state's (family, dst, spi, proto, lookup mark), a
// policy's (dir, selector, stored mark): src/xfrm/identity.ts). The planner builds every tunnel's objects the same
// way (planner.ts, planTunnel), for the plan's held keys alike, so their identities follow from a few inputs:
//   inbound SA   (family, local address, spi, ESP, peer id << 16 | 0xd0)   one per held SPI
//   outbound SA  (family, peer address, spi, ESP, 0xe0)                     one per held SPI
//   out policy   (out, family, any -> peer CIDR, 0xe0/0xff)                one per peer CIDR
//   in, fwd      (in | fwd, family, peer CIDR -> local CIDR, 0xd0/0xff)   one each per pair of CIDRs
// and the node-wide block policy (out, family, any -> any, 0xe0/0xff). Inbound and outbound SAs never share a lookup
// mark, nor in/fwd policies a direction with out ones. So a plan's objects are distinct exactly when its held SPIs
// are; no two tunnels of a family share a (local address, peer id) or a peer address; no peer CIDR of a family is
// planned twice or is the family's any; and no tunnel lists a local CIDR twice (distinct peer CIDRs make the
// in/fwd pairs of different tunnels differ). Addresses and CIDRs are compared in canonical form, as the kernel
// compares them.
// That is what this checks, per tunnel: a few map entries instead of one per object. A first 5,000-peer plan hashed
// and kept ~25,000 objects' identities, a fifth of its cold time (docs/benchmarks.md, sixteenth session).
// test/unit/ipsec-tunnel-identities.test.ts checks it against the identities of the objects themselves, on plans
// made to clash in each of these ways. A clash throws, naming the identity of one of the two objects.
import type { IpsecKey } from '../model/node.js';
import { anyCidr, canonicalIp, canonicalSelectorCidr, type Family } from '../model/ip-address.js';
import { lookupMark, policyIdentity, stateBucket } from '../xfrm/identity.js';
import type { XfrmPolicy, XfrmState } from '../xfrm/types.js';
import type { Tunnel } from './peer-screen.js';

/** What the check reads of a tunnel's plan: its inputs, and its objects (for the message of a clash). */
export interface TunnelObjects {
  tunnel: Tunnel;
  peerId: number;
  keys: readonly IpsecKey[];
  states: readonly { direction: 'inbound' | 'outbound'; state: XfrmState }[];
  policies: readonly { role: 'out' | 'in' | 'fwd' | 'block'; policy: XfrmPolicy }[];
}

/** The holder of a family's any -> any out identity: the block policy. */
const BLOCK = 'block';
type Holder = TunnelObjects | typeof BLOCK;

/** The identities taken in one address family. */
interface FamilyIdentities {
  /** Canonical local address -> peer id -> the tunnel whose inbound SAs take them. */
  inbound: Map<string, Map<number, TunnelObjects>>;
  /** Canonical peer address -> the tunnel whose outbound SAs take it. */
  outbound: Map<string, TunnelObjects>;
  /** Canonical peer CIDR -> the tunnel whose out policy selects it, or the block policy (any). */
  out: Map<string, Holder>;
}

function familyIdentities(): FamilyIdentities {
  return { inbound: new Map(), outbound: new Map(), out: new Map() };
}

export class TunnelIdentities {
  private readonly v4 = familyIdentities();
  private readonly v6 = familyIdentities();
  /** The last key list and local CIDR list found distinct (a plan's tunnels share them). */
  private distinctKeys: readonly IpsecKey[] | undefined;
  private distinctLocalCidrs: readonly string[] | undefined;

  private of(family: Family): FamilyIdentities {
    return family === 4 ? this.v4 : this.v6;
  }

  /** The block policy of a family: out, any -> any. Throws when its identity is taken. */
  addBlock(policy: XfrmPolicy): void {
    const { family, src, dst } = policy.selector;
    if (policy.dir !== 'out' || src !== anyCidr(family) || dst !== anyCidr(family)) {
      throw new Error(`tunnel identities: ${policyIdentity(policy)} is not a block policy (out, any -> any)`);
    }
    const out = this.of(family).out;
    const key = canonicalSelectorCidr(dst);
    if (out.has(key)) throw new Error(`planner produced two policies with identity ${policyIdentity(policy)}`);
    out.set(key, BLOCK);
  }

  /** The identities of `t`'s objects. Throws when one is taken (what was added of `t` until then stays). */
  add(t: TunnelObjects): void {
    const { family, localAddress, peerAddress, peerCidrs, localCidrs } = t.tunnel;
    if (t.keys !== this.distinctKeys) {
      for (let i = 1; i < t.keys.length; i++) {
        for (let j = 0; j < i; j++) {
          if ((t.keys[i] as IpsecKey).spi === (t.keys[j] as IpsecKey).spi) clash(stateOf(t, 'outbound', i));
        }
      }
      this.distinctKeys = t.keys;
    }
    // No in/fwd policies without a peer CIDR: a local CIDR twice then plans nothing twice.
    if (peerCidrs.length > 0 && localCidrs !== this.distinctLocalCidrs) {
      for (let i = 1; i < localCidrs.length; i++) {
        const text = canonicalSelectorCidr(localCidrs[i] as string);
        for (let j = 0; j < i; j++) {
          if (canonicalSelectorCidr(localCidrs[j] as string) === text) clashOfPolicy(inPolicyFrom(t, localCidrs[i]));
        }
      }
      this.distinctLocalCidrs = localCidrs;
    }
    const ids = this.of(family);
    for (let i = 0; i < peerCidrs.length; i++) {
      const cidr = peerCidrs[i] as string;
      const key = canonicalSelectorCidr(cidr);
      if (ids.out.has(key)) clashOfPolicy(outPolicyTo(t, cidr));
      ids.out.set(key, t);
    }
    if (t.keys.length === 0) return; // no SAs
    const local = canonicalIp(localAddress);
    let byPeerId = ids.inbound.get(local);
    if (byPeerId === undefined) {
      byPeerId = new Map();
      ids.inbound.set(local, byPeerId);
    }
    if (byPeerId.has(t.peerId)) clash(stateOf(t, 'inbound', 0));
    byPeerId.set(t.peerId, t);
    const peer = canonicalIp(peerAddress);
    if (ids.outbound.has(peer)) clash(stateOf(t, 'outbound', 0));
    ids.outbound.set(peer, t);
  }

  /** Frees the identities `t` holds (those another tunnel holds stay). */
  remove(t: TunnelObjects): void {
    const { family, localAddress, peerAddress, peerCidrs } = t.tunnel;
    const ids = this.of(family);
    const local = canonicalIp(localAddress);
    const byPeerId = ids.inbound.get(local);
    if (byPeerId?.get(t.peerId) === t) {
      byPeerId.delete(t.peerId);
      if (byPeerId.size === 0) ids.inbound.delete(local);
    }
    const peer = canonicalIp(peerAddress);
    if (ids.outbound.get(peer) === t) ids.outbound.delete(peer);
    for (let i = 0; i < peerCidrs.length; i++) {
      const key = canonicalSelectorCidr(peerCidrs[i] as string);
      if (ids.out.get(key) === t) ids.out.delete(key);
    }
  }
}

/** The `n`-th SA of `direction` of the tunnel (one per held key, in the keys' order). */
function stateOf(t: TunnelObjects, direction: 'inbound' | 'outbound', n: number): XfrmState {
  let seen = 0;
  for (const s of t.states) if (s.direction === direction && seen++ === n) return s.state;
  throw new Error(`tunnel identities: the tunnel to ${t.tunnel.peerAddress} has no ${direction} SA ${n}`);
}

function outPolicyTo(t: TunnelObjects, peerCidr: string): XfrmPolicy {
  const found = t.policies.find((p) => p.role === 'out' && p.policy.selector.dst === peerCidr);
  if (found === undefined) throw new Error(`tunnel identities: the tunnel has no out policy to ${peerCidr}`);
  return found.policy;
}

function inPolicyFrom(t: TunnelObjects, localCidr: string | undefined): XfrmPolicy {
  const found = t.policies.find((p) => p.role === 'in' && p.policy.selector.dst === localCidr);
  if (found === undefined) throw new Error(`tunnel identities: the tunnel has no in policy to ${localCidr}`);
  return found.policy;
}

function clash(state: XfrmState): never {
  throw new Error(`planner produced two states with identity ${stateBucket(state)}|${lookupMark(state.mark)}`);
}

function clashOfPolicy(policy: XfrmPolicy): never {
  throw new Error(`planner produced two policies with identity ${policyIdentity(policy)}`);
}
