import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import { planXfrm, type XfrmPlan } from '../../src/ipsec/planner.js';
import { reconcile, removeOwned } from '../../src/ipsec/reconciler.js';
import { FakeXfrmKernel } from '../fakes/fake-xfrm-kernel.js';
import type { XfrmOp, XfrmState } from '../../src/xfrm/types.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';

const local = makeNode(1);
const ids = new Map([
  ['node-02', 1],
  ['node-03', 2],
]);

function planFor(peers: NodeInfo[], keys = KeyHistory.of([makeKey(1)]), l: NodeInfo = local): XfrmPlan {
  return planXfrm({ local: l, peers, keys, peerIds: ids });
}

function opLine(op: XfrmOp): string {
  switch (op.kind) {
    case 'addState':
      return `${op.kind} ${op.state.mark!.value === 0xe0 ? 'out' : 'in'} ${op.state.src}->${op.state.dst} spi${op.state.spi}`;
    case 'deleteState':
      return `${op.kind} ${op.state.mark!.value === 0xe0 ? 'out' : 'in'} ${op.state.dst} spi${op.state.spi}`;
    default:
      return `${op.kind} ${op.policy.dir} ${op.policy.selector.dst}`;
  }
}

t.test('fresh apply: block policy, inbound SAs, outbound SAs, then in/fwd and out policies', async (t) => {
  const kernel = new FakeXfrmKernel();
  const r = await reconcile(kernel, planFor([makeNode(2)]));
  t.same(kernel.received.map(opLine), [
    'addPolicy out 0.0.0.0/0',
    'addState in 198.18.0.2->198.18.0.1 spi1',
    'addState out 198.18.0.1->198.18.0.2 spi1',
    'addPolicy in 10.244.1.0/24',
    'addPolicy fwd 10.244.1.0/24',
    'addPolicy out 10.244.2.0/24',
  ]);
  t.match(r, { writes: 6, batches: 2, unchanged: 0, failed: 0, foreign: { states: 0, policies: 0 } });
  t.same([...r.perPeer], [['node-02', { ok: true, issues: [] }]]);
  t.equal(r.missingStates.size + r.missingPolicies.size, 0);
});

t.test('no-change reconcile makes zero writes and no apply call', async (t) => {
  const kernel = new FakeXfrmKernel();
  const plan = planFor([makeNode(2), makeNode(3)]);
  await reconcile(kernel, plan);
  const calls = kernel.applyCalls;
  const r = await reconcile(kernel, plan);
  t.match(r, { writes: 0, batches: 0, unchanged: 11 });
  t.equal(kernel.applyCalls, calls);
});

t.test(
  'restart adoption: state written by anyone with the same content (other spelling, kernel index) is adopted',
  async (t) => {
    const v6local = makeNode(1, { addresses: ['fd00:198::1'], podCIDRs: ['fd00:10:244:1::/64'] });
    const v6peer = makeNode(2, { addresses: ['fd00:198::2'], podCIDRs: ['fd00:10:244:2::/64'] });
    const plan = planFor([v6peer], undefined, v6local);
    const kernel = new FakeXfrmKernel();
    const expand = (a: string): string =>
      a.replace('fd00:198::', 'fd00:198:0:0:0:0:0:').replace('fd00:10:244:', 'FD00:0010:0244:');
    for (const { state } of plan.states) kernel.seedState({ ...state, src: expand(state.src), dst: expand(state.dst) });
    for (const { policy } of plan.policies) {
      kernel.seedPolicy({
        ...policy,
        selector: { ...policy.selector, src: expand(policy.selector.src), dst: expand(policy.selector.dst) },
        templates: policy.templates.map((x) => ({ ...x, src: expand(x.src), dst: expand(x.dst) })),
      });
    }
    const r = await reconcile(kernel, plan);
    t.equal(r.writes, 0);
    t.equal(r.unchanged, plan.states.length + plan.policies.length);
  },
);

t.test(
  'changed key (peer reboot) -> delete + add of that SA pair in the first batch, never an in-place update',
  async (t) => {
    const kernel = new FakeXfrmKernel();
    await reconcile(kernel, planFor([makeNode(2), makeNode(3)]));
    const seen = kernel.received.length;
    const r = await reconcile(
      kernel,
      planFor([makeNode(2, { bootID: 'ffffffff-0000-4000-8000-000000000002' }), makeNode(3)]),
    );
    t.same(kernel.received.slice(seen).map(opLine), [
      'deleteState in 198.18.0.1 spi1',
      'addState in 198.18.0.2->198.18.0.1 spi1',
      'deleteState out 198.18.0.2 spi1',
      'addState out 198.18.0.1->198.18.0.2 spi1',
    ]);
    t.equal(r.failed, 0);
    t.equal(
      (await reconcile(kernel, planFor([makeNode(2, { bootID: 'ffffffff-0000-4000-8000-000000000002' }), makeNode(3)])))
        .writes,
      0,
    );
  },
);

t.test('switching the SPI sent to a peer is one in-place policy update once the SA exists', async (t) => {
  const keys = KeyHistory.of([makeKey(1), makeKey(2)]);
  const kernel = new FakeXfrmKernel();
  await reconcile(kernel, planFor([makeNode(2, { spi: 1 })], keys));
  const seen = kernel.received.length;
  const r = await reconcile(kernel, planFor([makeNode(2, { spi: 2 })], keys));
  t.same(kernel.received.slice(seen).map(opLine), ['updatePolicy out 10.244.2.0/24']);
  t.equal(r.writes, 1);
  t.equal(kernel.listPolicies().find((p) => p.dir === 'out' && p.action === 'allow')!.templates[0]!.spi, 2);
});

t.test('stale objects go last: policies before SAs, inbound SAs at the very end', async (t) => {
  const keys12 = KeyHistory.of([makeKey(1), makeKey(2)]);
  const kernel = new FakeXfrmKernel();
  await reconcile(kernel, planFor([makeNode(2, { spi: 2 }), makeNode(3, { spi: 2 })], keys12));
  const seen = kernel.received.length;
  // SPI 1 retired and node-03 removed in the same round.
  const r = await reconcile(kernel, planFor([makeNode(2, { spi: 2 })], KeyHistory.of([makeKey(2)])));
  t.same(kernel.received.slice(seen).map(opLine), [
    'deletePolicy out 10.244.3.0/24',
    'deletePolicy in 10.244.1.0/24',
    'deletePolicy fwd 10.244.1.0/24',
    'deleteState out 198.18.0.2 spi1',
    'deleteState out 198.18.0.3 spi1',
    'deleteState out 198.18.0.3 spi2',
    'deleteState in 198.18.0.1 spi1',
    'deleteState in 198.18.0.1 spi1',
    'deleteState in 198.18.0.1 spi2',
  ]);
  t.equal(r.failed, 0);
  t.same([...r.perPeer.keys()], ['node-02']);
  t.equal(kernel.listStates().length, 2);
});

const foreignInbound: XfrmState = {
  family: 4,
  src: '192.0.2.9',
  dst: '198.18.0.1',
  spi: 1,
  proto: 50,
  mode: 'tunnel',
  reqid: 1,
  esn: false,
  replayWindow: 0,
  mark: { value: 0x000200d0, mask: 0xffffffff },
};

t.test(
  'a foreign object in the way of a planned one is reported, never replaced; the other peer is served',
  async (t) => {
    const kernel = new FakeXfrmKernel();
    kernel.seedState(foreignInbound); // occupies node-03's inbound identity (dst, spi 1, mark 0x200d0)
    kernel.seedPolicy({
      dir: 'out',
      selector: { family: 4, src: '0.0.0.0/0', dst: '10.244.3.0/24', proto: 0 },
      mark: { value: 0xe0, mask: 0xff },
      priority: 1,
      action: 'allow',
      templates: [{ family: 4, src: '198.18.0.1', dst: '192.0.2.9', proto: 50, mode: 'tunnel', reqid: 1, spi: 0 }],
    });
    const r = await reconcile(kernel, planFor([makeNode(2), makeNode(3)]));
    const p3 = r.perPeer.get('node-03')!;
    t.equal(p3.ok, false);
    t.match(p3.issues, [
      { code: 'CONFLICT', message: /foreign XFRM state \(reqid 0x1\)/ },
      { code: 'CONFLICT', message: /foreign XFRM policy/ },
    ]);
    t.equal(r.perPeer.get('node-02')!.ok, true);
    t.equal(r.missingStates.size, 1);
    t.equal(r.missingPolicies.size, 1);
    t.notOk(kernel.received.some((op) => op.kind.startsWith('delete') || op.kind.startsWith('update')));
    t.same(r.foreign, { states: 1, policies: 1 });
    t.ok(kernel.listStates().some((s) => s.reqid === 1));
  },
);

t.test('a stale SA whose delete could hit a foreign state is left alone and reported', async (t) => {
  const kernel = new FakeXfrmKernel();
  await reconcile(kernel, planFor([makeNode(2)]));
  // A foreign wildcard-mark state in the same (dst, spi) bucket: deleting our inbound SA by mark would hit it.
  kernel.seedState({ ...foreignInbound, mark: { value: 0, mask: 0 }, src: '192.0.2.10' });
  const r = await removeOwned(kernel);
  t.match(r.nodeWide.issues, [{ code: 'CONFLICT', message: /lookup could hit a foreign state/ }]);
  t.equal(kernel.listStates().filter((s) => s.reqid === 1).length, 1, 'foreign state intact');
  t.equal(kernel.listStates().length, 2, 'our inbound SA stays, the outbound one is gone');
  t.equal(kernel.listPolicies().length, 0);
});

t.test(
  'per-peer failure isolation: a failing SA holds back only that peer (its out policy and its deletions)',
  async (t) => {
    const keys12 = KeyHistory.of([makeKey(1), makeKey(2)]);
    const kernel = new FakeXfrmKernel();
    await reconcile(kernel, planFor([makeNode(2, { spi: 1 }), makeNode(3, { spi: 1 })], KeyHistory.of([makeKey(1)])));
    kernel.injectFailure((op) => op.kind === 'addState' && op.state.dst === '198.18.0.2' && op.state.spi === 2, 12);
    const seen = kernel.received.length;
    const r = await reconcile(kernel, planFor([makeNode(2, { spi: 2 }), makeNode(3, { spi: 2 })], keys12));
    const p2 = r.perPeer.get('node-02')!;
    t.equal(p2.ok, false);
    t.match(p2.issues, [
      { errno: 12, code: 'ENOMEM', message: 'ENOMEM', what: /^addState 198\.18\.0\.1->198\.18\.0\.2 spi 0x2/ },
      { code: 'DEFERRED', message: /held back: its SA \(spi 0x2\) is not installed/ },
    ]);
    t.same(r.perPeer.get('node-03'), { ok: true, issues: [] });
    const sent = kernel.received.slice(seen).map(opLine);
    t.ok(sent.includes('updatePolicy out 10.244.3.0/24'), 'node-03 switched to SPI 2');
    t.notOk(sent.includes('updatePolicy out 10.244.2.0/24'), 'node-02 kept on SPI 1');
    t.equal(kernel.listPolicies().find((p) => p.selector.dst === '10.244.2.0/24')!.templates[0]!.spi, 1);
    t.equal(r.failed, 1);
    t.equal(r.missingStates.size, 1);
  },
);

t.test('deletions of a peer with a failure are deferred, others proceed', async (t) => {
  const kernel = new FakeXfrmKernel();
  await reconcile(kernel, planFor([makeNode(2), makeNode(3)], KeyHistory.of([makeKey(1), makeKey(2)])));
  kernel.injectFailure((op) => op.kind === 'updatePolicy' && op.policy.selector.dst === '10.244.2.0/24', 1, {
    message: 'injected',
  });
  const r = await reconcile(
    kernel,
    planFor([makeNode(2, { spi: 2 }), makeNode(3, { spi: 2 })], KeyHistory.of([makeKey(2)])),
  );
  const p2 = r.perPeer.get('node-02')!;
  t.match(p2.issues[0], { errno: 1, code: 'EPERM', message: 'injected' });
  t.ok(p2.issues.slice(1).every((i) => i.code === 'DEFERRED'));
  t.ok(
    kernel.listStates().some((s) => s.dst === '198.18.0.2' && s.spi === 1),
    "node-02's SPI 1 SA kept while its policy still uses it",
  );
  t.notOk(
    kernel.listStates().some((s) => s.dst === '198.18.0.3' && s.spi === 1),
    "node-03's SPI 1 SA removed",
  );
});

t.test('an SA of ours with an outdated mark layout is replaced', async (t) => {
  const kernel = new FakeXfrmKernel();
  const plan = planFor([makeNode(2)]);
  const inbound = plan.states.find((s) => s.direction === 'inbound')!.state;
  kernel.seedState({ ...inbound, mark: { value: 0xd0, mask: 0xff } }); // would swallow every peer's inbound lookup
  const seen = kernel.received.length;
  await reconcile(kernel, plan);
  t.same(kernel.received.slice(seen, seen + 3).map(opLine), [
    'addPolicy out 0.0.0.0/0',
    'deleteState in 198.18.0.1 spi1',
    'addState in 198.18.0.2->198.18.0.1 spi1',
  ]);
  t.same(kernel.listStates().find((s) => s.dst === '198.18.0.1')!.mark, { value: 0x100d0, mask: 0xffff00ff });
});

t.test('kernel returning fewer results than ops is reported, not crashed on', async (t) => {
  const kernel = new FakeXfrmKernel();
  const short = {
    dumpStates: () => kernel.dumpStates(),
    dumpPolicies: () => kernel.dumpPolicies(),
    apply: () => Promise.resolve([]),
  };
  const r = await reconcile(short, planFor([makeNode(2)]));
  t.equal(r.failed, 5, 'every op sent counted as failed');
  t.match(r.nodeWide.issues[0], { code: 'EUNKNOWN', message: 'no result returned for this op' });
  t.ok(
    r.perPeer.get('node-02')!.issues.some((i) => i.code === 'DEFERRED'),
    'the out policy was not switched to a missing SA',
  );
});
