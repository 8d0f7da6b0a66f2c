// The planner's identity guard (src/ipsec/tunnel-identities.ts) checks a plan's tunnels, not its objects: two
// planned objects with one kernel identity must fail the plan exactly when the objects' own identities
// (src/xfrm/identity.ts: a state's bucket and lookup mark, a policy's policyIdentity) say two are the same. Checked
// here against those identities, on plans whose peers are drawn from small pools of peer ids, addresses (the local
// one among them, and one IPv6 address in two spellings) and CIDRs (one with host bits, one in two spellings, any),
// as a first plan checks them (whole) and as a step checks them (the changed tunnels against the last plan).
import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import { anyCidr } from '../../src/model/ip-address.js';
import type { ScreenedPeer, Tunnel } from '../../src/ipsec/peer-screen.js';
import {
  planScreened,
  planXfrm,
  plannerDistinctChecks,
  plannerIdentityUpdates,
  type ScreenedPlanInput,
  type XfrmPlan,
} from '../../src/ipsec/planner.js';
import { TunnelIdentities, type TunnelObjects } from '../../src/ipsec/tunnel-identities.js';
import { lookupMark, policyIdentity, stateBucket } from '../../src/xfrm/identity.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';
import { prng } from '../fakes/prng.js';
import { makeInboundSa, makeOutboundSa, makeOutPolicy } from '../fakes/xfrm-objects.js';

const local = makeNode(1, { addresses: ['198.18.0.1', 'fd00::1'], podCIDRs: ['10.244.1.0/24', 'fd00:10:1::/64'] });
const LOCAL_CIDRS = { 4: ['10.244.1.0/24'], 6: ['fd00:10:1::/64'] } as const;

/** Identities of a plan's objects that more than one object has. */
function sharedIdentities(plan: XfrmPlan): string[] {
  const seen = new Set<string>();
  const twice: string[] = [];
  const note = (id: string): void => {
    if (seen.has(id)) twice.push(id);
    seen.add(id);
  };
  for (const s of plan.states) note(`state ${stateBucket(s.state)}|${lookupMark(s.state.mark)}`);
  for (const p of plan.policies) note(`policy ${policyIdentity(p.policy)}`);
  return twice;
}

const POOLS = {
  address: { 4: ['198.18.0.2', '198.18.0.3', '198.18.0.1'], 6: ['fd00::2', 'fd00:0::2', 'fd00::3'] },
  cidr: {
    4: ['10.1.0.0/24', '10.1.0.1/24', '10.2.0.0/16', '10.3.0.0/24', '10.4.0.0/24'],
    6: ['fd00:1::/64', 'fd00:1:0::/64', 'fd00:2::/64', 'fd00:3::/64'],
  },
} as const;

/** A peer as screening would hand it on (not screened: peers may clash with each other and with the local node). */
function drawPeer(next: () => number, n: number): { peer: ScreenedPeer; peerId: number } {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)] as T;
  const tunnels: Tunnel[] = [];
  for (const family of [4, 6] as const) {
    if (next() < 0.3) continue;
    const count = Math.floor(next() * 3);
    const peerCidrs: string[] = [];
    // Distinct texts within a tunnel (screening drops a text given twice); canonical twins may both come.
    for (let i = 0; i < count; i++) {
      // Any (the block policy's selector) one draw in ten, or it decides most plans.
      const c = next() < 0.1 ? anyCidr(family) : pick(POOLS.cidr[family]);
      if (!peerCidrs.includes(c)) peerCidrs.push(c);
    }
    tunnels.push({
      family,
      localAddress: family === 4 ? '198.18.0.1' : 'fd00::1',
      peerAddress: pick(POOLS.address[family]),
      localCidrs: [...LOCAL_CIDRS[family]],
      peerCidrs,
    });
  }
  if (tunnels.length === 0)
    tunnels.push({
      family: 4,
      localAddress: '198.18.0.1',
      peerAddress: '198.18.0.2',
      localCidrs: [...LOCAL_CIDRS[4]],
      peerCidrs: [],
    });
  const node: NodeInfo = makeNode(n, {
    addresses: tunnels.map((x) => x.peerAddress),
    podCIDRs: tunnels.flatMap((x) => x.peerCidrs),
  });
  return { peer: { node, tunnels, notes: [] }, peerId: 1 + Math.floor(next() * 4) };
}

const keys = KeyHistory.of([makeKey(1), makeKey(2)]);

function inputOf(drawn: { peer: ScreenedPeer; peerId: number }[]): ScreenedPlanInput {
  return {
    local,
    accepted: drawn.map((d) => d.peer),
    rejected: [],
    keys,
    peerIds: new Map(drawn.map((d) => [d.peer.node.name, d.peerId])),
  };
}

/** The planner's verdict on an input: its plan, or the message it failed with. */
function verdict(input: ScreenedPlanInput): XfrmPlan | string {
  try {
    return planScreened(input);
  } catch (e) {
    return (e as Error).message;
  }
}

/** Leaves the planner with no identities of a last plan: its next plan is checked whole, as a first plan. */
function forgetIdentities(): void {
  const twin = drawPeer(prng(1), 50);
  const clash = inputOf([twin, { ...twin, peer: { ...twin.peer, node: { ...twin.peer.node, name: 'node-51' } } }]);
  if (typeof verdict(clash) !== 'string') throw new Error('the clash meant to drop the identities planned');
}

/** Leaves the planner with the identities of a plan of no peers: its next plan updates them with its tunnels. */
function emptyLastPlan(): void {
  planXfrm({ local, peers: [], keys, peerIds: new Map() });
}

t.test('the planner fails a plan exactly when two of its objects share an identity', (t) => {
  let clashes = 0;
  let plans = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const next = prng(seed);
    const drawn: { peer: ScreenedPeer; peerId: number }[] = [];
    const count = 1 + Math.floor(next() * 4);
    for (let i = 0; i < count; i++) drawn.push(drawPeer(next, 2 + i));
    // The objects every peer gets planned alone, block policies once: the objects of the plan of them all.
    const alone = drawn.map((d) => {
      emptyLastPlan();
      return verdict(inputOf([d]));
    });
    // A peer that clashes alone (with itself or a block policy) makes the plan of them all clash too.
    const aloneFails = alone.filter((p): p is string => typeof p === 'string');
    const objects: XfrmPlan = { states: [], policies: [], peers: [], peerAddressIds: [] };
    let blocks = false;
    for (const plan of alone) {
      if (typeof plan === 'string') continue;
      objects.states.push(...plan.states);
      objects.policies.push(...plan.policies.filter((p) => !blocks || p.role !== 'block'));
      blocks = true;
    }
    const shared = aloneFails.length > 0 ? aloneFails : sharedIdentities(objects);
    const expected = shared.length > 0 ? 'fails' : 'plans';
    for (const path of ['whole', 'update'] as const) {
      if (path === 'whole') forgetIdentities();
      else emptyLastPlan();
      const whole = plannerDistinctChecks();
      const updates = plannerIdentityUpdates();
      const got = verdict(inputOf(drawn));
      // Counted when the check passed; a failed update leaves the count as it was, and checks nothing whole.
      const counted = typeof got === 'string' ? 0 : 1;
      if (path === 'whole') t.equal(plannerDistinctChecks(), whole + 1, `seed ${seed}: checked whole`);
      else
        t.same(
          [plannerDistinctChecks(), plannerIdentityUpdates()],
          [whole, updates + counted],
          `seed ${seed}: updated`,
        );
      const outcome = typeof got === 'string' ? 'fails' : 'plans';
      t.equal(outcome, expected, `seed ${seed}, ${path}: the plan ${expected} (${shared.join('; ') || 'distinct'})`, {
        diagnostic: false,
      });
      if (typeof got === 'string') {
        t.match(got, /^planner produced two (states|policies) with identity /, `seed ${seed}, ${path}: says which`);
        if (aloneFails.length === 0) {
          const named = got.replace(/^planner produced two (states|policies) with identity /, '');
          t.ok(
            shared.some((s) => s.endsWith(` ${named}`)),
            `seed ${seed}, ${path}: names a shared identity`,
          );
        }
      } else {
        t.same(sharedIdentities(got), [], `seed ${seed}, ${path}: every object its own identity`, {
          diagnostic: false,
        });
      }
      if (outcome === 'fails') clashes++;
      else plans++;
    }
  }
  t.ok(clashes > 100 && plans > 100, `both outcomes drawn often (${clashes} clashes, ${plans} plans)`);
  t.end();
});

t.test('within one tunnel: a peer CIDR twice, a local CIDR twice, a peer CIDR that is any', (t) => {
  const tunnel = (over: Partial<Tunnel>): ScreenedPlanInput => {
    const node = makeNode(2);
    const base: Tunnel = {
      family: 6,
      localAddress: 'fd00::1',
      peerAddress: 'fd00::2',
      localCidrs: [...LOCAL_CIDRS[6]],
      peerCidrs: ['fd00:2::/64'],
    };
    return {
      local,
      accepted: [{ node, tunnels: [{ ...base, ...over }], notes: [] }],
      rejected: [],
      keys,
      peerIds: new Map([[node.name, 1]]),
    };
  };
  for (const path of ['whole', 'update'] as const) {
    const prepare = path === 'whole' ? forgetIdentities : emptyLastPlan;
    prepare();
    t.match(
      verdict(tunnel({ peerCidrs: ['fd00:2::/64', 'fd00:2:0::/64'] })),
      /two policies with identity out\|6\|::\/0\|fd00:2::\/64\|/,
      `${path}: peer CIDR in two spellings`,
    );
    prepare();
    t.match(
      verdict(tunnel({ localCidrs: ['fd00:10:1::/64', 'fd00:10:1:0::/64'] })),
      /two policies with identity in\|6\|fd00:2::\/64\|fd00:10:1::\/64\|/,
      `${path}: local CIDR in two spellings`,
    );
    prepare();
    t.match(
      verdict(tunnel({ localCidrs: ['fd00:10:1::/64', 'fd00:10:1:0::/64'], peerCidrs: [] })),
      { states: Array },
      `${path}: a local CIDR twice with no peer CIDR plans no policy twice`,
    );
    prepare();
    t.match(
      verdict(tunnel({ peerCidrs: ['::/0'] })),
      /two policies with identity out\|6\|::\/0\|::\/0\|/,
      `${path}: any, as the block policy`,
    );
  }
  t.end();
});

t.test('TunnelIdentities: SPIs twice, block policies, and identities freed by the tunnel that holds them', (t) => {
  const ids = new TunnelIdentities();
  const tunnel: Tunnel = {
    family: 4,
    localAddress: '198.18.0.1',
    peerAddress: '198.18.0.2',
    localCidrs: ['10.244.1.0/24'],
    peerCidrs: ['10.2.0.0/24'],
  };
  const objects = (over: Partial<TunnelObjects>): TunnelObjects => {
    const t0 = over.tunnel ?? tunnel;
    const peerId = over.peerId ?? 1;
    const ks = over.keys ?? [makeKey(1)];
    return {
      tunnel: t0,
      peerId,
      keys: ks,
      states: ks.flatMap((k) => [
        {
          direction: 'inbound' as const,
          state: makeInboundSa({
            family: t0.family,
            src: t0.peerAddress,
            dst: t0.localAddress,
            spi: k.spi,
            mark: { value: (peerId << 16) | 0xd0, mask: 0xffff00ff },
          }),
        },
        {
          direction: 'outbound' as const,
          state: makeOutboundSa({ family: t0.family, src: t0.localAddress, dst: t0.peerAddress, spi: k.spi }),
        },
      ]),
      policies: t0.peerCidrs.map((c) => ({
        role: 'out' as const,
        policy: makeOutPolicy({ selector: { family: t0.family, src: anyCidr(t0.family), dst: c, proto: 0 } }),
      })),
    };
  };
  const block = {
    dir: 'out' as const,
    selector: { family: 4 as const, src: '0.0.0.0/0', dst: '0.0.0.0/0', proto: 0 },
    mark: { value: 0xe0, mask: 0xff },
    priority: 2,
    action: 'block' as const,
    templates: [],
  };
  ids.addBlock(block);
  t.throws(
    () => ids.addBlock(block),
    /two policies with identity out\|4\|0\.0\.0\.0\/0\|0\.0\.0\.0\/0\|0\|224\/255/,
    'a block policy twice',
  );
  t.throws(
    () => ids.addBlock({ ...block, selector: { ...block.selector, dst: '10.0.0.0/8' } }),
    /is not a block policy/,
  );
  t.throws(
    () => ids.add(objects({ keys: [makeKey(1), { ...makeKey(2), spi: 1 }] })),
    /two states with identity 4\|198\.18\.0\.2\|1\|50\|224/,
    'one SPI twice',
  );
  const a = objects({});
  const fresh = new TunnelIdentities();
  fresh.add(a);
  t.throws(
    () => fresh.add(objects({ tunnel: { ...tunnel, peerAddress: '198.18.0.3', peerCidrs: [] } })),
    /two states with identity 4\|198\.18\.0\.1\|1\|50\|65744/,
    'one peer id twice',
  );
  const b = objects({ peerId: 2, tunnel: { ...tunnel, peerAddress: '198.18.0.3', peerCidrs: ['10.3.0.0/24'] } });
  fresh.add(b);
  fresh.remove(objects({ peerId: 2, tunnel: { ...tunnel, peerAddress: '198.18.0.3', peerCidrs: ['10.3.0.0/24'] } }));
  t.throws(
    () =>
      fresh.add(objects({ peerId: 2, tunnel: { ...tunnel, peerAddress: '198.18.0.9', peerCidrs: ['10.9.0.0/24'] } })),
    /two states/,
    'another object of equal inputs frees nothing',
  );
  fresh.remove(b);
  fresh.add(objects({ peerId: 2, tunnel: { ...tunnel, peerAddress: '198.18.0.3', peerCidrs: ['10.3.0.0/24'] } }));
  t.pass('the holder itself frees them');
  const six = objects({
    peerId: 1,
    tunnel: { family: 6, localAddress: 'fd00::1', peerAddress: 'fd00::2', localCidrs: [], peerCidrs: ['fd00:2::/64'] },
  });
  fresh.add(six);
  t.pass('families apart: the same peer id in IPv6');
  t.end();
});
