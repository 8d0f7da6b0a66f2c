// The planner reuses the previous plan's objects for tunnels whose inputs did not change (src/ipsec/planner.ts,
// tunnelPlanId). Whatever was planned before, a plan must equal the plan of the same input from an empty memo:
// for each input the planner reads, a variant that differs in that input alone (and plans other SAs or policies) is planned
// right after the base and the base right after it, and both must equal their plans from an empty memo (so a
// field missing from the memo's key shows as a failure here).
import t from 'tap';
import { derivePairKey } from '../../src/keys/derive.js';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { IpsecKey, NodeInfo } from '../../src/model/node.js';
import {
  planScreened,
  planXfrm,
  plannerDistinctChecks,
  plannerIdentityUpdates,
  type PlanInput,
  type XfrmPlan,
} from '../../src/ipsec/planner.js';
import { incrementalScreeningCount, screenEveryPeer, screenPeers } from '../../src/ipsec/peer-screen.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';

const local = makeNode(1, { addresses: ['198.18.0.1', 'fd00::1'], podCIDRs: ['10.244.1.0/24', 'fd00:10:1::/64'] });
const peers = [2, 3, 4].map((i) =>
  makeNode(i, { addresses: [`198.18.0.${i}`, `fd00::${i}`], podCIDRs: [`10.244.${i}.0/24`, `fd00:10:${i}::/64`] }),
);
const ids = (over: Record<string, number> = {}): Map<string, number> =>
  new Map(peers.map((p, i) => [p.name, over[p.name] ?? i + 1]));
const key2 = makeKey(2);

const base: PlanInput = { local, peers, keys: KeyHistory.of([makeKey(1)]), peerIds: ids() };

const withPeer = (i: number, over: Partial<NodeInfo>): NodeInfo[] =>
  peers.map((p, k) => (k === i ? { ...p, ...over } : p));
const sameBytesOtherBuffer = (k: IpsecKey): IpsecKey => ({ ...k, key: Buffer.from(k.key) });
const otherBytes = (k: IpsecKey): IpsecKey => ({ ...k, key: Buffer.alloc(36, 0x77) });

const variants: [string, PlanInput][] = [
  ['a peer boot ID', { ...base, peers: withPeer(1, { bootID: 'changed-boot-id' }) }],
  ['the local boot ID', { ...base, local: { ...local, bootID: 'changed-local-boot' } }],
  ['a peer id', { ...base, peerIds: ids({ 'node-03': 9 }) }],
  ['a peer address', { ...base, peers: withPeer(1, { addresses: ['198.18.0.33', 'fd00::3'] }) }],
  ['a peer pod CIDR', { ...base, peers: withPeer(1, { podCIDRs: ['10.244.33.0/24', 'fd00:10:3::/64'] }) }],
  ['the local pod CIDRs', { ...base, local: { ...local, podCIDRs: ['10.244.11.0/24', 'fd00:10:1::/64'] } }],
  ['the local address', { ...base, local: { ...local, addresses: ['198.18.0.111', 'fd00::1'] } }],
  [
    'the send SPI (peer on SPI 2, both held)',
    { ...base, keys: KeyHistory.of([makeKey(1), key2]), peers: withPeer(1, { spi: 2 }) },
  ],
  ['a second held key', { ...base, keys: KeyHistory.of([makeKey(1), key2]) }],
  ['the key bytes', { ...base, keys: KeyHistory.of([otherBytes(makeKey(1))]) }],
  ['the reqid', { ...base, options: { reqid: 0x1234 } }],
  ['the replay window', { ...base, options: { replayWindow: 64 } }],
  ['the peer priority', { ...base, options: { peerPriority: 7 } }],
];

/** The plan of `input` from an empty memo: a plan for no peers keeps no tunnel of the previous one. */
function cold(input: PlanInput): XfrmPlan {
  planXfrm({ ...input, peers: [] });
  return planXfrm(input);
}

t.test('a plan right after another equals the plan from an empty memo, for a change of each input', (t) => {
  const expected = cold(base);
  for (const [what, variant] of variants) {
    const fresh = cold(variant);
    t.notSame(
      [fresh.states, fresh.policies],
      [expected.states, expected.policies],
      `${what}: the variant plans other SAs or policies`,
    );
    planXfrm(base);
    t.same(planXfrm(variant), fresh, `${what}: planned right after the base`);
    t.same(planXfrm(base), expected, `${what}: the base planned right after the variant`);
  }
  t.end();
});

t.test('an equal PSK in another buffer plans equal objects; unchanged tunnels reuse the objects', (t) => {
  const first = planXfrm(base);
  const again = planXfrm(base);
  t.equal(again.states[0], first.states[0], 'an unchanged tunnel: the very objects of the previous plan');
  const copied = planXfrm({ ...base, keys: KeyHistory.of([sameBytesOtherBuffer(makeKey(1))]) });
  t.same(copied, first);
  t.not(copied.states[0], first.states[0], 'another PSK buffer: planned afresh');
  const oneChanged = planXfrm({ ...base, peers: withPeer(2, { bootID: 'changed' }) });
  t.equal(oneChanged.states.filter((s) => first.states.includes(s)).length, 0, 'the previous plan was the copy');
  t.end();
});

t.test('a replanned tunnel hands on its keys for the same PSK buffer and endpoints, and only then', (t) => {
  const k1 = makeKey(1);
  const k2 = makeKey(2);
  /** Every SA's key against a derivation from scratch; its buffer by (owner, SPI, direction). */
  const keysOf = (plan: XfrmPlan): Map<string, Buffer> => {
    const out = new Map<string, Buffer>();
    for (const { owner, direction, state } of plan.states) {
      const aead = state.aead as NonNullable<typeof state.aead>;
      const psk = [k1, k2].find((k) => k.spi === state.spi) as IpsecKey;
      const peerBoot = peerBootOf(owner);
      const ends = [
        { ip: state.src, bootID: direction === 'outbound' ? local.bootID : peerBoot },
        { ip: state.dst, bootID: direction === 'outbound' ? peerBoot : local.bootID },
      ] as const;
      t.same(aead.key, derivePairKey(psk.key, ends[0], ends[1]), `${owner} SPI ${state.spi} ${direction}: the key`);
      out.set(`${owner} ${state.spi} ${direction} ${state.family}`, aead.key);
    }
    return out;
  };
  let rebooted = false;
  const peerBootOf = (name: string): string =>
    rebooted && name === 'node-03' ? 'rebooted' : (peers.find((p) => p.name === name) as NodeInfo).bootID;
  const handedOn = (before: Map<string, Buffer>, after: Map<string, Buffer>, spi: number): number => {
    let n = 0;
    for (const [id, key] of after) if (id.split(' ')[1] === String(spi) && before.get(id) === key) n++;
    return n;
  };
  // As the daemon's history evolves: each key stays the same buffer while held (KeyHistory.of copies them).
  const h1 = KeyHistory.of([k1]);
  const h12 = h1.with(k2);
  const h2 = h12.without([1]);
  planXfrm({ ...base, peers: [] });
  const one = keysOf(planXfrm({ ...base, keys: h1 }));
  const both = keysOf(planXfrm({ ...base, keys: h12 }));
  t.equal(handedOn(one, both, 1), one.size, 'a key added: every SPI 1 key handed on');
  const switched = keysOf(planXfrm({ ...base, keys: h12, peers: peers.map((p) => ({ ...p, spi: 2 })) }));
  t.equal(handedOn(both, switched, 1) + handedOn(both, switched, 2), both.size, 'the send SPI: every key handed on');
  const retired = keysOf(planXfrm({ ...base, keys: h2, peers: peers.map((p) => ({ ...p, spi: 2 })) }));
  t.equal(handedOn(switched, retired, 2), retired.size, 'a key retired: every SPI 2 key handed on');
  rebooted = true;
  const afterReboot = keysOf(
    planXfrm({
      ...base,
      keys: h2,
      peers: withPeer(1, { spi: 2, bootID: 'rebooted' }).map((p) => ({ ...p, spi: 2 })),
    }),
  );
  const rebootedIds = [...afterReboot.keys()].filter((id) => id.startsWith('node-03 '));
  t.ok(rebootedIds.length > 0);
  for (const id of rebootedIds) t.not(afterReboot.get(id), retired.get(id), `${id}: a new boot ID derives anew`);
  t.equal(handedOn(retired, afterReboot, 2), afterReboot.size - rebootedIds.length, 'the other peers keep theirs');
  const otherBuffer = keysOf(
    planXfrm({
      ...base,
      keys: KeyHistory.of([sameBytesOtherBuffer(k2)]),
      peers: withPeer(1, { spi: 2, bootID: 'rebooted' }).map((p) => ({ ...p, spi: 2 })),
    }),
  );
  t.equal(handedOn(afterReboot, otherBuffer, 2), 0, 'the same bytes in another PSK buffer: derived anew');
  t.end();
});

t.test("a rotation's replans make only the objects their input changes, and equal plans from scratch", (t) => {
  type Planned = XfrmPlan['states'][number] | XfrmPlan['policies'][number];
  const objects = (plan: XfrmPlan): Planned[] => [...plan.states, ...plan.policies];
  /** The objects of `next` not in `prev`, and those of `prev` not in `next` (by reference). */
  const change = (prev: XfrmPlan, next: XfrmPlan): { made: Planned[]; dropped: Planned[] } => {
    const before = new Set(objects(prev));
    const after = new Set(objects(next));
    return { made: objects(next).filter((o) => !before.has(o)), dropped: objects(prev).filter((o) => !after.has(o)) };
  };
  const describe = (list: Planned[]): string[] =>
    list
      .map((o) =>
        'state' in o ? `${o.owner} SA ${o.direction} ${o.state.spi} ${o.state.family}` : `${o.owner} ${o.role} policy`,
      )
      .sort();
  const tunnels = peers.length * 2; // two families each
  const k2 = makeKey(2);
  const h1 = KeyHistory.of([makeKey(1)]);
  const h12 = h1.with(k2);
  const h2 = h12.without([1]);
  const onSpi2 = peers.map((p) => ({ ...p, spi: 2 }));
  const steps: [string, PlanInput][] = [
    ['SPI 1', { ...base, keys: h1 }],
    ['a key added', { ...base, keys: h12 }],
    ['the send SPI switched', { ...base, keys: h12, peers: onSpi2 }],
    ['the old key retired', { ...base, keys: h2, peers: onSpi2 }],
    ['a peer id changed', { ...base, keys: h2, peers: onSpi2, peerIds: ids({ 'node-03': 9 }) }],
  ];
  planXfrm({ ...base, peers: [] });
  const plans = steps.map(([, input]) => planXfrm(input));
  const [one, added, switched, retired, renumbered] = plans as [XfrmPlan, XfrmPlan, XfrmPlan, XfrmPlan, XfrmPlan];

  const onAdd = change(one, added);
  t.equal(onAdd.made.length, 2 * tunnels, 'a key added: two SAs per tunnel made');
  t.ok(
    onAdd.made.every((o) => 'state' in o && o.state.spi === 2),
    'the new key SAs only',
  );
  t.same(onAdd.dropped, [], 'nothing dropped: the out policies still require the SPI 1 SAs');

  const onSwitch = change(added, switched);
  t.same(describe(onSwitch.made), describe(onSwitch.dropped), 'the send SPI: the out policies replaced, one for one');
  t.equal(onSwitch.made.length, tunnels);
  t.ok(
    onSwitch.made.every((o) => 'role' in o && o.role === 'out' && o.requires?.state.spi === 2),
    'each requires the SPI 2 SA',
  );

  const onRetire = change(switched, retired);
  t.same(onRetire.made, [], 'a key retired: nothing made');
  t.equal(onRetire.dropped.length, 2 * tunnels);
  t.ok(
    onRetire.dropped.every((o) => 'state' in o && o.state.spi === 1),
    'the old key SAs dropped',
  );

  const onRenumber = change(retired, renumbered);
  t.same(
    describe(onRenumber.made),
    [
      'node-03 SA inbound 2 4',
      'node-03 SA inbound 2 6',
      'node-03 SA outbound 2 4',
      'node-03 SA outbound 2 6',
      'node-03 out policy',
      'node-03 out policy',
    ],
    "a peer id: that peer's SAs (the inbound mark) and the out policies that require them",
  );
  t.same(describe(onRenumber.dropped), describe(onRenumber.made));
  const keyOf = (o: Planned): Buffer | undefined => ('state' in o ? o.state.aead?.key : undefined);
  const newKeys = onRenumber.made.map(keyOf).filter((k) => k !== undefined);
  const oldKeys = new Set(onRenumber.dropped.map(keyOf));
  t.equal(newKeys.length, 4);
  t.ok(
    newKeys.every((k) => oldKeys.has(k)),
    'SAs made anew for another peer id keep the pair keys they had (the same buffers, not derived again)',
  );

  // Handed-on objects or not, each plan is the plan of its input from an empty memo.
  steps.forEach(([what, input], i) => t.same(plans[i], cold(input), `${what}: equals the plan from scratch`));
  t.end();
});

t.test('an unchanged replan skips the distinctness check; a changed tunnel checks only its objects', (t) => {
  cold(base);
  const checks = plannerDistinctChecks();
  const updates = plannerIdentityUpdates();
  const again = planXfrm(base);
  t.equal(plannerDistinctChecks(), checks, 'every tunnel reused from the distinct last plan: not checked again');
  t.equal(plannerIdentityUpdates(), updates, '(nothing to update either)');
  t.same([again.states, again.policies], [cold(base).states, cold(base).policies], 'and the plan is the same');
  const before = plannerDistinctChecks();
  const updatesBefore = plannerIdentityUpdates();
  planXfrm({ ...base, peers: withPeer(1, { bootID: 'changed-boot-id' }) });
  t.equal(plannerDistinctChecks(), before, 'a tunnel planned afresh: not the whole plan checked');
  t.equal(plannerIdentityUpdates(), updatesBefore + 1, 'its objects checked against the last plan');
  planXfrm({ ...base, peers: withPeer(1, { bootID: 'changed-boot-id' }) });
  const single = { ...base, local: { ...local, addresses: ['198.18.0.1'], podCIDRs: ['10.244.1.0/24'] } };
  const c1 = plannerDistinctChecks();
  planXfrm(single);
  t.equal(plannerDistinctChecks(), c1 + 1, 'other node-wide policies (one local family less): the whole plan checked');
  const c2 = plannerDistinctChecks();
  planXfrm(single);
  t.equal(plannerDistinctChecks(), c2, 'reused again');
  t.end();
});

t.test(
  "a changed tunnel whose objects take another tunnel's identity fails the check, then the next plan checks all",
  (t) => {
    cold(base);
    // node-04 given node-02's peer id: its inbound SAs get node-02's mark (same dst, SPI and lookup mark).
    const clash = { ...base, peerIds: ids({ 'node-04': 1 }) };
    t.throws(() => planXfrm(clash), /planner produced two states with identity/, 'checked incrementally: caught');
    const checks = plannerDistinctChecks();
    t.throws(() => planXfrm(clash), /planner produced two states with identity/, 'and again');
    t.equal(plannerDistinctChecks(), checks + 1, 'after a failed check the whole plan is checked');
    t.same(planXfrm(base), cold(base), 'the base plans as from an empty memo');
    t.end();
  },
);

t.test(
  'with no identities of the last plan to update, each tunnel is checked as it is planned: a clash fails the plan',
  (t) => {
    // A failed check leaves no identities behind, so the plans below are checked whole, as a first plan is.
    t.throws(() => planXfrm({ ...base, peerIds: ids({ 'node-04': 1 }) }), /two states/, 'a failed check first');
    // Two peers that each pass screening alone but claim the same pod CIDR: their out policies share an identity.
    // (Screening them together rejects the second, so they are screened apart and planned together.)
    const x = '10.99.7.0/24';
    const a = screenEveryPeer(local, [makeNode(7, { podCIDRs: [x] })]);
    const b = screenEveryPeer(local, [makeNode(8, { podCIDRs: [x] })]);
    const both = {
      local,
      accepted: [...a.accepted, ...b.accepted],
      rejected: [],
      keys: base.keys,
      peerIds: new Map([
        ['node-07', 7],
        ['node-08', 8],
      ]),
    };
    const checks = plannerDistinctChecks();
    t.throws(() => planScreened(both), /planner produced two policies with identity/, 'caught while planning');
    t.equal(plannerDistinctChecks(), checks + 1, 'as a check of the whole plan');
    const alone = { ...both, accepted: a.accepted };
    const next = planScreened(alone);
    planXfrm({ ...base, peers: [] }); // empties the memo
    t.same(next, planScreened(alone), 'the next plan equals its plan from an empty memo');
    t.same(planXfrm(base), cold(base), 'and the base plans as from an empty memo');
    t.end();
  },
);

t.test('a pod CIDR given up and taken again: the second taker clashes, as in a screening of every peer', (t) => {
  const five = [2, 3, 4, 5, 6].map((i) => makeNode(i));
  screenPeers(local, five);
  const x = '10.99.1.0/24';
  const steps: NodeInfo[][] = [];
  let now = five.map((p) => (p.name === 'node-02' ? { ...p, podCIDRs: [x] } : p));
  steps.push(now);
  now = now.map((p) => (p.name === 'node-02' ? { ...p, podCIDRs: ['10.244.2.0/24'] } : p)); // x given up
  steps.push(now);
  now = now.map((p) => (p.name === 'node-04' ? { ...p, podCIDRs: [x] } : p)); // taken again
  steps.push(now);
  now = now.map((p) => (p.name === 'node-05' ? { ...p, podCIDRs: ['10.99.0.0/16'] } : p)); // a second taker
  steps.push(now);
  const incremental = incrementalScreeningCount();
  for (const [i, peers] of steps.entries()) {
    t.same(screenPeers(local, peers), screenEveryPeer(local, peers), `step ${i + 1}`);
  }
  t.ok(incrementalScreeningCount() >= incremental + 3, 'the first three steps screened only the changed peer');
  t.match(screenPeers(local, now).rejected, [{ name: 'node-05', reason: /overlaps 10\.99\.1\.0\/24 of node node-04/ }]);
  t.end();
});

t.test('screening is handed out again for the same local node and peer objects, afresh otherwise', (t) => {
  const first = screenPeers(local, peers);
  t.equal(screenPeers({ ...local }, [...peers]), first, 'equal local node, same peer objects: the same screening');
  const copy = peers.map((p) => ({ ...p }));
  const fresh = screenPeers(local, copy);
  t.not(fresh, first, 'other peer objects: screened afresh');
  t.same(fresh, first, '(with the same outcome)');
  t.not(screenPeers({ ...local, bootID: 'other' }, copy), fresh, 'another local node: afresh');
  const clash = screenPeers(local, [...copy, { ...copy[0]!, name: 'node-99' }]);
  t.equal(clash.rejected.length, 1, 'a new peer is screened: its address clashes');
  const before = screenPeers(local, copy);
  const alone = incrementalScreeningCount();
  const rebooted = [copy[0]!, { ...copy[1]!, bootID: 'rebooted' }, copy[2]!];
  const after = screenPeers(local, rebooted);
  t.equal(incrementalScreeningCount(), alone + 1, 'a rebooted peer (same address and pod CIDRs): screened alone');
  t.same(after, screenEveryPeer(local, rebooted), 'with the outcome of a screening of every peer');
  t.equal(after.accepted[0], before.accepted[0], 'the other peers keep their screened objects');
  t.end();
});

t.test('an underlay address given up and taken in later steps with the same names: screened alone each time', (t) => {
  // The same peers in the same order, one object replaced per step: the last screening's map by name is handed on,
  // so the peer that moved must give back the address of its last object, not of its new one.
  const five = [2, 3, 4, 5, 6].map((i) => makeNode(i));
  screenPeers(local, five);
  const old = five[0]!.addresses[0]!;
  const steps: NodeInfo[][] = [];
  let now = five.map((p) => (p.name === 'node-02' ? { ...p, addresses: ['198.18.9.2'] } : p)); // gives up `old`
  steps.push(now);
  now = now.map((p) => (p.name === 'node-04' ? { ...p, addresses: [old] } : p)); // takes it
  steps.push(now);
  now = now.map((p) => (p.name === 'node-02' ? { ...p, addresses: ['198.18.9.3'] } : p)); // moves again
  steps.push(now);
  now = now.map((p) => (p.name === 'node-05' ? { ...p, addresses: ['198.18.9.2'] } : p)); // takes its first new one
  steps.push(now);
  const incremental = incrementalScreeningCount();
  for (const [i, peers] of steps.entries()) {
    const screened = screenPeers(local, peers);
    t.same(screened, screenEveryPeer(local, peers), `step ${i + 1}: as a screening of every peer`);
    t.equal(screened.rejected.length, 0, `step ${i + 1}: nobody rejected`);
  }
  t.equal(incrementalScreeningCount(), incremental + steps.length, 'every step screened only the changed peer');
  t.end();
});

t.test(
  'keys the addon failed to derive are not kept: the plan fails, and the next one derives them anew',
  async (t) => {
    const { pendingPairKeys } = await import('../../src/ipsec/pair-key-batch.js');
    const { loadAddon } = await import('../../src/native/addon.js');
    const addon = loadAddon() as { pairKeys: { derive: (...args: unknown[]) => void } };
    planXfrm(base);
    const rotated: PlanInput = { ...base, keys: KeyHistory.of([makeKey(1), key2]) };
    const derive = addon.pairKeys.derive;
    addon.pairKeys.derive = () => {
      throw new Error('derivation failed (test)');
    };
    try {
      t.throws(() => planXfrm(rotated), /derivation failed \(test\)/, 'the plan that needed new keys fails');
    } finally {
      addon.pairKeys.derive = derive;
    }
    t.equal(pendingPairKeys(), 0, 'nothing left pending');
    const again = planXfrm(rotated);
    t.same(again, cold(rotated), 'the next plan equals the plan from an empty memo (no underived key reused)');
    for (const { state } of again.states)
      t.not(
        state.aead?.key.every((b) => b === 0),
        true,
        `${state.spi} ${state.dst}`,
      );
    t.end();
  },
);

t.test(
  'a key batch that fails mid-plan (its slab full) fails the plan and leaves no underived key behind',
  async (t) => {
    const { loadAddon } = await import('../../src/native/addon.js');
    const addon = loadAddon() as { pairKeys: { derive: (...args: unknown[]) => void } };
    // 200 peers, two families, two keys: 1,600 keys, so slabs of 256 fill during the plan.
    const many = Array.from({ length: 200 }, (_, k) => {
      const i = k + 10;
      return makeNode(i, {
        addresses: [`198.18.${i >> 8}.${i & 0xff}`, `fd00::${i.toString(16)}`],
        podCIDRs: [`10.${i >> 8}.${i & 0xff}.0/24`, `fd00:10:${i.toString(16)}::/64`],
      });
    });
    const input: PlanInput = {
      local,
      peers: many,
      keys: KeyHistory.of([makeKey(1), key2]),
      peerIds: new Map(many.map((p, k) => [p.name, k + 1])),
    };
    const derive = addon.pairKeys.derive;
    let calls = 0;
    addon.pairKeys.derive = (...args: unknown[]) => {
      if (++calls === 3) throw new Error('derivation failed (test)');
      derive(...args);
    };
    try {
      t.throws(() => planXfrm(input), /derivation failed \(test\)/);
    } finally {
      addon.pairKeys.derive = derive;
    }
    t.ok(calls >= 3, 'the third batch failed, with the plan under way');
    t.same(planXfrm(input), cold(input), 'the next plan equals the plan from an empty memo');
    t.end();
  },
);
