// The reconciler's kept kernel view (src/ipsec/kept-xfrm-view.ts): a run of steps through it does exactly what the
// same steps do when every step dumps the kernel (same ops, same reports, same kernel contents), while dumping
// only when the change feed, a failure or the audit period says so; a step whose plan did not change writes and
// diffs nothing; another tool's change, a failed write and the audit each bring the dump back.
import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import { indexPlan, KeptXfrmView, samePlan } from '../../src/ipsec/kept-xfrm-view.js';
import { planXfrm, type PlanInput, type XfrmPlan } from '../../src/ipsec/planner.js';
import { reconcile, type ReconcileReport } from '../../src/ipsec/reconciler.js';
import { FakeXfrmKernel, EEXIST, kernelContents } from '../fakes/fake-xfrm-kernel.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';
import { makeOutPolicy } from '../fakes/xfrm-objects.js';

const local = makeNode(1, { addresses: ['198.18.0.1', 'fd00::1'], podCIDRs: ['10.244.1.0/24', 'fd00:10:1::/64'] });
const node = (i: number, over: Partial<NodeInfo> = {}): NodeInfo =>
  makeNode(i, {
    addresses: [`198.18.0.${i}`, `fd00::${i}`],
    podCIDRs: [`10.244.${i}.0/24`, `fd00:10:${i}::/64`],
    ...over,
  });
const ids = (names: string[]): Map<string, number> => new Map(names.map((n, i) => [n, i + 1]));
const input = (peers: NodeInfo[], keys = KeyHistory.of([makeKey(1)])): PlanInput => ({
  local,
  peers,
  keys,
  peerIds: ids([2, 3, 4, 5, 6].map((i) => node(i).name)),
});

/** A cluster's life: start, nothing new, a peer reboots, one leaves, one joins, a rotation, nothing new. */
const steps: [string, PlanInput][] = [
  ['start with three peers', input([node(2), node(3), node(4)])],
  ['nothing changed', input([node(2), node(3), node(4)])],
  ['node-03 rebooted', input([node(2), node(3, { bootID: 'rebooted-03' }), node(4)])],
  ['node-04 left', input([node(2), node(3, { bootID: 'rebooted-03' })])],
  ['node-05 joined', input([node(2), node(3, { bootID: 'rebooted-03' }), node(5)])],
  [
    'SPI 2 held, peers still on 1',
    input([node(2), node(3, { bootID: 'rebooted-03' }), node(5)], KeyHistory.of([makeKey(1), makeKey(2)])),
  ],
  [
    'every peer on SPI 2',
    input(
      [node(2, { spi: 2 }), node(3, { bootID: 'rebooted-03', spi: 2 }), node(5, { spi: 2 })],
      KeyHistory.of([makeKey(1), makeKey(2)]),
    ),
  ],
  [
    'nothing changed again',
    input(
      [node(2, { spi: 2 }), node(3, { bootID: 'rebooted-03', spi: 2 }), node(5, { spi: 2 })],
      KeyHistory.of([makeKey(1), makeKey(2)]),
    ),
  ],
];

const summary = (r: ReconcileReport) => ({
  writes: r.writes,
  failed: r.failed,
  unchanged: r.unchanged,
  foreign: r.foreign,
  perPeer: [...r.perPeer].map(([name, o]) => [name, o.ok, o.issues.length]).sort(),
  nodeWide: r.nodeWide.ok,
  missing: r.missingStates.size + r.missingPolicies.size,
});
const contents = kernelContents;

t.test('the kept view does what a dump per step does, with one dump', async (t) => {
  const foreign = makeOutPolicy({
    selector: { family: 4, src: '0.0.0.0/0', dst: '192.0.2.0/24', proto: 0 },
    priority: 9,
  });
  const viewKernel = new FakeXfrmKernel();
  const dumpKernel = new FakeXfrmKernel({ changeFeed: false });
  viewKernel.seedPolicy(foreign);
  dumpKernel.seedPolicy(foreign);
  const kept = new KeptXfrmView(viewKernel);
  for (const [what, step] of steps) {
    const plan: XfrmPlan = planXfrm(step);
    const viaView = await kept.reconcile(plan);
    const viaDump = await reconcile(dumpKernel, plan);
    t.same(summary(viaView), summary(viaDump), `${what}: same report`);
    t.same(viewKernel.received, dumpKernel.received, `${what}: same ops sent`);
    t.same(contents(viewKernel), contents(dumpKernel), `${what}: same kernel contents`);
  }
  t.equal(viewKernel.dumpCalls, 2, 'the view kernel was dumped once (states + policies), at the first step');
  t.equal(dumpKernel.dumpCalls, 2 * steps.length);
  t.same(kept.lastRead, { how: 'same-plan', why: '' }, 'the last step had nothing to diff');
  t.end();
});

t.test('an unchanged plan: no write, no dump, no diff; equal objects planned afresh count as unchanged', async (t) => {
  const kernel = new FakeXfrmKernel();
  const kept = new KeptXfrmView(kernel);
  const first = planXfrm(steps[0]![1]);
  await kept.reconcile(first);
  const again = planXfrm(steps[0]![1]);
  t.ok(samePlan(indexPlan(first), again), 'the memo hands out the same objects, block policies included');
  t.equal(
    first.policies.find((p) => p.role === 'block'),
    again.policies.find((p) => p.role === 'block'),
  );
  const blockAfresh = {
    states: again.states,
    policies: again.policies.map((p) => (p.role === 'block' ? { ...p, policy: { ...p.policy } } : p)),
  };
  t.ok(samePlan(indexPlan(first), blockAfresh), 'equal block policies planned afresh: the same plan');
  const report = await kept.reconcile(again);
  t.equal(report.writes, 0);
  t.equal(report.unchanged, again.states.length + again.policies.length);
  t.same(kept.lastRead.how, 'same-plan');
  t.equal(kernel.dumpCalls, 2);
  const rebooted = planXfrm(steps[2]![1]);
  t.notOk(samePlan(indexPlan(again), rebooted));
  const copied = { states: again.states.map((s) => ({ ...s, state: { ...s.state } })), policies: again.policies };
  t.ok(samePlan(indexPlan(again), copied), 'equal states planned afresh');
  const otherKey = {
    states: again.states.map((s, i) => (i === 0 ? { ...s, state: { ...s.state, reqid: 99 } } : s)),
    policies: again.policies,
  };
  t.notOk(samePlan(indexPlan(again), otherKey), 'one state differs');
  const otherOwner = {
    states: again.states.map((s, i) => (i === 0 ? { ...s, owner: 'node-99' } : s)),
    policies: again.policies,
  };
  t.notOk(samePlan(indexPlan(again), otherOwner), 'same state, another owner');
  t.notOk(samePlan(indexPlan(again), { states: again.states.slice(1), policies: again.policies }), 'one fewer');
  const changed = await kept.reconcile(rebooted);
  t.ok(changed.writes > 0 && changed.writes < 30, `a rebooted peer: ${changed.writes} writes, its objects only`);
  t.same(kept.lastRead, { how: 'view', why: '' }, 'diffed against the view, not a dump');
  t.equal(kernel.dumpCalls, 2);
  t.end();
});

t.test("another tool's change, a failed write and the audit period each bring the dump back", async (t) => {
  let now = 1_000_000;
  const kernel = new FakeXfrmKernel();
  const kept = new KeptXfrmView(kernel, { auditMs: 60_000, now: () => now });
  const plan = () => planXfrm(steps[0]![1]);
  await kept.reconcile(plan());
  t.match(kept.lastRead, { how: 'dump', why: 'first look (monitor just opened)' });

  // Another tool takes the identity of one of our out policies: the dump shows it, the step reports the conflict.
  const ours = plan().policies.find((p) => p.role === 'out')!.policy;
  await kernel.apply([{ kind: 'deletePolicy', policy: ours }]);
  kernel.seedPolicy({ ...ours, priority: 77, templates: [] });
  const afterSeed = await kept.reconcile(plan());
  t.match(kept.lastRead, { how: 'dump', why: /changed by someone else/ });
  t.ok(
    [...afterSeed.perPeer.values()].some((o) => o.issues.some((i) => i.code === 'CONFLICT')),
    'conflict seen',
  );
  t.equal(afterSeed.writes, 0);

  // A step with problems keeps no view: the next one dumps again.
  await kept.reconcile(plan());
  t.match(kept.lastRead, { how: 'dump', why: 'no kept view (first step, or the last one failed)' });

  // A refused write: no view kept either.
  const fresh = new FakeXfrmKernel();
  const kept2 = new KeptXfrmView(fresh, { auditMs: 60_000, now: () => now });
  fresh.injectFailure((op) => op.kind === 'addState', EEXIST, { times: 1 });
  const failed = await kept2.reconcile(plan());
  t.equal(failed.failed, 1);
  const healed = await kept2.reconcile(plan());
  t.match(kept2.lastRead, { how: 'dump', why: 'no kept view (first step, or the last one failed)' });
  t.equal(healed.failed, 0);
  t.ok(healed.writes >= 1, 'the refused SA is added by the next step');
  await kept2.reconcile(plan());
  t.same(kept2.lastRead.how, 'same-plan');

  // The audit: a dump after auditMs however quiet the feed.
  now += 60_000;
  await kept2.reconcile(plan());
  t.match(kept2.lastRead, { how: 'dump', why: 'periodic audit (every 60 s)' });
  await kept2.reconcile(plan());
  t.same(kept2.lastRead.how, 'same-plan');
  t.end();
});

t.test('a kernel without a change feed is dumped at every step', async (t) => {
  const kernel = new FakeXfrmKernel({ changeFeed: false });
  const kept = new KeptXfrmView(kernel);
  for (let i = 0; i < 3; i++) await kept.reconcile(planXfrm(steps[0]![1]));
  t.equal(kernel.dumpCalls, 6);
  t.match(kept.lastRead, { how: 'dump', why: 'the XFRM kernel has no change feed' });
  t.end();
});

t.test("a step that changes peers' objects shares the applied plan's list of peers; an issue copies it", async (t) => {
  const kernel = new FakeXfrmKernel();
  const kept = new KeptXfrmView(kernel);
  const three = [node(2), node(3), node(4)];
  await kept.reconcile(planXfrm(input(three)));
  const quiet = await kept.reconcile(planXfrm(input(three)));
  t.same(kept.lastRead.how, 'same-plan');
  const names = ['node-02', 'node-03', 'node-04'];
  t.same([...quiet.perPeer.keys()], names);

  // node-03 reboots: its objects change, the peers do not; the report shares the list the quiet step made.
  const rebooted = [node(2), node(3, { bootID: 'rebooted-03' }), node(4)];
  const changed = await kept.reconcile(planXfrm(input(rebooted)));
  t.same(kept.lastRead.how, 'view');
  t.ok(changed.writes > 0);
  t.equal(changed.perPeer, quiet.perPeer, 'the same map: no peer listed anew');

  // node-04 reboots and the kernel refuses one of its SAs: that report has the issue in a map of its own, and the
  // map the earlier reports share still lists every peer as OK.
  const again = [node(2), node(3, { bootID: 'rebooted-03' }), node(4, { bootID: 'rebooted-04' })];
  kernel.injectFailure((op) => op.kind === 'addState' && op.state.dst === '198.18.0.4', EEXIST, { times: 1 });
  const failed = await kept.reconcile(planXfrm(input(again)));
  t.same(kept.lastRead.how, 'view');
  t.equal(failed.failed, 1);
  t.not(failed.perPeer, quiet.perPeer);
  t.same(
    [...failed.perPeer].map(([name, o]) => [name, o.ok]),
    [
      ['node-02', true],
      ['node-03', true],
      ['node-04', false],
    ],
  );
  t.same(
    [...quiet.perPeer].map(([name, o]) => [name, o.ok, o.issues.length]),
    names.map((n) => [n, true, 0]),
    'the shared list is not written to',
  );

  // After a dump, peers joining and leaving in a small change: the report lists the new plan's peers.
  await kept.reconcile(planXfrm(input(again)));
  t.same(kept.lastRead.how, 'dump');
  await kept.reconcile(planXfrm(input(again)));
  const swapped = [node(2), node(3, { bootID: 'rebooted-03' }), node(5)];
  const moved = await kept.reconcile(planXfrm(input(swapped)));
  t.same(kept.lastRead.how, 'view');
  t.same([...moved.perPeer.keys()].sort(), ['node-02', 'node-03', 'node-05']);
  const back = await kept.reconcile(planXfrm(input(again)));
  t.same(kept.lastRead.how, 'view');
  t.same([...back.perPeer.keys()].sort(), ['node-02', 'node-03', 'node-04']);
  t.same(
    contents(kernel),
    await (async () => {
      const whole = new FakeXfrmKernel();
      await reconcile(whole, planXfrm(input(again)));
      return contents(whole);
    })(),
    'the kernel holds what a reconcile of the last plan leaves',
  );
  t.end();
});
