// A step that changes a few peers does work for those peers only (issue 15): screening screens the changed
// peers (src/ipsec/peer-screen.ts), the planner checks the identities of the changed tunnels
// (src/ipsec/tunnel-identities.ts) and the kept kernel view diffs the changed objects against the part of the
// kernel they touch (src/ipsec/kept-xfrm-view.ts). Each must give exactly what the whole computation gives. A
// seeded random walk of cluster changes — peers joining, leaving, rebooting, moving address or pod CIDR,
// rotating, clashing with another peer, turning invalid — and of the held keys is run through all three, and after
// every step:
// the screening equals a screening of every peer; the plan equals the plan from an empty memo; the kernel
// holds what a reconcile with a dump per step leaves, with the same ops sent and the same report.
import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import {
  incrementalScreeningCount,
  screenEveryPeer,
  screenEveryPeerInTurn,
  screeningsCheckedAtOnceCount,
  screenPeers,
} from '../../src/ipsec/peer-screen.js';
import { planScreened, plannerDistinctChecks, plannerIdentityUpdates } from '../../src/ipsec/planner.js';
import { KeptXfrmView } from '../../src/ipsec/kept-xfrm-view.js';
import { reconcile, type ReconcileReport } from '../../src/ipsec/reconciler.js';
import { FakeXfrmKernel, kernelContents } from '../fakes/fake-xfrm-kernel.js';
import { bootId, makeKey, makeNode } from '../fakes/ipsec-fixtures.js';
import { espTemplate, makeOutboundSa, makeOutPolicy } from '../fakes/xfrm-objects.js';
import type { XfrmOp } from '../../src/xfrm/types.js';

/** A small deterministic generator (mulberry32), so a failure names its seed and replays. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const local = makeNode(1, { addresses: ['198.18.0.1', 'fd00::1'], podCIDRs: ['10.244.1.0/24', 'fd00:10:1::/64'] });
const node = (i: number, generation = 0): NodeInfo =>
  makeNode(i, {
    addresses: [`198.18.${i >> 8}.${i & 0xff}`, `fd00::${i.toString(16)}`],
    podCIDRs: [`10.${100 + (i >> 8)}.${i & 0xff}.0/24`, `fd00:10:${i.toString(16)}::/64`],
    bootID: bootId(i, generation),
  });

type Change = (peers: Map<string, NodeInfo>, rnd: () => number, pick: () => NodeInfo | undefined) => string;

let nextNode = 2;
const changes: Change[] = [
  (peers) => {
    const p = node(nextNode++);
    peers.set(p.name, p);
    return `${p.name} joins`;
  },
  (peers, _rnd, pick) => {
    const p = pick();
    if (p) peers.delete(p.name);
    return `${p?.name} leaves`;
  },
  (peers, rnd, pick) => {
    const p = pick();
    if (p) peers.set(p.name, { ...p, bootID: bootId(Number(p.name.slice(5)), 1 + Math.floor(rnd() * 1000)) });
    return `${p?.name} reboots`;
  },
  (peers, rnd, pick) => {
    const p = pick();
    const n = 205 + Math.floor(rnd() * 8);
    if (p) peers.set(p.name, { ...p, podCIDRs: [`10.99.${n}.0/24`, ...p.podCIDRs.slice(1)] });
    return `${p?.name} moves to pod CIDR 10.99.${n}.0/24 (may clash)`;
  },
  (peers, rnd, pick) => {
    const p = pick();
    const n = 1 + Math.floor(rnd() * 8);
    if (p) peers.set(p.name, { ...p, addresses: [`198.18.9.${n}`, ...p.addresses.slice(1)] });
    return `${p?.name} moves to address 198.18.9.${n} (may clash)`;
  },
  (peers, _rnd, pick) => {
    const p = pick();
    if (p) peers.set(p.name, { ...p, podCIDRs: ['not-a-cidr'] });
    return `${p?.name} publishes an invalid pod CIDR`;
  },
  (peers, _rnd, pick) => {
    const p = pick();
    if (p) peers.set(p.name, { ...p, addresses: ['fd00::77:1'] });
    return `${p?.name} keeps only an IPv6 address`;
  },
  (peers, _rnd, pick) => {
    const p = pick();
    if (p) peers.set(p.name, { ...p, spi: p.spi === 1 ? 2 : 1 });
    return `${p?.name} switches SPI`;
  },
  (peers) => {
    // Clashes, conflicts and invalid objects get repaired too, so the walk has clash-free stretches.
    const repaired: string[] = [];
    for (const p of [...peers.values()]) {
      const own = node(Number(p.name.slice(5)));
      if (p.podCIDRs[0] !== own.podCIDRs[0] || p.addresses[0] !== own.addresses[0]) {
        peers.set(p.name, { ...p, addresses: own.addresses, podCIDRs: own.podCIDRs });
        repaired.push(p.name);
      }
    }
    return `${repaired.join(', ') || 'nobody'} back on own address and pod CIDRs`;
  },
  (peers, rnd, pick) => {
    const p = pick();
    const n = 1 + Math.floor(rnd() * 250);
    if (p) peers.set(p.name, { ...p, podCIDRs: [...p.podCIDRs, `10.98.${n}.0/24`] });
    return `${p?.name} adds pod CIDR 10.98.${n}.0/24`;
  },
  (peers, rnd) => {
    const names = [...peers.keys()];
    for (const name of names) if (rnd() < 0.5) peers.set(name, { ...(peers.get(name) as NodeInfo) });
    return 'half the peers handed out as new (equal) objects';
  },
];

/** The index of the change that repairs clashes and invalid objects. */
const REPAIR = 9;

const opsText = (ops: readonly XfrmOp[]): string[] => ops.map((op) => JSON.stringify(op)).sort();
const summary = (r: ReconcileReport) => ({
  writes: r.writes,
  failed: r.failed,
  unchanged: r.unchanged,
  foreign: r.foreign,
  perPeer: [...r.perPeer].map(([name, o]) => [name, o.ok, o.issues.map((i) => `${i.code} ${i.what}`)]).sort(),
  nodeWide: [r.nodeWide.ok, r.nodeWide.issues.map((i) => `${i.code} ${i.what}`)],
  missing: r.missingStates.size + r.missingPolicies.size,
  ops: opsText(r.results.map((x) => x.op)),
});
const contents = kernelContents;

for (const seed of [1, 2, 3, 4, 5, 6]) {
  t.test(`seed ${seed}: a random walk of cluster changes, step by step equal to the whole computation`, async (t) => {
    const rnd = random(seed);
    nextNode = 2;
    const peers = new Map<string, NodeInfo>();
    for (let i = 0; i < 24; i++) {
      const p = node(nextNode++);
      peers.set(p.name, p);
    }
    const pick = (): NodeInfo | undefined => {
      const list = [...peers.values()];
      return list[Math.floor(rnd() * list.length)];
    };
    // One kernel reconciled through the kept view, one with a dump per step; both hold a foreign policy.
    const foreign = makeOutPolicy({
      selector: { family: 4, src: '0.0.0.0/0', dst: '192.0.2.0/24', proto: 0 },
      priority: 9,
      templates: [],
      action: 'block',
    });
    // Foreign objects in the way of objects the walk may plan: a peer moving to pod CIDR 10.99.210.0/24 or to
    // address 198.18.9.5 conflicts with them.
    const inTheWay = makeOutPolicy({
      selector: { family: 4, src: '0.0.0.0/0', dst: '10.99.210.0/24', proto: 0 },
      priority: 50,
      templates: [{ ...espTemplate('198.18.0.1', '198.18.0.77', 1), reqid: 0x99 }],
    });
    const saInTheWay = makeOutboundSa({ dst: '198.18.9.5', reqid: 0x99 });
    const keptKernel = new FakeXfrmKernel();
    const dumpKernel = new FakeXfrmKernel();
    for (const k of [keptKernel, dumpKernel]) {
      k.seedPolicy(foreign);
      k.seedPolicy(inTheWay);
      k.seedState(saInTheWay);
    }
    const kept = new KeptXfrmView(keptKernel);
    let keys = KeyHistory.of([makeKey(1), makeKey(2)]);
    const ids = new Map<string, number>();
    const screenings = incrementalScreeningCount();
    const atOnce = screeningsCheckedAtOnceCount();
    let overlapSteps = 0;
    let sharedAddressSteps = 0;
    const fullChecks = plannerDistinctChecks();
    const updates = plannerIdentityUpdates();
    let changeDiffs = 0;
    let unclean = 0;
    for (let step = 0; step < 80; step++) {
      const what: string[] = [];
      const count = 1 + Math.floor(rnd() * 3);
      for (let c = 0; c < count; c++) {
        // Every other change repairs, so clash-free stretches (where screening can be incremental) are common.
        const which = rnd() < 0.2 ? REPAIR : Math.floor(rnd() * changes.length);
        what.push((changes[which] as Change)(peers, rnd, pick));
      }
      // Every tenth step the keys change as in a rotation (the plan hands on the objects of the key that stays):
      // SPI 2 is retired, and ten steps later held again under a new PSK buffer (SPI 1, which the foreign objects
      // in the way use, stays held).
      if (step % 10 === 9) {
        keys = keys.has(2) ? keys.without([2]) : keys.with(makeKey(2));
        what.push(keys.has(2) ? 'SPI 2 held again (a new PSK buffer)' : 'SPI 2 retired');
      }
      const list = [...peers.values()];
      for (const p of list) if (!ids.has(p.name)) ids.set(p.name, ids.size + 1);
      const label = `step ${step}: ${what.join('; ')}`;
      const screening = screenPeers(local, list);
      const whole = screenEveryPeer(local, list);
      t.same(screening, whole, `${label}: screening`);
      // A screening of every peer checks the pod CIDRs all at once when none overlaps: it equals checking in turn.
      t.same(whole, screenEveryPeerInTurn(local, list), `${label}: the CIDRs checked at once or in turn`);
      if (whole.rejected.some((r) => r.reason.includes(' overlaps '))) overlapSteps++;
      if (whole.rejected.some((r) => r.reason.includes(' is also used by '))) sharedAddressSteps++;
      const plan = planScreened({ local, ...screening, keys, peerIds: ids });
      const desired = { states: plan.states, policies: plan.policies };
      const viaView = await kept.reconcile(desired);
      if (kept.lastRead.how === 'view') changeDiffs = kept.changeDiffs;
      const viaDump = await reconcile(dumpKernel, desired);
      t.same(summary(viaView), summary(viaDump), `${label}: the same ops and report`);
      t.same(contents(keptKernel), contents(dumpKernel), `${label}: the same kernel contents`);
      if (viaView.failed > 0 || viaDump.failed > 0) t.fail(`${label}: a write failed`);
      const issues = [...viaView.perPeer.values(), viaView.nodeWide].some((o) => o.issues.length > 0);
      if (issues) unclean++;
    }
    t.ok(incrementalScreeningCount() > screenings, 'some screenings screened only the changed peers');
    t.ok(
      screeningsCheckedAtOnceCount() > atOnce,
      'some screenings of every peer checked the addresses and CIDRs at once',
    );
    t.ok(overlapSteps > 0, `in some steps pod CIDRs overlapped (${overlapSteps}): checked in turn`);
    t.ok(sharedAddressSteps > 0, `in some steps nodes shared an address (${sharedAddressSteps}): checked in turn`);
    t.ok(plannerIdentityUpdates() > updates, 'some plans checked only the changed tunnels');
    t.ok(plannerDistinctChecks() - fullChecks < 80, 'not every plan checked the whole plan');
    t.ok(changeDiffs > 0, 'some steps diffed only the changed objects');
    t.ok(unclean > 0, 'some steps ran into the foreign objects');
    t.ok(kept.dumps <= 1 + unclean, 'the kept view dumped at the start and after steps that were not clean only');
  });
}
