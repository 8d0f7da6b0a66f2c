// The pure half of the reconcile (src/ipsec/xfrm-diff.ts), without any kernel: which ops land in which batch,
// whom each op serves, what a foreign object blocks, and that diffing neither changes its inputs nor depends on
// anything else. The apply half's behaviour (deferrals, failures) is covered by ipsec-reconciler.test.ts.
import t from 'tap';
import { KeyHistory } from '../../src/keys/key-history.js';
import type { NodeInfo } from '../../src/model/node.js';
import { planXfrm, type XfrmPlan } from '../../src/ipsec/planner.js';
import { diffXfrm, type DiffOp, type KernelXfrm } from '../../src/ipsec/xfrm-diff.js';
import { makeKey, makeNode } from '../fakes/ipsec-fixtures.js';

const local = makeNode(1);

function planFor(peers: NodeInfo[]): XfrmPlan {
  const peerIds = new Map(peers.map((p, i) => [p.name, i + 1]));
  return planXfrm({ local, peers, keys: KeyHistory.of([makeKey(1)]), peerIds });
}

function kernelHolding(plan: XfrmPlan): KernelXfrm {
  return { states: plan.states.map((s) => s.state), policies: plan.policies.map((p) => p.policy) };
}

/** "kind direction owner" per op, e.g. "addState in node-02" or "addPolicy out -". */
function line(d: DiffOp): string {
  const op = d.op;
  const what = 'policy' in op ? op.policy.dir : ((op.state.mark?.value ?? 0) & 0xff) === 0xd0 ? 'in' : 'out';
  return `${op.kind} ${what} ${d.owner ?? '-'}`;
}

t.test(
  'a fresh plan: block policy, inbound SAs, outbound SAs; then in/fwd and out policies; nothing to delete',
  (t) => {
    const diff = diffXfrm({ states: [], policies: [] }, planFor([makeNode(2), makeNode(3)]));
    t.same(diff.installs.map(line), [
      'addPolicy out -',
      'addState in node-02',
      'addState in node-03',
      'addState out node-02',
      'addState out node-03',
    ]);
    t.same(diff.policies.map(line), [
      'addPolicy in node-02',
      'addPolicy fwd node-02',
      'addPolicy in node-03',
      'addPolicy fwd node-03',
      'addPolicy out node-02',
      'addPolicy out node-03',
    ]);
    t.same(diff.deletions, []);
    t.same(diff.owners, ['node-02', 'node-03']);
    t.match(diff, { unchanged: 0, issues: [], foreign: { states: 0, policies: 0 } });
    t.end();
  },
);

t.test('the kernel holding exactly the plan: every object unchanged, no op', (t) => {
  const plan = planFor([makeNode(2), makeNode(3)]);
  const diff = diffXfrm(kernelHolding(plan), plan);
  t.equal(diff.unchanged, plan.states.length + plan.policies.length);
  t.equal(diff.installs.length + diff.policies.length + diff.deletions.length, 0);
  t.end();
});

t.test('a removed peer: its objects are node-wide deletions, out policy first, inbound SA last', (t) => {
  const before = planFor([makeNode(2), makeNode(3)]);
  const diff = diffXfrm(kernelHolding(before), planFor([makeNode(2)]));
  t.same(diff.installs, []);
  t.same(diff.policies, []);
  t.same(diff.deletions.map(line), [
    'deletePolicy out -',
    'deletePolicy in -',
    'deletePolicy fwd -',
    'deleteState out -',
    'deleteState in -',
  ]);
  t.end();
});

t.test('a retired SPI of a current peer: its SAs are deleted for that peer, after the new ones are added', (t) => {
  const peers = [makeNode(2, { spi: 2 })];
  const old = planXfrm({ local, peers, keys: KeyHistory.of([makeKey(1)]), peerIds: new Map([['node-02', 1]]) });
  const now = planXfrm({ local, peers, keys: KeyHistory.of([makeKey(2)]), peerIds: new Map([['node-02', 1]]) });
  const diff = diffXfrm(kernelHolding(old), now);
  t.same(diff.installs.map(line), ['addState in node-02', 'addState out node-02']);
  t.same(diff.policies.map(line), ['updatePolicy out node-02']);
  t.same(diff.deletions.map(line), ['deleteState out node-02', 'deleteState in node-02']);
  t.end();
});

t.test('a foreign state in the way blocks the planned SA: reported, no op, nothing deleted', (t) => {
  const plan = planFor([makeNode(2)]);
  const inbound = plan.states.find((s) => s.direction === 'inbound')!;
  const foreign = { ...inbound.state, reqid: 7 };
  const diff = diffXfrm({ states: [foreign], policies: [] }, plan);
  t.same(diff.blockedStates, [inbound]);
  t.match(diff.issues, [
    { owner: 'node-02', issue: { code: 'CONFLICT', message: /foreign XFRM state \(reqid 0x7\)/ } },
  ]);
  t.notOk([...diff.installs, ...diff.deletions].some((d) => 'state' in d.op && d.op.state === foreign));
  t.match(diff.foreign, { states: 1, policies: 0 });
  t.end();
});

t.test('pure: the same inputs give the same diff, and the inputs are left as they were', (t) => {
  const before = planFor([makeNode(2), makeNode(3)]);
  const after = planFor([makeNode(3), makeNode(4)]);
  const kernel = kernelHolding(before);
  const snapshot = JSON.stringify([kernel, after]);
  const one = diffXfrm(kernel, after);
  const two = diffXfrm(kernel, after);
  t.same(one, two);
  t.equal(JSON.stringify([kernel, after]), snapshot);
  t.end();
});
